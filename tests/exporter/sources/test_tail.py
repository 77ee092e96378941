"""The tailer on one file that is not rotated: waiting, partial lines, oversized lines, run()."""

from __future__ import annotations

import errno
import os
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from log_exporter.sources.tail import Tailer
from log_exporter.testing import ManualClock, ManualWakeup
from log_exporter.values import NO_FILE, Batch, FileId, Position
from tests.support.tail import Reader, append, exactly_once, line
from tests.support.waits import DEADLINE, wait_for


def test_missing_file_is_followed_once_it_appears(tmp_path: Path) -> None:
    """A file that does not exist yet is waited for, then read from its first line."""
    path = tmp_path / "app.jsonl"
    reader = Reader(Tailer(path))
    batch = reader.poll()
    # No file yet, but a position all the same: it says that nothing was history.
    assert batch.lines == [] and batch.position == Position(NO_FILE, 0)
    assert reader.tailer.caught_up, "nothing existed at start, so there is nothing to catch up on"

    written = [line(i) for i in range(3)]
    append(path, b"".join(w + b"\n" for w in written))
    reader.until_count(3)
    assert reader.lines == written


def test_partial_write_is_held_until_its_newline(tmp_path: Path) -> None:
    """A line written in pieces is yielded once, whole, and the position never splits it."""
    path = tmp_path / "app.jsonl"
    first = line(1)
    append(path, first + b"\n" + b'{"event":"aim.req')
    reader = Reader(Tailer(path))
    reader.poll()
    assert reader.lines == [first]
    assert reader.last is not None and reader.last.position is not None
    assert reader.last.position.offset == len(first) + 1, "a held partial line is not consumed"

    append(path, b'uest"}')
    reader.poll()
    assert reader.lines == [first], "no newline yet: nothing more to yield"
    append(path, b"\n")
    reader.until_count(2)
    assert reader.lines == [first, b'{"event":"aim.request"}']
    assert reader.tailer.position is not None
    assert reader.tailer.position.offset == os.path.getsize(path)


def test_start_at_end_skips_history_but_not_new_lines(tmp_path: Path) -> None:
    """With start_at='end' lines already in the file are skipped; the line being written and
    everything after it are read."""
    path = tmp_path / "app.jsonl"
    append(path, b"".join(line(i) + b"\n" for i in range(5)) + b'{"event":"in-')
    reader = Reader(Tailer(path, start_at="end"))
    reader.poll()
    assert reader.lines == []
    append(path, b'progress"}\n' + line(99) + b"\n")
    reader.until_count(2)
    assert reader.lines == [b'{"event":"in-progress"}', line(99)]


def test_start_at_end_on_a_missing_file_reads_it_from_the_start(tmp_path: Path) -> None:
    """start_at='end' only skips a file that existed at start; one created later is read whole."""
    path = tmp_path / "app.jsonl"
    reader = Reader(Tailer(path, start_at="end"))
    reader.poll()
    append(path, line(1) + b"\n")
    reader.until_count(1)
    assert reader.lines == [line(1)]


def test_oversized_line_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    """A 50 MiB line is counted once as oversized and dropped without buffering it whole;
    the lines around it still arrive."""
    path = tmp_path / "app.jsonl"
    with open(path, "wb") as f:
        f.write(line(1) + b"\n")
        chunk = b"x" * (1 << 20)
        for _ in range(50):
            f.write(chunk)
        f.write(b"\n" + line(2) + b"\n")
    reader = Reader(Tailer(path))
    tracemalloc.start()
    try:
        reader.until(lambda: reader.oversized == 1 and len(reader.lines) == 2, "the second line")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.lines == [line(1), line(2)]
    assert peak < 16 << 20, f"peak Python memory {peak / 2**20:.1f} MiB while skipping 50 MiB"


def test_line_exactly_at_the_limit_is_kept_and_one_byte_more_is_oversized(tmp_path: Path) -> None:
    """max_line_bytes is inclusive (the newline not counted), even when a line spans reads."""
    path = tmp_path / "app.jsonl"
    append(path, b"a" * 10 + b"\n" + b"b" * 11 + b"\n" + b"c\n")
    reader = Reader(Tailer(path, max_line_bytes=10, read_size=3))
    reader.until(lambda: len(reader.lines) == 2, "the lines around the oversized one")
    assert reader.lines == [b"a" * 10, b"c"]
    assert reader.oversized == 1


