"""Rotation and truncation on real files: every line written to the path is read exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from log_exporter.sources.tail import Tailer
from log_exporter.testing import ManualClock
from tests.support.tail import Reader, append, exactly_once, line, lines_of, write_lines
from tests.support.waits import DEADLINE


def test_rename_rotation_right_after_a_write(tmp_path: Path) -> None:
    """Lines written just before a rename are read from the old file, then the new file from 0."""
    path = tmp_path / "app.jsonl"
    before, unread, after = lines_of(range(10)), lines_of(range(10, 20)), lines_of(range(20, 30))
    write_lines(path, before)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(10)
    write_lines(path, unread)  # not polled before the rename
    os.rename(path, f"{path}.1")
    write_lines(path, after)
    reader.until_count(30)
    exactly_once(reader.lines, before + unread + after)
    assert reader.lines == before + unread + after, "the old file is finished before the new"
    assert reader.rotations == 1


def test_generation_rotated_away_before_it_was_opened_is_read(tmp_path: Path) -> None:
    """A generation created and rotated away between two polls is found among the rotated
    siblings by identity and read, in order."""
    path = tmp_path / "app.jsonl"
    a, b, c = lines_of(range(5), "a"), lines_of(range(5), "b"), lines_of(range(5), "c")
    write_lines(path, a)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(5)
    # What RotatingFileHandler does, twice, between two polls.
    os.rename(path, f"{path}.1")
    write_lines(path, b)
    os.rename(f"{path}.1", f"{path}.2")
    os.rename(path, f"{path}.1")
    write_lines(path, c)
    reader.until_count(15)
    assert reader.lines == a + b + c
    assert reader.rotations == 2


def test_generations_rotated_after_start_but_before_the_first_poll_are_read(
    tmp_path: Path,
) -> None:
    """Once started, the tailer has taken stock of the history: generations rotated before its
    first poll are new, and read, while the siblings present at start are not."""
    path = tmp_path / "app.jsonl"
    write_lines(f"{path}.1", lines_of(range(3), "history"))
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.tailer.start()
    a, b = lines_of(range(5), "a"), lines_of(range(5), "b")
    write_lines(path, a)
    os.rename(f"{path}.1", f"{path}.2")
    os.rename(path, f"{path}.1")
    write_lines(path, b)
    reader.until_count(10)
    reader.poll()
    assert reader.lines == a + b
    assert reader.rotations == 1


def test_writer_still_appending_to_the_rotated_file_within_grace(tmp_path: Path) -> None:
    """A writer that has not reopened yet keeps writing to the renamed file; those lines are
    read as long as they come within the grace period."""
    path = tmp_path / "app.jsonl"
    # The manual clock stands still: every late write comes within the grace period.
    reader = Reader(Tailer(path, rotation_grace=120, clock=ManualClock()))
    with open(path, "ab", buffering=0) as late_writer:
        late_writer.write(line(0) + b"\n")
        reader.until_count(1)
        os.rename(path, f"{path}.1")
        append(path, line(1, "new") + b"\n")
        reader.until_count(2)
        assert reader.rotations == 1
        late_writer.write(line(2, "late") + b"\n")
        reader.until_count(3)
    append(path, line(3, "new") + b"\n")
    reader.until_count(4)
    exactly_once(reader.lines, [line(0), line(1, "new"), line(2, "late"), line(3, "new")])
    position = reader.tailer.position
    assert position is not None and len(position.rotated) == 1, "still draining the old file"


def test_rotated_file_is_finished_and_closed_after_grace(tmp_path: Path) -> None:
    """After the grace period the rotated file is closed; a last line without a newline is
    still delivered, since nothing will ever complete it."""
    path = tmp_path / "app.jsonl"
    clock = ManualClock()
    reader = Reader(Tailer(path, rotation_grace=0.2, clock=clock))
    append(path, line(0) + b"\n" + line(1))
    reader.until_count(1)
    os.rename(path, f"{path}.1")
    append(path, line(2) + b"\n")
    reader.until(lambda: reader.rotations == 1, "the rotation to be noticed")
    reader.poll()
    position = reader.tailer.position
    assert position is not None and position.rotated, "kept open during its grace period"
    clock.advance(0.2)
    reader.until(
        lambda: reader.tailer.position is not None and not reader.tailer.position.rotated,
        "the rotated file to be closed",
    )
    exactly_once(reader.lines, [line(0), line(1), line(2)])


ROTATING_WRITER = textwrap.dedent(
    """
    import logging, logging.handlers, sys
    path, count = sys.argv[1], int(sys.argv[2])
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=1024, backupCount=1000)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("w")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for i in range(count):
        logger.info('{"event":"aim.request","seq":%d,"tag":"rapid"}', i)
    """
)


def test_rapid_rotations_by_rotating_file_handler_in_another_process(tmp_path: Path) -> None:
    """Python's RotatingFileHandler rotating every ~20 lines, as fast as it can write, while
    the tailer polls: every line is read exactly once."""
    path = tmp_path / "app.jsonl"
    count = 6000
    reader = Reader(Tailer(path, rotation_grace=0.5))
    # Siblings present when the tailer starts are history; started only at its first poll, a
    # tailer polled late (a loaded machine) would rightly skip the first generations.
    reader.tailer.start()
    writer = subprocess.Popen([sys.executable, "-c", ROTATING_WRITER, str(path), str(count)])
    try:
        deadline = time.monotonic() + DEADLINE
        while writer.poll() is None and time.monotonic() < deadline:
            reader.poll()
            # Polling less often than the writer rotates, as a busy exporter would, so that
            # some generations are created and rotated away between two polls.
            time.sleep(0.02)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0
    try:
        reader.until_count(count)
    finally:
        _explain_missing(tmp_path, reader, lines_of(range(count), "rapid"))
    exactly_once(reader.lines, lines_of(range(count), "rapid"))
    rotated = len([n for n in os.listdir(tmp_path) if n.startswith("app.jsonl.")])
    assert rotated > 50, "the test must really rotate often"
    assert reader.rotations == rotated


def _explain_missing(directory: Path, reader: Reader, written: list[bytes]) -> None:
    """On a loss, say which files hold the missing lines and what the tailer knew of them."""
    seen = set(reader.lines)
    missing = [x for x in written if x not in seen]
    position = reader.tailer.position
    if not missing or position is None:
        return
    known = {(f.dev, f.ino): f.fingerprint for f in position.known}
    for name in sorted(os.listdir(directory)):
        data = (directory / name).read_bytes()
        lost = sum(1 for x in missing if x in data)
        if lost:
            st = os.stat(directory / name)
            state = known.get((st.st_dev, st.st_ino), "unknown")
            print(f"{name}: {lost} missing lines; inode {st.st_ino}; known as {state!r}")


def _logrotate(tmp_path: Path, path: Path, directives: str) -> None:
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{path} {{\n    rotate 5\n    missingok\n{directives}\n}}\n")
    subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "logrotate.status"), str(conf)],
        check=True,
        capture_output=True,
    )


def _logrotate_with_unread_lines(
    tmp_path: Path, directives: str
) -> tuple[Path, Reader, list[bytes]]:
    """Lines 0-19 read, 20-39 written but unread, then logrotate with ``directives``: the path,
    its reader and those 40 lines."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.jsonl"
    before, unread = lines_of(range(20)), lines_of(range(20, 40))
    write_lines(path, before)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(20)
    write_lines(path, unread)
    _logrotate(tmp_path, path, directives)
    return path, reader, before + unread


