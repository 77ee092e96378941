"""The workflow registry through the execute endpoint: real outputs, failures as outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from sustainbot.governance import MAX_INPUT_CHARS
from sustainbot.workflows import FAILURE_MARKER, carbon_audit, default_registry
from tests.support.app import EventLog, bearer, body

EXECUTE = "/workflows/governed/execute"


def _execute(client: FlaskClient, token: Callable[..., str], workflow: str, text: str):
    return client.post(
        EXECUTE, json=body(workflow=workflow, mode="analysis", text=text), headers=bearer(token())
    )


def test_generate_report_builds_report_from_input(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """generate_report answers a report whose counts and highlights come from the input."""
    text = "Solar output rose. Solar panels were cleaned in May. Grid draw fell."
    response = _execute(client, token, "generate_report", text)
    assert response.status_code == 200
    output = response.json["output"]
    assert "Sentences: 3; words: 12." in output
    assert "Key terms: solar," in output
    assert "- Grid draw fell." in output
    trace = response.headers["X-Request-ID"]
    (done,) = event_log.of("workflow.completed", trace)
    assert done["outcome"] == "success" and done["workflow_name"] == "generate_report"
    assert "error_type" not in done


def test_same_input_gives_same_output(client: FlaskClient, token: Callable[..., str]) -> None:
    """Workflows are deterministic: the same input always yields the same output."""
    text = "Outage at 09:14 on the API. Error rate 30%. Restored at 09:40."
    first = _execute(client, token, "summarise_incident", text).json["output"]
    second = _execute(client, token, "summarise_incident", text).json["output"]
    assert first == second
    assert "Timeline entries: 2" in first and "outage" in first


def test_carbon_audit_computes_from_numbers_in_input() -> None:
    """carbon_audit multiplies each quantity by its factor and sums them."""
    output = carbon_audit("Office used 1,000 kWh; vans drove 200 km on 10 litres of diesel.")
    # 1000 * 0.207 + 200 * 0.170 + 10 * 2.51
    assert "Total: 266.10 kg CO2e" in output


def test_carbon_audit_without_quantities_fails_with_error_type(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """carbon_audit over text with no quantities is outcome failure with an error_type, not 500."""
    response = _execute(client, token, "carbon_audit", "We care about the planet.")
    assert response.status_code == 200
    assert response.json["outcome"] == "failure"
    assert response.json["error_type"] == "NoActivityData"
    (done,) = event_log.of("workflow.completed", response.headers["X-Request-ID"])
    assert (done["outcome"], done["error_type"], done["level"]) == (
        "failure",
        "NoActivityData",
        "ERROR",
    )


@pytest.mark.parametrize("workflow", sorted(default_registry()))
def test_failure_marker_makes_any_workflow_fail(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog, workflow
) -> None:
    """Input containing the failure marker makes the workflow fail, recorded as failure."""
    response = _execute(client, token, workflow, f"api@1.0 used 5 kWh {FAILURE_MARKER}")
    assert response.json["outcome"] == "failure"
    assert response.json["error_type"] == "SimulatedFailure"
    assert response.json["output"] is None
    (audit,) = event_log.of("audit.entry", response.headers["X-Request-ID"])
    assert audit["outcome"] == "failure" and audit["decision"] == "allow"


def test_deploy_staging_is_a_dry_run_plan(client: FlaskClient, token: Callable[..., str]) -> None:
    """deploy_staging returns a numbered plan per named service and changes nothing."""
    response = _execute(client, token, "deploy_staging", "Ship api@1.4.2 and worker@2.0 today.")
    output = response.json["output"]
    assert output.startswith("Dry-run plan for staging")
    assert "1. Pull image api:1.4.2" in output and "4. Pull image worker:2.0" in output


@pytest.mark.parametrize(
    "text",
    [
        "1" * MAX_INPUT_CHARS,
        "text" + "\n " * (MAX_INPUT_CHARS // 2 - 2),
        "1,000" * (MAX_INPUT_CHARS // 5),
    ],
    ids=["digit_run", "blank_lines", "comma_groups"],
)
def test_hostile_input_does_not_cost_seconds_of_cpu(
    client: FlaskClient, token: Callable[..., str], text
) -> None:
    """A maximum-size input built to make the regexes backtrack is answered in little CPU."""
    # Process CPU time, not wall time, so a busy machine does not make this flaky; before the
    # patterns were anchored a digit run took about 6 s and the blank lines about 2 s.
    started = time.process_time()
    response = _execute(client, token, "carbon_audit", text)
    assert response.status_code == 200
    assert time.process_time() - started < 0.5
