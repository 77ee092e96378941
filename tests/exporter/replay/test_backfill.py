"""docs/backfill.md's recipe, run verbatim: logs -> replay -> promtool -> a real Prometheus."""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.exporter.conftest import PrometheusFactory
from tests.support.replay_model import Item, expected_at, make_items, write_rotated_set

DOC = Path(__file__).parents[3] / "docs" / "backfill.md"
STEP = 60

pytestmark = pytest.mark.slow


def recipe() -> str:
    """The shell block that follows the recipe marker in docs/backfill.md."""
    text = DOC.read_text("utf-8")
    # The doc-block runner leaves it to this test, which checks what it builds in Prometheus.
    marker = r"<!-- doc-test: skip, run verbatim by tests/exporter/replay/test_backfill\.py[^>]*-->"
    m = re.search(marker + r"\s*```sh\n(.*?)```", text, re.DOTALL)
    assert m, "docs/backfill.md lost its recipe block"
    return m.group(1)


def model_sum(items: list[Item], at: float, name: str, labels: dict[str, str]) -> float:
    want = set(labels.items())
    values = expected_at(items, at)
    return sum(v for (n, lb), v in values.items() if n == name and want <= lb)


def test_backfill_recipe_gives_the_logged_values_at_past_instants(
    tmp_path: Path, prometheus_factory: PrometheusFactory, promtool_binary: str
) -> None:
    """After the documented recipe, a real Prometheus answers queries at several past instants
    with the values the log implies at those instants (the latest step at or before each)."""
    # About two hours of events a day ago: far outside the head block's last 3 hours.
    start = math.floor(time.time() / 3600) * 3600 - 86400 + 17.25
    items = make_items(random.Random(7), 1800, start, mean_gap=4.0, junk=0.02, untimed=0.02)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    write_rotated_set(log_dir, items, parts=3)
    # A rotation since: every generation moves up one, and the live file holds later events the
    # recipe must leave out (docs/backfill.md, "The last 3 hours"); reading them would change
    # every answer at last + 120.
    (log_dir / "sustainbot.jsonl.2.gz").rename(log_dir / "sustainbot.jsonl.3.gz")
    (log_dir / "sustainbot.jsonl.1").rename(log_dir / "sustainbot.jsonl.2")
    (log_dir / "sustainbot.jsonl").rename(log_dir / "sustainbot.jsonl.1")
    last_logged = max(it.time for it in items if it.time is not None)
    live = make_items(random.Random(8), 200, last_logged + 1, mean_gap=0.1)
    (log_dir / "sustainbot.jsonl").write_bytes(b"".join(it.raw + b"\n" for it in live))
    data = tmp_path / "prometheus-data"
    data.mkdir()

    env = {
        **os.environ,
        "LOG_DIR": str(log_dir),
        "PROMETHEUS_DATA": str(data),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe()],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(p.is_dir() for p in data.iterdir()), "no block was moved into the data directory"

    prom = prometheus_factory(data=data)
    times = [it.time for it in items if it.time is not None]
    first, last = min(times), max(times)
    steps = [k * STEP for k in range(math.ceil(first / STEP), math.floor(last / STEP) + 1)]
    samples = sorted({*steps, last})

    def state_at(q: float) -> float:
        """The time of the sample a query at ``q`` sees: the latest at or before it."""
        return max(s for s in samples if s <= q)

    instants = [steps[3], steps[3] + 30, steps[len(steps) // 2] + 59.5, steps[-2], last + 120]
    checks = [
        ("sum(sustainbot_aim_requests_total)", "sustainbot_aim_requests_total", {}),
        (
            'sum(sustainbot_audit_log_entries_total{outcome="success"})',
            "sustainbot_audit_log_entries_total",
            {"outcome": "success"},
        ),
        (
            'sum(sustainbot_governed_workflow_duration_seconds_bucket{le="10.0"})',
            "sustainbot_governed_workflow_duration_seconds_bucket",
            {"le": "10.0"},
        ),
        ("sustainbot_active_requests", "sustainbot_active_requests", {}),
        (
            'log_exporter_lines_total{result="malformed"}',
            "log_exporter_lines_total",
            {"result": "malformed"},
        ),
    ]
    for q in instants:
        seen_at = state_at(q)
        for expr, name, labels in checks:
            result = prom.query(expr, q)
            assert len(result) == 1, f"{expr} at {q}: {result}"
            got = float(result[0]["value"][1])
            want = model_sum(items, seen_at, name, labels)
            assert got == pytest.approx(want), f"{expr} at {q} (state of {seen_at})"

    # Before the first sample there is nothing; far after the last one, nothing either.
    assert prom.query("sum(sustainbot_aim_requests_total)", samples[0] - 1) == []
    assert prom.query("sustainbot_active_requests", last + 600) == []
