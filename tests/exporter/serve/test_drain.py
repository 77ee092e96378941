"""The shutdown drain's rules, stepped with a manual clock: quiet period, timeout, second signal,
and what serve's exit status says about lines left behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from log_exporter.drain import Drain
from log_exporter.limits import EXIT_DRAIN_INCOMPLETE, EXIT_OK
from log_exporter.serve import ServeOptions, Service, _stopped
from log_exporter.sources.tail import Tailer, count_lines_after
from log_exporter.testing import ManualClock
from tests.support.contract import contract_line
from tests.support.serve import append
from tests.support.waits import wait_for


def test_drain_ends_only_after_the_log_was_quiet_for_the_quiet_period() -> None:
    """A reader at the end of the log is done only after the quiet period without new bytes."""
    clock = ManualClock()
    drain = Drain(quiet=2.0, timeout=20.0, clock=clock)
    reader = drain.reader()
    assert reader.outcome(at_end=True) is None  # nothing requested: read on
    drain.request()
    clock.advance(1.5)
    assert reader.outcome(at_end=True) is None
    reader.read(100)  # the log grew: the quiet period starts again
    clock.advance(1.9)
    assert reader.outcome(at_end=True) is None
    clock.advance(0.1)
    assert reader.outcome(at_end=False) is None  # not at the end yet: read on
    assert reader.outcome(at_end=True) == "quiet"


def test_drain_ends_at_its_timeout_while_the_log_keeps_growing() -> None:
    """A log that never goes quiet ends the drain at its timeout, not later."""
    clock = ManualClock()
    drain = Drain(quiet=2.0, timeout=5.0, clock=clock)
    reader = drain.reader()
    drain.request()
    for _ in range(4):
        clock.advance(1.0)
        reader.read(10)
        assert reader.outcome(at_end=True) is None
    assert drain.remaining() == pytest.approx(1.0)
    clock.advance(1.0)
    assert reader.outcome(at_end=False) == "timeout"
    assert drain.remaining() == 0.0


def test_second_request_ends_the_drain_at_once() -> None:
    """A second stop request ends the drain at once, quiet or not."""
    clock = ManualClock()
    drain = Drain(quiet=2.0, timeout=20.0, clock=clock)
    reader = drain.reader()
    drain.request()
    assert not drain.forced
    drain.request()
    assert drain.forced and drain.remaining() == 0.0
    assert reader.outcome(at_end=False) == "forced"


def _options(log: Path, **kw: float) -> ServeOptions:
    return ServeOptions(
        file=str(log),
        listen="127.0.0.1:0",
        spec=None,
        web_config=None,
        start_at="beginning",
        state=None,
        state_interval=5.0,
        max_line_bytes=1 << 20,
        **kw,  # type: ignore[arg-type]
    )


def test_lines_written_during_the_drain_are_still_read_and_counted(tmp_path: Path) -> None:
    """Lines written after the stop request, while the drain lasts, are still read and counted."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("http.request") * 3)
    service = Service(_options(log, drain_quiet=0.5, drain_timeout=60.0))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run()))
    thread.start()
    try:
        wait_for(lambda: service.tailer.caught_up, "the tailer to read the log")
        service.request_stop()
        append(log, contract_line("http.request") * 5)
        thread.join(60)
    finally:
        service.request_stop()
        thread.join(60)
    assert result == [EXIT_OK] and service.drain_outcome == "quiet"
    position = service.tailer.position
    assert position is not None and position.offset == log.stat().st_size
    assert service.unread_lines == 0
    assert _stopped(service, result[0], 0) == EXIT_OK


def test_second_request_ends_serves_drain_despite_a_long_quiet_period(tmp_path: Path) -> None:
    """A second stop request ends serve's drain at once although its quiet period is long."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("http.request") * 2)
    service = Service(_options(log, drain_quiet=600.0, drain_timeout=600.0))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.run()))
    thread.start()
    try:
        wait_for(lambda: service.tailer.caught_up, "the tailer to read the log")
        service.request_stop()
        assert wait_for(lambda: service.drain.requested, "the drain to start")
        assert thread.is_alive()
    finally:
        service.request_stop()
        thread.join(60)
    assert not thread.is_alive() and result == [EXIT_OK]
    assert service.drain_outcome == "forced" and service.unread_lines == 0
    # Lines left behind (here: the shipper's) make the exit status distinct.
    assert _stopped(service, EXIT_OK, 7) == EXIT_DRAIN_INCOMPLETE
    assert _stopped(service, EXIT_OK, 0) == EXIT_OK


def test_count_lines_after_counts_the_whole_lines_past_the_position(tmp_path: Path) -> None:
    """The lines a reader stopped at a position leaves behind are counted, whole lines only."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("http.request") * 4)
    tailer = Tailer(log)
    tailer.poll()
    position = tailer.position
    tailer.close()
    append(log, contract_line("http.request") * 3 + b'{"partial": ')
    assert count_lines_after(log, position) == 3
    assert count_lines_after(log, None) == 7
