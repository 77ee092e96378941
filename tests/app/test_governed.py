"""A governed request run without Flask: the answer, its events, the clock, the audit rule."""

from __future__ import annotations

import subprocess
import sys

from sustainbot import emit, governed
from sustainbot.auth import Principal
from sustainbot.events import EventWriter
from sustainbot.governance import validate
from sustainbot.workflows import Workflow, default_registry
from tests.support.app import PERSON, EventLog, body

PRINCIPAL = Principal(subject=PERSON, name=PERSON, role="approver")


def _ticks(*readings: float):
    values = iter(readings)
    return lambda: next(values)


def test_execute_answers_the_result_and_times_it_with_the_given_clock(event_log: EventLog) -> None:
    """execute answers 200 with the output, and workflow.completed lasts what the clock says."""
    registry = default_registry()
    aim = validate(body(text="Ensure the audit runs."), PRINCIPAL.role, registry.keys())
    trace = emit.Trace(EventWriter(event_log.path), "trace-1")
    answer = governed.execute(
        PRINCIPAL, aim, registry=registry, trace=trace, clock=_ticks(10.0, 12.5)
    )
    assert (answer.status, answer.audit_written) == (200, True)
    assert answer.body["output"] == registry["generate_report"].run("Ensure the audit runs.")
    assert answer.body["trace_id"] == "trace-1"
    kinds = [e["event"] for e in event_log.events()]
    assert kinds[:2] == ["workflow.completed", "audit.entry"]
    assert set(kinds[2:]) == {"prescriptive_language.detected"}
    (completed,) = event_log.of("workflow.completed")
    assert completed["duration_seconds"] == 2.5


def test_execute_runs_nothing_once_a_write_of_the_request_failed(event_log: EventLog) -> None:
    """A trace that already lost an event gets 503 and no workflow run and no events written."""
    runs: list[str] = []

    def record(text: str) -> str:
        runs.append(text)
        return text

    registry = {"generate_report": Workflow("generate_report", "records its runs", record)}
    aim = validate(body(), PRINCIPAL.role, registry.keys())
    trace = emit.Trace(EventWriter(event_log.path), "trace-2", all_written=False)
    answer = governed.execute(PRINCIPAL, aim, registry=registry, trace=trace, clock=_ticks())
    assert (answer.status, answer.audit_written) == (503, False)
    assert answer.body["error"] == "event_log_unavailable"
    assert runs == [] and event_log.events() == []


def test_governed_run_and_emitters_import_no_flask() -> None:
    """sustainbot.governed and sustainbot.emit load without Flask, so they run outside a request."""
    check = "import sys, sustainbot.governed, sustainbot.emit; print('flask' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