def test_restart_inside_an_oversized_line_counts_it_once(tmp_path: Path) -> None:
    """The position stays at the start of an oversized line until its newline, so a restart in
    the middle of it skips it again and counts it exactly once."""
    path = tmp_path / "app.jsonl"
    append(path, line(1) + b"\n" + b"y" * 100)
    first = Reader(Tailer(path, max_line_bytes=50))
    first.until_count(1)
    position = first.tailer.position
    assert position is not None and position.offset == len(line(1)) + 1
    first.tailer.close()

    append(path, b"y" * 100 + b"\n" + line(2) + b"\n")
    second = Reader(Tailer(path, max_line_bytes=50, resume=position))
    second.until_count(1)
    assert second.lines == [line(2)]
    assert first.oversized + second.oversized == 1


def test_lag_and_caught_up_report_unread_bytes(tmp_path: Path) -> None:
    """lag_bytes() is what is written but not read, and caught_up turns true once the data that
    existed at start has been read (what /readyz waits for)."""
    path = tmp_path / "app.jsonl"
    history = b"".join(line(i) + b"\n" for i in range(100))
    append(path, history)
    tailer = Tailer(path, max_batch_bytes=1000)
    assert not tailer.caught_up
    assert tailer.lag_bytes() == len(history)
    reader = Reader(tailer)
    reader.poll()
    assert not tailer.caught_up, "one bounded poll cannot have read the whole history"
    assert 0 < tailer.lag_bytes() < len(history)
    reader.until(lambda: tailer.caught_up, "caught up")
    assert len(reader.lines) == 100
    assert tailer.lag_bytes() == 0
    append(path, line(100) + b"\n")
    assert tailer.lag_bytes() == len(line(100)) + 1, "lag counts appends before the next poll"


def test_directory_at_the_path_is_waited_past_and_not_counted_as_lag(tmp_path: Path) -> None:
    """A directory where the log should be is not followed, so its size is no lag; once a real
    file takes its place, that file is read."""
    path = tmp_path / "app.jsonl"
    path.mkdir()
    reader = Reader(Tailer(path))
    reader.poll()
    assert reader.lines == []
    assert reader.tailer.lag_bytes() == 0
    path.rmdir()
    append(path, line(0) + b"\n")
    reader.until(lambda: len(reader.lines) == 1, "the file that replaced the directory")
    assert reader.lines == [line(0)]


