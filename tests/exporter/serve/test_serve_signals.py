"""Signals to a running ``log-exporter serve``: SIGHUP reloads the spec, SIGTERM stops and saves."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from tests.support.contract import contract_line
from tests.support.serve import Exporter, append, run_cli, sample
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

PINGS = """version = 1

[metrics.demo_pings_total]
type = "counter"
help = "Pings, by colour."
events = ["ping"]
labels = ["color"]
"""

PONGS = """
[metrics.demo_pongs_total]
type = "counter"
help = "Pongs."
events = ["pong"]
"""


def _reloads(exporter: Exporter, result: str) -> float | None:
    return sample(exporter.metrics(), "log_exporter_spec_reloads_total", result=result)


def test_sighup_with_a_valid_spec_takes_effect_and_keeps_unchanged_values(tmp_path: Path) -> None:
    """After SIGHUP a new metric in the spec is derived, and unchanged metrics keep counting."""
    spec, log = tmp_path / "spec.toml", tmp_path / "app.jsonl"
    spec.write_text(PINGS)
    append(log, contract_line("ping", color="red") * 3 + contract_line("pong"))
    with Exporter(tmp_path, ["--file", str(log), "--spec", str(spec)]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("demo_pings_total", 3.0, color="red")
        assert sample(exporter.metrics(), "demo_pongs_total") is None

        spec.write_text(PINGS + PONGS)
        exporter.send(signal.SIGHUP)
        exporter.wait_metric("log_exporter_spec_reloads_total", 1.0, result="success")
        append(log, contract_line("ping", color="red") + contract_line("pong") * 2)
        exporter.wait_metric("demo_pongs_total", 2.0)
        assert sample(exporter.metrics(), "demo_pings_total", color="red") == 4.0
        assert exporter.stop() == 0


def test_sighup_with_an_invalid_spec_keeps_the_old_one(tmp_path: Path) -> None:
    """A broken spec on SIGHUP is logged and ignored; the process lives and keeps counting."""
    spec, log = tmp_path / "spec.toml", tmp_path / "app.jsonl"
    spec.write_text(PINGS)
    append(log, contract_line("ping", color="blue"))
    with Exporter(tmp_path, ["--file", str(log), "--spec", str(spec)]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("demo_pings_total", 1.0, color="blue")

        spec.write_text(PINGS + '\n[metrics.broken]\ntype = "sometimes"\n')
        exporter.send(signal.SIGHUP)
        exporter.wait_metric("log_exporter_spec_reloads_total", 1.0, result="failure")
        assert exporter.proc.poll() is None
        failure = next(r for r in exporter.log_records() if r["msg"].startswith("spec reload"))
        assert failure["level"] == "error"
        assert str(spec) in failure["error"]
        assert "[metrics.broken]" in failure["error"]

        append(log, contract_line("ping", color="blue"))
        exporter.wait_metric("demo_pings_total", 2.0, color="blue")
        assert _reloads(exporter, "success") == 0.0
        assert exporter.stop() == 0


def test_sigterm_saves_state_and_a_restart_neither_resets_nor_double_counts(
    tmp_path: Path,
) -> None:
    """SIGTERM exits 0 after saving; a restart resumes values and position exactly."""
    log, state = tmp_path / "app.jsonl", tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state)]
    append(log, contract_line("auth.failed", failure_type="expired") * 7)
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        first.wait_metric("sustainbot_authentication_failures_total", 7.0, failure_type="expired")
        assert first.stop() == 0
    assert json.loads(state.read_bytes())["format"] == "log-exporter-state"

    append(log, contract_line("auth.failed", failure_type="expired") * 2)
    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric("sustainbot_authentication_failures_total", 9.0, failure_type="expired")
        samples = second.metrics()
        assert sample(samples, "log_exporter_lines_total", result="parsed") == 9.0
        assert sample(samples, "log_exporter_bytes_read_total") == log.stat().st_size
        assert second.stop() == 0


def test_kill_9_restart_still_ends_exact(tmp_path: Path) -> None:
    """After kill -9 at an arbitrary moment, a restart from the last snapshot ends exact."""
    log, state = tmp_path / "app.jsonl", tmp_path / "state.json"
    args = ["--file", str(log), "--state", str(state), "--state-interval", "0.1"]
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        for _ in range(20):
            append(log, contract_line("auth.jwt_validated", outcome="success") * 50)
        wait_for(state.exists, "a first state save")
        first.stop(signal.SIGKILL)

    append(log, contract_line("auth.jwt_validated", outcome="success") * 5)
    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric("sustainbot_jwt_validations_total", 1005.0, outcome="success")
        second.wait_metric("log_exporter_bytes_read_total", float(log.stat().st_size))
        assert second.stop() == 0


def test_corrupt_state_file_starts_fresh_and_counts_it(tmp_path: Path) -> None:
    """A garbled state file is logged and counted; the exporter reads the log from the start."""
    log, state = tmp_path / "app.jsonl", tmp_path / "state.json"
    state.write_text("{ not json")
    append(log, contract_line("auth.jwt_validated", outcome="failure") * 3)
    with Exporter(tmp_path, ["--file", str(log), "--state", str(state)]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("sustainbot_jwt_validations_total", 3.0, outcome="failure")
        assert sample(exporter.metrics(), "log_exporter_state_load_failures_total") == 1.0
        assert exporter.stop() == 0
    assert json.loads(state.read_bytes())["format"] == "log-exporter-state"


def test_unwritable_state_file_is_counted_and_serving_goes_on(tmp_path: Path) -> None:
    """A state file that cannot be written is counted as an error; metrics keep flowing."""
    log = tmp_path / "app.jsonl"
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state = state_dir / "state.json"
    args = ["--file", str(log), "--state", str(state), "--state-interval", "0.1"]
    with Exporter(tmp_path, args) as exporter:
        exporter.wait_healthy()
        wait_for(state.exists, "a first state save")
        # The volume holding the state goes away under the running exporter.
        shutil.rmtree(state_dir)
        wait_for(
            lambda: (sample(exporter.metrics(), "log_exporter_state_saves_total", result="error")
                     or 0) >= 1,
            "a failed state save to be counted",
        )  # fmt: skip
        append(log, contract_line("auth.failed", failure_type="expired"))
        exporter.wait_metric(
            "sustainbot_authentication_failures_total", 1.0, failure_type="expired"
        )
        assert exporter.stop() == 0
    assert not state.exists()


def test_state_in_a_missing_directory_fails_at_start(tmp_path: Path) -> None:
    """A --state path whose directory does not exist is refused at start, naming it."""
    state = tmp_path / "typo" / "state.json"
    result = run_cli(["serve", "--file", "x", "--state", str(state)], cwd=tmp_path)
    assert result.returncode == 2
    assert str(tmp_path / "typo") in result.stderr


@pytest.mark.parametrize("name", ["app.jsonl.state", "app.jsonl"])
def test_state_file_named_like_a_rotated_log_fails_at_start(tmp_path: Path, name: str) -> None:
    """A state file the tailer would read as a rotated generation is refused at start."""
    log = tmp_path / "app.jsonl"
    result = run_cli(["serve", "--file", str(log), "--state", str(tmp_path / name)], cwd=tmp_path)
    assert result.returncode == 2
    assert "taken for a rotated log" in result.stderr
