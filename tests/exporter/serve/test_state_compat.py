"""A state file written by an earlier release still resumes exactly.

The fixture was saved by log-exporter 0.1.0 after it had read the first 30 lines of the contract
fixture. Only what names this machine's file (its path, device and inode) is filled in here; the
format, the position and the saved metric values are the release's own bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.serve import Exporter

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"
READ_BEFORE_SAVE = 30  # lines of contract.jsonl the 0.1.0 exporter had read when it saved


def _scrape(
    tmp_path: Path, log: Path, state: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with Exporter(tmp_path, ["--file", str(log), "--state", state]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("log_exporter_bytes_read_total", float(log.stat().st_size))
        samples = exporter.metrics()
        assert exporter.stop() == 0
    # Saves happen at their own pace, so their count is no measure of what was read; the
    # process's own memory, CPU and garbage collections differ between any two processes, and
    # so do the HTTP answers each was asked for while it was awaited.
    moving = ("log_exporter_state_saves", "log_exporter_http_", "process_", "python_gc_")
    return {k: v for k, v in samples.items() if not k[0].startswith(moving)}


def test_state_file_of_release_0_1_0_resumes_without_loss_or_double_count(tmp_path: Path) -> None:
    """Resuming from a 0.1.0 state file gives the same metrics as reading the whole log fresh."""
    lines = (FIXTURES / "contract.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 49
    resumed_dir, fresh_dir = tmp_path / "resumed", tmp_path / "fresh"
    resumed_dir.mkdir()
    fresh_dir.mkdir()

    log = resumed_dir / "sustainbot.jsonl"
    log.write_bytes(b"".join(lines[:READ_BEFORE_SAVE]))
    st = os.stat(log)
    text = (FIXTURES / "state-v1.written-by-0.1.0.json").read_text(encoding="utf-8")
    text = text.replace('"@TARGET@"', json.dumps(str(log.absolute())))
    text = text.replace('"@DEV@"', str(st.st_dev)).replace('"@INO@"', str(st.st_ino))
    (resumed_dir / "state.json").write_text(text, encoding="utf-8")
    with log.open("ab") as f:
        f.write(b"".join(lines[READ_BEFORE_SAVE:]))

    fresh_log = fresh_dir / "sustainbot.jsonl"
    fresh_log.write_bytes(b"".join(lines))

    resumed = _scrape(resumed_dir, log, "state.json")
    fresh = _scrape(fresh_dir, fresh_log, "state.json")
    assert resumed == fresh
    assert resumed[("log_exporter_state_load_failures_total", ())] == 0.0
    assert resumed[("log_exporter_resume_misses_total", ())] == 0.0