def test_io_error_is_counted_and_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing read is logged and counted, and the next poll reads the same lines again."""
    path = tmp_path / "app.jsonl"
    append(path, line(1) + b"\n")
    reader = Reader(Tailer(path))
    reader.poll()
    append(path, line(2) + b"\n")

    # Simulated: a disk that fails a read cannot be arranged here (the tests run as root on a
    # healthy disk), so one pread fails with EIO.
    real_pread = os.pread

    def failing_pread(fd: int, n: int, offset: int) -> bytes:
        monkeypatch.setattr(os, "pread", real_pread)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pread", failing_pread)
    batch = reader.poll()
    assert batch.lines == []
    assert reader.tailer.io_errors == 1
    reader.until_count(2)
    assert reader.lines == [line(1), line(2)]


@pytest.mark.parametrize(
    ("code", "text"),
    [(errno.EMFILE, "Too many open files"), (errno.EACCES, "Permission denied")],
)
def test_lasting_io_error_is_logged_once_a_minute_and_counted_every_time(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: int,
    text: str,
) -> None:
    """An open that keeps failing, polled 8 times a second for three minutes, is counted 1440
    times but warned of once a minute, each later warning saying how many it left out; the
    first poll that succeeds says so once, with the repeats not reported yet."""
    path = tmp_path / "app.jsonl"
    append(path, line(1) + b"\n")
    # Simulated: out of descriptors, or the file made unreadable (which root, running the tests,
    # would read all the same), for the open of the log alone.
    real_open = os.open

    def failing_open(name: str | os.PathLike[str], flags: int, *args: int, **kw: int) -> int:
        if os.fspath(name) == str(path):
            raise OSError(code, text, os.fspath(name))
        return real_open(name, flags, *args, **kw)

    monkeypatch.setattr(os, "open", failing_open)
    clock = ManualClock()
    reader = Reader(Tailer(path, clock=clock))
    caplog.set_level("INFO", logger="log_exporter.tail")
    for _ in range(1440):
        assert reader.poll().lines == []
        clock.advance(0.125)  # exact in binary: 480 polls a minute, without drift
    assert reader.tailer.io_errors == 1440, "every error is counted"

    warnings = [r for r in caplog.records if r.name == "log_exporter.tail"]
    assert [r.levelname for r in warnings] == ["WARNING"] * 3, "at 0 s, 60 s and 120 s"
    assert [getattr(r, "suppressed", None) for r in warnings] == [0, 479, 479]
    assert warnings[0].getMessage() == (
        f"I/O error while tailing {path}: [Errno {code}] {text}: '{path}' (will retry)"
    )
    assert "(will retry; 479 more since the last such warning)" in warnings[1].getMessage()

    caplog.clear()
    monkeypatch.setattr(os, "open", real_open)
    for _ in range(10):
        reader.poll()
        clock.advance(0.125)
    assert reader.lines == [line(1)]
    recovered = [r for r in caplog.records if r.name == "log_exporter.tail"]
    assert [(r.levelname, getattr(r, "suppressed", None)) for r in recovered] == [("INFO", 479)]
    assert recovered[0].getMessage() == (
        f"tailing {path} again after I/O errors (479 more since the last warning)"
    )
    assert reader.tailer.io_errors == 1440


def _run_in_thread(tailer: Tailer) -> tuple[list[Batch], threading.Event, threading.Thread]:
    batches: list[Batch] = []
    stop = threading.Event()
    thread = threading.Thread(target=tailer.run, args=(batches.append, stop), daemon=True)
    thread.start()
    return batches, stop, thread


def _wait_lines(batches: list[Batch], n: int) -> list[bytes]:
    return wait_for(
        lambda: [x for b in list(batches) for x in b.lines],
        f"run() to deliver {n} lines",
        until=lambda lines: len(lines) >= n,
        interval=0.01,
    )


def test_run_wakes_on_file_events_long_before_the_poll_interval(tmp_path: Path) -> None:
    """run() delivers an append promptly thanks to file events, not the (here 1 hour) poll."""
    path = tmp_path / "app.jsonl"
    append(path, line(0) + b"\n")
    tailer = Tailer(path, poll_interval=3600)
    batches, stop, thread = _run_in_thread(tailer)
    try:
        _wait_lines(batches, 1)
        append(path, line(1) + b"\n")
        assert _wait_lines(batches, 2) == [line(0), line(1)]
    finally:
        stop.set()
        thread.join(DEADLINE)
    assert not thread.is_alive(), "run() must return soon after stop is set"


def test_run_follows_by_periodic_stat_without_file_events(tmp_path: Path) -> None:
    """Where file events are unavailable (some network filesystems), the periodic stat still
    finds appends and rotations."""
    # No file events and no real waiting: each wait of run() passes on the manual clock, and
    # what the writer does meanwhile is the next step.
    path = tmp_path / "app.jsonl"
    clock = ManualClock()

    def rotate_and_write() -> None:
        os.rename(path, str(path) + ".1")
        append(path, line(2) + b"\n")

    steps: list[Callable[[], None]] = [lambda: append(path, line(1) + b"\n"), rotate_and_write]
    batches: list[Batch] = []
    stop = threading.Event()

    def meanwhile(timeout: float) -> None:
        if steps:
            steps.pop(0)()
        elif len([x for b in batches for x in b.lines]) >= 2 or len(wakeup.waits) > 1000:
            stop.set()

    wakeup = ManualWakeup(clock, meanwhile)
    tailer = Tailer(path, poll_interval=0.05, rotation_grace=0.1, clock=clock, wakeup=wakeup)
    thread = threading.Thread(target=tailer.run, args=(batches.append, stop), daemon=True)
    thread.start()
    try:
        exactly_once(_wait_lines(batches, 2), [line(1), line(2)])
    finally:
        stop.set()
        thread.join(DEADLINE)
    assert not thread.is_alive()
    assert wakeup.waits == pytest.approx([0.05] * len(wakeup.waits)), "waits of poll_interval"


def test_resume_with_a_rotated_entry_naming_the_file_at_the_path_reads_it_once(
    tmp_path: Path,
) -> None:
    """A saved rotated generation whose inode the file at the path reuses is read only once.

    The filesystem hands a deleted generation's inode to the next file; when both first lines
    were incomplete at the save, the saved rotated entry matches the new file exactly. It was
    opened as a rotated generation and again as the current file, and every line was counted
    twice. The position is built here as such a save leaves it, so the test does not depend on
    the filesystem reusing inodes.
    """
    path = tmp_path / "app.jsonl"
    path.write_bytes(b'{"seq":1,')
    st = os.stat(path)
    same = FileId(st.st_dev, st.st_ino, "")
    # The saved current generation (deleted since, so not found) and the one whose inode the
    # file at the path now has.
    gone = FileId(st.st_dev, st.st_ino + 1_000_000, "0" * 32)
    resume = Position(gone, 138, rotated=(Position(same, 0),), known=(same, gone))
    tailer = Tailer(path, resume=resume, rotation_grace=3600.0, clock=ManualClock())
    # Resumed while the first line is still incomplete, as after the save.
    assert tailer.poll().lines == []
    append(path, b'"event":"x"}\n' + line(2) + b"\n" + line(3) + b"\n")
    lines = tailer.poll().lines + tailer.poll().lines
    tailer.close()
    assert lines == [b'{"seq":1,"event":"x"}', line(2), line(3)]