needs_logrotate = pytest.mark.skipif(shutil.which("logrotate") is None, reason="no logrotate")


@needs_logrotate
def test_logrotate_create_with_unread_lines(tmp_path: Path) -> None:
    """The real logrotate with `create`: unread lines in the rotated file and lines in the new
    file are each read once."""
    path, reader, before_rotation = _logrotate_with_unread_lines(tmp_path, "    create")
    assert path.with_name("app.jsonl.1").exists() and path.exists()
    after = lines_of(range(40, 60))
    write_lines(path, after)
    reader.until_count(60)
    assert reader.lines == before_rotation + after
    assert reader.rotations == 1


@needs_logrotate
def test_logrotate_copytruncate_with_unread_lines(tmp_path: Path) -> None:
    """The real logrotate with `copytruncate`: lines written after our last read are found in
    the copy, then the truncated file is read from 0.

    (Lines a writer adds between logrotate's copy and its truncate are lost by logrotate itself;
    this test writes none then, so exactness is what we can and do guarantee.)"""
    path, reader, before_rotation = _logrotate_with_unread_lines(tmp_path, "    copytruncate")
    assert path.with_name("app.jsonl.1").stat().st_size > 0 and path.stat().st_size == 0
    after = lines_of(range(40, 60))
    write_lines(path, after)
    reader.until_count(60)
    exactly_once(reader.lines, before_rotation + after)
    assert reader.truncations == 1


