"""An unexpected failure inside the tail loop: exit 1, and the state file stays consistent."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from log_exporter.serve import ServeOptions, Service
from log_exporter.tail import Batch
from tests.exporter._serve import append, event, wait_for


@pytest.fixture
def _restore_signals() -> Iterator[None]:
    # Service.run installs handlers in this (the test) process; put pytest's back afterwards.
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("_restore_signals")
def test_failure_mid_batch_exits_1_without_saving_half_a_batch(tmp_path: Path) -> None:
    """If applying a batch fails, the exporter exits 1 and the state file keeps its last save."""
    log, state = tmp_path / "app.jsonl", tmp_path / "state.json"
    first = event("auth.failed", failure_type="expired") * 3
    append(log, first)
    service = Service(
        ServeOptions(
            file=str(log),
            listen="127.0.0.1:0",
            spec=None,
            web_config=None,
            start_at="beginning",
            state=str(state),
            state_interval=0.05,
            max_line_bytes=1 << 20,
        )
    )
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
        append(log, event("auth.failed", failure_type="expired") * 2)

    writer = threading.Thread(target=write_more_once_saved)
    writer.start()
    try:
        code = service.run()
    finally:
        service.stop.set()
        writer.join()
    assert code == 1

    saved = json.loads(state.read_bytes())["sections"]["metrics"]
    assert saved["position"]["offset"] == len(first)
    lines = dict(saved["store"]["lines"])
    assert lines["parsed"] == 3.0
