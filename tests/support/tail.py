"""Shared pieces of the tailing tests: a polling reader with deadlines and unique lines."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from log_exporter.sources.tail import Tailer
from log_exporter.values import Batch
from tests.support.waits import DEADLINE, wait_for


def line(i: int, tag: str = "line") -> bytes:
    """A unique line (no newline); uniqueness is what makes 'each line exactly once' checkable."""
    return b'{"event":"aim.request","seq":%d,"tag":"%s"}' % (i, tag.encode())


def append(path: Path | str, data: bytes) -> None:
    """One write() per call, as the app writes each line."""
    with open(path, "ab") as f:
        f.write(data)


def lines_of(seq: range, tag: str = "line") -> list[bytes]:
    """The unique lines numbered ``seq``, tagged ``tag``."""
    return [line(i, tag) for i in seq]


def write_lines(path: Path | str, lines: list[bytes]) -> None:
    """Each line appended with its newline, in a write() of its own."""
    for x in lines:
        append(path, x + b"\n")


class Reader:
    """Polls a tailer and keeps everything it yielded."""

    def __init__(self, tailer: Tailer) -> None:
        self.tailer = tailer
        self.lines: list[bytes] = []
        self.oversized = 0
        self.rotations = 0
        self.truncations = 0
        self.last: Batch | None = None

    def poll(self) -> Batch:
        batch = self.tailer.poll()
        self.lines.extend(batch.lines)
        self.oversized += batch.oversized
        self.rotations += batch.rotations
        self.truncations += batch.truncations
        self.last = batch
        return batch

    def until(self, condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
        """Poll until ``condition`` holds; fail naming ``what`` after ``timeout`` seconds."""

        def reached() -> bool:
            if condition():
                return True
            if not self.poll().bytes_read:
                time.sleep(0.005)  # nothing new yet: yield the CPU to the writer
            return False

        # No pause between polls that read something: a large file is read at full speed.
        wait_for(reached, what, timeout=timeout, interval=0, explain=self.progress)

    def progress(self) -> str:
        """How far the reader got, for a failure message."""
        position = self.tailer.position
        where = None if position is None else (position.file, position.offset)
        return f"{len(self.lines)} lines, {self.oversized} oversized, position {where}"

    def until_count(self, n: int, timeout: float = DEADLINE) -> None:
        self.until(lambda: len(self.lines) >= n, f"{n} lines", timeout)

    def counts(self) -> Counter[bytes]:
        return Counter(self.lines)


def exactly_once(read: list[bytes], written: list[bytes]) -> None:
    """Assert the multiset of lines read equals the lines written, naming what differs."""
    got, want = Counter(read), Counter(written)
    missing = want - got
    extra = got - want
    assert not missing and not extra, (
        f"{sum(missing.values())} lines missing (e.g. {list(missing)[:3]}), "
        f"{sum(extra.values())} extra or duplicated (e.g. {list(extra)[:3]})"
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
