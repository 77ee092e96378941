"""Lines lost to rotation, with real logrotate on real files: a generation the rotator deletes
before a slower reader (CloudWatch's) reached it is counted for that reader, one it read is not."""

from __future__ import annotations

import getpass
import grp
import os
from pathlib import Path

import pytest

from log_exporter.sources.tail import Tailer
from log_exporter.sources.tail.ledger import RotationLedger
from log_exporter.testing import ManualClock
from tests.support.processes import binary, run


@pytest.fixture
def logrotate() -> str:
    return binary("logrotate")


class Pod:
    """A log, an observer tailer (serve's) and a reader tailer (the shipper's) on one clock, and
    logrotate keeping one rotated generation, as the pod's config does with four."""

    def __init__(self, tmp_path: Path, logrotate: str) -> None:
        self.logrotate = logrotate
        self.dir = tmp_path / "logs"
        self.dir.mkdir()
        self.log = self.dir / "sustainbot.jsonl"
        self.clock = ManualClock()
        self.status = tmp_path / "status"
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        self.conf = tmp_path / "logrotate.conf"
        self.conf.write_text(
            f"{self.log} {{\n  su {user} {group}\n  rotate 1\n  nocompress\n  nocreate\n"
            "  missingok\n}\n"
        )
        self.observer = Tailer(self.log, clock=self.clock, rotation_grace=1.0)
        self.reader = Tailer(self.log, clock=self.clock, rotation_grace=1.0)
        self.ledger = RotationLedger(str(self.log), clock=self.clock)
        self.ledger.watch("cloudwatch", self.reader.progress)
        self.written = 0

    def write(self, n: int) -> None:
        """The app appends ``n`` lines (creating the file after a rotation, as it does)."""
        with self.log.open("ab") as f:
            for _ in range(n):
                f.write(b'{"event":"http.request","n":%d}\n' % self.written)
                self.written += 1

    def rotate(self) -> None:
        result = run([self.logrotate, "-f", "--state", str(self.status), str(self.conf)])
        assert result.returncode == 0, result.stderr

    def observe(self) -> None:
        """serve's loop for a few seconds: polls past the grace period, ledger checks."""
        for _ in range(3):
            self.observer.poll()
            self.ledger.check(self.observer)
            self.clock.advance(1.1)

    def close(self) -> None:
        self.observer.close()
        self.reader.close()


def test_generation_deleted_before_the_reader_reached_it_is_not_counted(
    tmp_path: Path, logrotate: str
) -> None:
    """A reader held up (no poll) while logrotate deletes a generation it never opened: that
    generation's lines are counted lost; the one it holds open is not."""
    pod = Pod(tmp_path, logrotate)
    try:
        pod.write(10)  # G0: the reader opens it at start and then stops polling
        pod.reader.start()
        pod.observe()
        pod.rotate()  # G0 -> .1
        pod.write(7)  # G1: never opened by the reader
        pod.observe()
        pod.rotate()  # G1 -> .1, G0 deleted (the reader still holds it open)
        pod.write(5)  # G2
        pod.observe()
        pod.rotate()  # G2 -> .1, G1 deleted before the reader reached it
        pod.observe()
        pod.observe()
        assert pod.ledger.lost == {"cloudwatch": 7}
        # The reader, polled again, reads G0 through its descriptor and G2, not G1.
        lines = []
        for _ in range(5):
            lines += pod.reader.poll().lines
            pod.clock.advance(1.1)
        assert len(lines) == 10 + 5
    finally:
        pod.close()


def test_generation_read_before_deletion_counted_as_lost(tmp_path: Path, logrotate: str) -> None:
    """A reader that keeps up reads every generation before logrotate deletes it: nothing lost."""
    pod = Pod(tmp_path, logrotate)
    try:
        pod.reader.start()
        read = 0
        for n in (10, 7, 5, 3):
            pod.write(n)
            read += len(pod.reader.poll().lines)
            pod.observe()
            pod.rotate()
            read += len(pod.reader.poll().lines)
        pod.observe()
        pod.observe()
        assert pod.ledger.lost == {"cloudwatch": 0}
        assert read == pod.written
    finally:
        pod.close()
