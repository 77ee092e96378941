"""The log volume as CloudWatch's buffer, with real processes: `log-exporter serve` shipping to an
unreachable CloudWatch while real logrotate deletes a generation the shipper never read."""

from __future__ import annotations

import getpass
import grp
import os
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import binary, run
from tests.support.serve import Exporter, sample
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow


def _lines(first: int, n: int) -> bytes:
    return b"".join(b'{"event":"http.request","n":%d}\n' % i for i in range(first, first + n))


def test_generation_deleted_unshipped_is_counted_in_rotation_lost_lines(
    aws_env: str, tmp_path: Path
) -> None:
    """With CloudWatch unreachable, a generation logrotate deletes before the shipper reached it
    shows in log_exporter_rotation_lost_lines_total with its exact line count."""
    logrotate = binary("logrotate")
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "sustainbot.jsonl"
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  su {user} {group}\n  rotate 1\n  nocompress\n  nocreate\n}}\n")
    status = tmp_path / "status"

    def rotate() -> None:
        result = run([logrotate, "-f", "--state", str(status), str(conf)])
        assert result.returncode == 0, result.stderr

    log.write_bytes(_lines(0, 10))  # G0: the shipper reads it, then waits for CloudWatch
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every request is retried
    with Exporter(
        tmp_path,
        ["--file", str(log), "--state", "state.json"],
        env={"CLOUDWATCH_ENABLED": "true", "AWS_ENDPOINT_URL": dead},
    ) as exporter:
        exporter.wait_healthy()

        def metric(name: str, **labels: str) -> float | None:
            return sample(exporter.metrics(), name, **labels)

        wait_for(lambda: metric("log_exporter_cloudwatch_retries_total"), "a failed request")
        assert metric("log_exporter_rotation_lost_lines_total", reader="cloudwatch") == 0
        rotate()  # G0 -> .1
        log.write_bytes(_lines(10, 7))  # G1: the waiting shipper never opens it
        exporter.wait_metric("log_exporter_file_rotations_total", 1.0)
        rotate()  # G1 -> .1, G0 deleted (the shipper holds it open: not lost)
        log.write_bytes(_lines(17, 5))  # G2
        exporter.wait_metric("log_exporter_file_rotations_total", 2.0)
        rotate()  # G2 -> .1, G1 deleted unread by the shipper
        exporter.wait_metric("log_exporter_rotation_lost_lines_total", 7.0, reader="cloudwatch")
        lost = [r for r in exporter.log_records() if r.get("reader") == "cloudwatch"]
        assert [r["lines"] for r in lost] == [7]
        assert exporter.metrics()[("log_exporter_lines_total", (("result", "parsed"),))] == 22
