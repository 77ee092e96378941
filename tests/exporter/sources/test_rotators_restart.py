"""Real rotators compressing generations while the real ``log-exporter serve`` is stopped (by
SIGTERM or SIGKILL): each restart counts every line once."""

from __future__ import annotations

import getpass
import grp
import gzip
import os
import shutil
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.contract import contract_line
from tests.support.processes import binary, run
from tests.support.serve import Exporter, append, sample
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

METRIC = "sustainbot_jwt_validations_total"


class Lines:
    """Unique contract lines (a rotated generation is recognised by its first bytes)."""

    def __init__(self) -> None:
        self.written = 0

    def take(self, n: int) -> bytes:
        out = b"".join(
            contract_line(
                "auth.jwt_validated", outcome="success", trace_id=f"{self.written + k:032x}"
            )
            for k in range(n)
        )
        self.written += n
        return out


def logrotate_conf(tmp_path: Path, log: Path, options: str) -> Path:
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  su {user} {group}\n  rotate 5\n  create\n{options}}}\n")
    return conf


def logrotate(tmp_path: Path, conf: Path) -> None:
    result = run([binary("logrotate"), "-f", "--state", str(tmp_path / "status"), str(conf)])
    assert result.returncode == 0, result.stderr


def restart_counts_every_line(
    tmp_path: Path, log: Path, lines: Lines, stopped: Callable[[], None]
) -> None:
    """Serve, stop, let ``stopped()`` rotate and write, serve again: every line counted once."""
    state = tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state), "--state-interval", "0.1"]
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        first.wait_metric(METRIC, float(lines.written), outcome="success")
        assert first.stop() == 0
    stopped()
    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric(METRIC, float(lines.written), outcome="success")
        samples = second.metrics()
        assert sample(samples, "log_exporter_lines_total", result="parsed") == lines.written
        assert sample(samples, "log_exporter_resume_misses_total") == 0.0
        assert second.stop() == 0


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs logrotate")
def test_logrotate_compress_without_delaycompress_restarts_exact(tmp_path: Path) -> None:
    """logrotate's compress without delaycompress rotates and gzips the file being read, twice,
    while the exporter is stopped: the restart reads on in the first, reads the second, the new."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, lines = logs / "app.jsonl", Lines()
    conf = logrotate_conf(tmp_path, log, "  compress\n")
    append(log, lines.take(5))

    def stopped() -> None:
        append(log, lines.take(2))  # unread, then compressed
        logrotate(tmp_path, conf)
        append(log, lines.take(3))
        logrotate(tmp_path, conf)
        append(log, lines.take(4))
        assert sorted(p.name for p in logs.iterdir()) == [
            "app.jsonl",
            "app.jsonl.1.gz",
            "app.jsonl.2.gz",
        ]

    restart_counts_every_line(tmp_path, log, lines, stopped)


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs logrotate")
def test_logrotate_dateext_compress_restarts_exact(tmp_path: Path) -> None:
    """logrotate's dateext names the compressed generation NAME-DATE.gz: found and read on."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, lines = logs / "app.jsonl", Lines()
    conf = logrotate_conf(tmp_path, log, "  compress\n  dateext\n")
    append(log, lines.take(5))

    def stopped() -> None:
        append(log, lines.take(2))
        logrotate(tmp_path, conf)
        append(log, lines.take(3))
        (rotated,) = [p.name for p in logs.iterdir() if p.name != "app.jsonl"]
        assert rotated.startswith("app.jsonl-") and rotated.endswith(".gz")

    restart_counts_every_line(tmp_path, log, lines, stopped)


class Lumberjack:
    """What Go's lumberjack does on rotation: rename NAME.EXT to NAME-TIMESTAMP.EXT (UTC, to the
    millisecond), open a new NAME.EXT, then gzip the backup to .gz and remove it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.time = datetime(2026, 12, 7, 15, 45, 33, 123000, tzinfo=UTC)

    def rotate(self) -> None:
        stem, ext = os.path.splitext(self.log.name)
        stamp = self.time.strftime("%Y-%m-%dT%H-%M-%S.") + f"{self.time.microsecond // 1000:03d}"
        self.time += timedelta(seconds=1)
        backup = self.log.with_name(f"{stem}-{stamp}{ext}")
        os.rename(self.log, backup)
        self.log.touch()
        with open(backup, "rb") as src, gzip.open(f"{backup}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(backup)


def test_lumberjack_rotations_after_kill_9_restart_exact(tmp_path: Path) -> None:
    """Killed with SIGKILL while the log is written, then lumberjack rotates and gzips twice:
    the restart resumes from the last snapshot and counts every line once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, lines, writer = logs / "access.log", Lines(), Lumberjack(logs / "access.log")
    state = tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state), "--state-interval", "0.1"]
    append(log, lines.take(20))
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        first.wait_metric(METRIC, 20.0, outcome="success")
        append(log, lines.take(30))
        wait_for(state.exists, "a first state save")
        first.stop(signal.SIGKILL)

    append(log, lines.take(2))
    writer.rotate()
    append(log, lines.take(3))
    writer.rotate()
    append(log, lines.take(4))
    assert sorted(p.name for p in logs.iterdir()) == [
        "access-2026-12-07T15-45-33.123.log.gz",
        "access-2026-12-07T15-45-34.123.log.gz",
        "access.log",
    ]
    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric(METRIC, float(lines.written), outcome="success")
        samples = second.metrics()
        assert sample(samples, "log_exporter_lines_total", result="parsed") == lines.written
        assert sample(samples, "log_exporter_resume_misses_total") == 0.0
        assert second.stop() == 0


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs logrotate")
def test_generation_logrotate_deleted_while_stopped_is_counted_lost(tmp_path: Path) -> None:
    """logrotate with ``rotate 0`` deletes the generation being read while the exporter is
    stopped: the restart counts the miss and reads the new file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, lines = logs / "app.jsonl", Lines()
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  su {user} {group}\n  rotate 0\n  create\n}}\n")
    state = tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state)]
    append(log, lines.take(5))
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        first.wait_metric(METRIC, 5.0, outcome="success")
        assert first.stop() == 0
    append(log, lines.take(2))  # lost with the generation
    logrotate(tmp_path, conf)
    assert [p.name for p in logs.iterdir()] == ["app.jsonl"]
    append(log, lines.take(3))
    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric(METRIC, 8.0, outcome="success")
        samples = second.metrics()
        assert sample(samples, "log_exporter_resume_misses_total") == 1.0
        assert sample(samples, "log_exporter_resume_lost_bytes_total") == 0.0
        assert second.stop() == 0
