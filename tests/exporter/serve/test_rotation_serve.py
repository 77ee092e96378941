"""Rotation across restarts of the real ``log-exporter serve`` process with a state file."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import pytest

from tests.support.contract import contract_line
from tests.support.serve import (
    Exporter,
    append,
    in_process_service,
    run_until,
    sample,
)
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow


def _rotate(log: Path) -> None:
    """What logrotate's `create` does: shift the numbered siblings, rename, create."""
    numbered = sorted(
        (int(n.rsplit(".", 1)[1]) for n in os.listdir(log.parent) if n.startswith(log.name + ".")),
        reverse=True,
    )
    for k in numbered:
        os.rename(f"{log}.{k}", f"{log}.{k + 1}")
    os.rename(log, f"{log}.1")
    log.touch()


def _total_bytes(log: Path) -> int:
    return sum(p.stat().st_size for p in log.parent.iterdir() if p.name.startswith(log.name))


def test_rotation_while_stopped_resumes_exactly(tmp_path: Path) -> None:
    """Rotated twice while the exporter was stopped: after a restart the old file is finished,
    the generation in between read, the new file read, and every count is exact."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, state = logs / "app.jsonl", tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state)]
    append(log, contract_line("auth.failed", failure_type="expired") * 5)
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        first.wait_metric("sustainbot_authentication_failures_total", 5.0, failure_type="expired")
        assert first.stop() == 0

    append(log, contract_line("auth.failed", failure_type="expired") * 2)  # unread when rotated
    _rotate(log)
    append(log, contract_line("auth.failed", failure_type="expired") * 3)
    _rotate(log)
    append(log, contract_line("auth.failed", failure_type="expired") * 4)

    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric("sustainbot_authentication_failures_total", 14.0, failure_type="expired")
        second.wait_metric("log_exporter_bytes_read_total", float(_total_bytes(log)))
        samples = second.metrics()
        assert sample(samples, "log_exporter_lines_total", result="parsed") == 14.0
        assert sample(samples, "log_exporter_file_rotations_total") == 2.0
        assert second.stop() == 0


def _stopped_after_five(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """An exporter with a state file that counted five lines of its log, then stopped: the log's
    directory, the log and the exporter's arguments, for the restart."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, state = logs / "app.jsonl", tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state)]
    append(log, contract_line("auth.failed", failure_type="expired") * 5)
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        first.wait_metric("sustainbot_authentication_failures_total", 5.0, failure_type="expired")
        assert sample(first.metrics(), "log_exporter_resume_misses_total") == 0.0
        assert first.stop() == 0
    return logs, log, args


def test_generation_compressed_while_stopped_is_resumed_from_its_offset(tmp_path: Path) -> None:
    """A generation rotated and compressed while the exporter was stopped is found by its first
    bytes and read on from the saved offset: no resume miss, every line counted once."""
    logs, log, args = _stopped_after_five(tmp_path)

    append(log, contract_line("auth.failed", failure_type="expired") * 2)  # unread, then compressed
    _rotate(log)
    data = (logs / "app.jsonl.1").read_bytes()
    (logs / "app.jsonl.1.gz").write_bytes(gzip.compress(data))
    (logs / "app.jsonl.1").unlink()
    append(log, contract_line("auth.failed", failure_type="ticket") * 3)

    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric("sustainbot_authentication_failures_total", 7.0, failure_type="expired")
        second.wait_metric("sustainbot_authentication_failures_total", 3.0, failure_type="ticket")
        samples = second.metrics()
        assert sample(samples, "log_exporter_resume_misses_total") == 0.0
        assert sample(samples, "log_exporter_lines_total", result="parsed") == 10.0
        assert second.stop() == 0


def test_generation_deleted_while_stopped_is_counted_as_a_resume_miss(tmp_path: Path) -> None:
    """A generation rotated and deleted while the exporter was stopped cannot be resumed: the
    loss shows in log_exporter_resume_misses_total, and the new file is still read."""
    logs, log, args = _stopped_after_five(tmp_path)

    append(log, contract_line("auth.failed", failure_type="expired") * 2)  # unread, then deleted
    _rotate(log)
    (logs / "app.jsonl.1").unlink()
    append(log, contract_line("auth.failed", failure_type="expired") * 3)

    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric("sustainbot_authentication_failures_total", 8.0, failure_type="expired")
        samples = second.metrics()
        assert sample(samples, "log_exporter_resume_misses_total") == 1.0
        # Stopped cleanly, it had read all there was: what was lost was written after the save.
        assert sample(samples, "log_exporter_resume_lost_bytes_total") == 0.0
        assert second.stop() == 0
    # The warning says, in the operator's words, what was lost, where it is counted and what to
    # do; no Python repr of the file's identity.
    (warning,) = [e["msg"] for e in second.log_records() if "is gone" in e.get("msg", "")]
    assert "were not counted (log_exporter_resume_misses_total" in warning
    assert "replay the rotated files" in warning
    assert "FileId(" not in warning


def test_kill_9_amid_rotations_restarts_exact(tmp_path: Path) -> None:
    """kill -9 while the log is being written and rotated: the restart resumes from the last
    snapshot (values and position together) and ends with every event counted once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log, state = logs / "app.jsonl", tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state), "--state-interval", "0.1"]
    total = 0
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        for round_ in range(6):
            append(log, contract_line("auth.jwt_validated", outcome="success") * 40)
            total += 40
            if round_ % 2:
                _rotate(log)
        wait_for(state.exists, "a first state save")
        first.stop(signal.SIGKILL)

    _rotate(log)  # and once more while it is down
    append(log, contract_line("auth.jwt_validated", outcome="success") * 7)
    total += 7
    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric("sustainbot_jwt_validations_total", float(total), outcome="success")
        second.wait_metric("log_exporter_bytes_read_total", float(_total_bytes(log)))
        assert sample(second.metrics(), "log_exporter_lines_total", result="parsed") == total
        assert second.stop() == 0


def test_generation_rotated_once_serving_but_before_the_first_poll_is_counted(
    tmp_path: Path,
) -> None:
    """A generation written and rotated away as soon as the exporter serves, before its tail
    loop first polls, is counted: the history is taken before /healthz can answer."""
    log = tmp_path / "app.jsonl"
    service = in_process_service(log)
    real_start = service.server.start

    def start_then_rotate() -> None:
        real_start()
        # A writer that waited for /healthz acts here, before the tail loop runs at all.
        append(log, contract_line("auth.jwt_validated", outcome="success") * 3)
        os.rename(log, f"{log}.1")
        append(log, contract_line("auth.jwt_validated", outcome="success") * 2)

    service.server.start = start_then_rotate  # type: ignore[method-assign]

    # The first poll reads the path and any generation it finds in one batch, fed at once.
    code = run_until(service, lambda: service.store.lines["parsed"] >= 2, "the lines at the path")
    assert code == 0
    assert service.store.lines["parsed"] == 5.0
