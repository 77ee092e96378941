"""``serve`` in-process, where a fault can be injected between the tailer and the store: an
unexpected failure exits 1 with a consistent state file; readiness waits for the data to be fed."""

from __future__ import annotations

import json
import signal
import threading
import urllib.error
import urllib.request
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


def _readyz(service: Service) -> int:
    try:
        with urllib.request.urlopen(service.server.url.replace("/metrics", "/readyz")) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.usefixtures("_restore_signals")
def test_readyz_is_not_ready_while_the_last_batch_present_at_start_is_fed(tmp_path: Path) -> None:
    """/readyz answers 503 until the batch that reaches the end of the file is in the store."""
    log = tmp_path / "app.jsonl"
    append(log, event("auth.failed", failure_type="expired") * 3)
    service = Service(
        ServeOptions(
            file=str(log),
            listen="127.0.0.1:0",
            spec=None,
            web_config=None,
            start_at="beginning",
            state=None,
            state_interval=5.0,
            max_line_bytes=1 << 20,
        )
    )
    real_feed = service.pipeline.feed
    seen_while_feeding: list[int] = []

    # The tailer knows it reached the end when its poll returns, before the batch is applied; a
    # scrape made at that moment must not be told the metrics are complete.
    def feed(batch: Batch) -> None:
        seen_while_feeding.append(_readyz(service))
        real_feed(batch)

    service.pipeline.feed = feed  # type: ignore[method-assign]

    def stop_once_ready() -> None:
        try:
            wait_for(lambda: _readyz(service) == 200, "/readyz to answer 200")
        finally:
            service.stop.set()
            service.tailer.wake()

    stopper = threading.Thread(target=stop_once_ready)
    stopper.start()
    try:
        code = service.run()
    finally:
        service.stop.set()
        stopper.join()
    assert code == 0
    assert seen_while_feeding == [503]
    assert service.store.lines["parsed"] == 3