def test_copytruncate_regrowing_past_the_offset_is_noticed(tmp_path: Path) -> None:
    """A truncation followed by writes past the old offset before the next poll (the size looks
    fine) is still noticed by the first line's fingerprint; nothing is skipped or repeated."""
    path = tmp_path / "app.jsonl"
    before, after = lines_of(range(5), "old"), lines_of(range(50), "new")
    write_lines(path, before)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(5)
    shutil.copyfile(path, f"{path}.1")
    os.truncate(path, 0)
    write_lines(path, after)
    assert path.stat().st_size > sum(len(x) + 1 for x in before)
    reader.until_count(55)
    exactly_once(reader.lines, before + after)
    assert reader.truncations == 1


def test_plain_truncation_restarts_at_zero(tmp_path: Path) -> None:
    """A file truncated in place (no copy) is read again from 0 and the truncation counted."""
    path = tmp_path / "app.jsonl"
    before, after = lines_of(range(10), "old"), lines_of(range(2), "new")
    write_lines(path, before)
    reader = Reader(Tailer(path))
    reader.until_count(10)
    with open(path, "wb") as f:  # O_TRUNC, as `> file` in a shell
        f.write(b"".join(x + b"\n" for x in after))
    reader.until_count(12)
    exactly_once(reader.lines, before + after)
    assert reader.truncations == 1


def test_delete_and_recreate_follows_the_new_file(tmp_path: Path) -> None:
    """A deleted file is finished through the open descriptor and the recreated one followed."""
    path = tmp_path / "app.jsonl"
    before, unread, after = lines_of(range(5)), lines_of(range(5, 10)), lines_of(range(10, 15))
    write_lines(path, before)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(5)
    write_lines(path, unread)
    os.unlink(path)
    reader.poll()
    write_lines(path, after)
    reader.until_count(15)
    assert reader.lines == before + unread + after
    assert reader.rotations == 1


def test_history_and_compressed_siblings_are_never_read(tmp_path: Path) -> None:
    """Rotated files present at start are history, and a compressed generation is never taken
    for a new one: only lines written to the path after start are read."""
    path = tmp_path / "app.jsonl"
    write_lines(f"{path}.2", lines_of(range(3), "history"))
    write_lines(f"{path}.1.gz", lines_of(range(3), "gz"))
    current = lines_of(range(3))
    write_lines(path, current)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(3)
    os.rename(path, f"{path}.1")
    write_lines(f"{path}.3.gz", lines_of(range(3), "gz-new"))
    write_lines(path, lines_of(range(3, 6)))
    reader.until_count(6)
    reader.poll()
    assert reader.lines == lines_of(range(6))


def test_generation_with_the_same_lines_as_the_last_is_still_read(tmp_path: Path) -> None:
    """Byte-identical lines are legal: a new generation that starts with the same line as the
    one before is read, not mistaken for a copy of it."""
    path = tmp_path / "app.jsonl"
    same = line(0, "same") + b"\n"
    append(path, same * 3)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(3)
    for k in (1, 2):
        os.rename(path, f"{path}.{k}")
        append(path, same * 3)
    reader.until_count(9)
    reader.poll()
    assert reader.lines == [line(0, "same")] * 9
    assert reader.rotations == 2
