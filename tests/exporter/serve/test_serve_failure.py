"""``serve`` in-process, where a fault can be injected between the tailer and the store: an
unexpected failure exits 1 with a consistent state file; readiness waits for the data to be fed;
stop and reload requests come from any thread, and running installs no signal handler."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

from log_exporter.serve import Service
from log_exporter.values import Batch
from tests.support.contract import contract_line
from tests.support.serve import append, in_process_service, run_beside, run_until
from tests.support.waits import wait_for


def test_failure_mid_batch_exits_1_without_saving_half_a_batch(tmp_path: Path) -> None:
    """If applying a batch fails, the exporter exits 1 and the state file keeps its last save."""
    log, state = tmp_path / "app.jsonl", tmp_path / "state.json"
    first = contract_line("auth.failed", failure_type="expired") * 3
    append(log, first)
    service = in_process_service(log, state=state, state_interval=0.05)
    real_feed = service.pipeline.feed

    # Fault injection: nothing in a line can make the real pipeline raise, so a wrapper applies
    # half of the second batch and then fails the way an unforeseen bug would.
    def feed(batch: Batch) -> None:
        if service.store.lines["parsed"] == 0:
            real_feed(batch)
            return
        real_feed(Batch(batch.lines[:1], bytes_read=0))
        raise RuntimeError("bug in the middle of a batch")

    service.pipeline.feed = feed  # type: ignore[method-assign]

    def write_more_once_saved() -> None:
        wait_for(
            lambda: (
                state.exists()
                and json.loads(state.read_bytes())["sections"]["metrics"]["position"]["offset"]
                == len(first)
            ),
            "a state save covering the first lines",
        )
        append(log, contract_line("auth.failed", failure_type="expired") * 2)

    assert run_beside(service, write_more_once_saved) == 1

    saved = json.loads(state.read_bytes())["sections"]["metrics"]
    assert saved["position"]["offset"] == len(first)
    lines = dict(saved["store"]["lines"])
    assert lines["parsed"] == 3.0


def _readyz(service: Service) -> int:
    try:
        with urllib.request.urlopen(service.server.url.replace("/metrics", "/readyz")) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_readyz_is_not_ready_while_the_last_batch_present_at_start_is_fed(tmp_path: Path) -> None:
    """/readyz answers 503 until the batch that reaches the end of the file is in the store."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.failed", failure_type="expired") * 3)
    service = in_process_service(log)
    real_feed = service.pipeline.feed
    seen_while_feeding: list[int] = []

    # The tailer knows it reached the end when its poll returns, before the batch is applied; a
    # scrape made at that moment must not be told the metrics are complete.
    def feed(batch: Batch) -> None:
        seen_while_feeding.append(_readyz(service))
        real_feed(batch)

    service.pipeline.feed = feed  # type: ignore[method-assign]

    assert run_until(service, lambda: _readyz(service) == 200, "/readyz to answer 200") == 0
    assert seen_while_feeding == [503]
    assert service.store.lines["parsed"] == 3


def test_run_leaves_the_process_signal_handlers_alone(tmp_path: Path) -> None:
    """Running serve installs no signal handler: the entry point owns them, so a host keeps its."""
    signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    before = {signum: signal.getsignal(signum) for signum in signums}
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.failed", failure_type="expired"))
    service = in_process_service(log)
    during: dict[int, object] = {}

    def running_and_seen() -> bool:
        if service.store.lines["parsed"] < 1:
            return False
        during.update({signum: signal.getsignal(signum) for signum in signums})
        return True

    assert run_until(service, running_and_seen, "the line to be read") == 0
    assert during == before


def test_reload_requested_from_another_thread_reloads_the_spec(tmp_path: Path) -> None:
    """request_reload from any thread reloads the spec in the tail loop, and counts it."""
    log = tmp_path / "app.jsonl"
    log.touch()
    service = in_process_service(log)

    def reload_then_stop() -> None:
        try:
            wait_for(lambda: service.tailer.caught_up, "the tailer to start")
            service.request_reload()
            wait_for(lambda: service.reloads["success"] == 1, "the reload to be counted")
        finally:
            service.request_stop()

    assert run_beside(service, reload_then_stop) == 0
    assert service.reloads == {"success": 1, "failure": 0}
