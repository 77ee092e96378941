"""``make demo``'s script, run for real: service and sidecar together, then a clean stop."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import clean_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "demo-observability.sh"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_runs_end_to_end_and_leaves_no_process_behind(tmp_path: Path) -> None:
    """The demo prints the derived metrics and the scrape URL, exits 0 and stops both programs."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    env = clean_env()
    # As `make demo` does: the virtualenv's programs first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr

    pids = re.search(r"sustainbot pid (\d+), log-exporter pid (\d+)", out)
    assert pids, out
    for pid in map(int, pids.groups()):
        assert not _alive(pid), f"process {pid} outlived the demo"

    for heading in (
        "AIM requests by DRAG mode",
        "AIM validation failures by reason",
        "Workflow executions by workflow / outcome",
        "JWT validations by outcome",
        "HTTP requests by method / endpoint / status",
    ):
        assert heading in out
    summary = out[out.index("What the sidecar derived") :]
    # Every line the service wrote was parsed by the sidecar: nothing malformed in the contract.
    lines = re.search(r"lines malformed=(\d+), oversized=(\d+), parsed=(\d+)", summary)
    assert lines, summary
    assert lines.groups()[:2] == ("0", "0")
    assert int(lines.group(3)) > 0
    assert re.search(r"Scrape URL:\s+http://127\.0\.0\.1:\d+/metrics", out)
    # The temporary directory holding the log and the programs' output is removed.
    assert not any(tmp_path.glob("sustainbot-demo.*"))
