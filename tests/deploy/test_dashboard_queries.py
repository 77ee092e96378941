"""Every dashboard query runs against a real Prometheus holding backfilled exporter data.

Contract events from a day ago go through `log-exporter replay --format openmetrics`, then
`promtool tsdb create-blocks-from openmetrics`, then a real `prometheus` on those blocks; each panel
target, variable and annotation query is run through the HTTP API the way Grafana runs it.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import CLOUDWATCH_ONLY_METRICS, DEPLOY, REPO, load_yaml
from tests.support.event_history import Generated, write_events
from tests.support.processes import run, spawn, terminate
from tests.support.prometheus import Prometheus
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "dashboards" / "governance-observability.json"
STEP = 60


@dataclass
class Backfilled:
    prometheus: Prometheus
    events: Generated
    jsonl: Path


@pytest.fixture(scope="module")
def backfilled(
    tmp_path_factory: pytest.TempPathFactory, promtool_binary: str, prometheus_binary: str
) -> Iterator[Backfilled]:
    tmp = tmp_path_factory.mktemp("backfill")
    # A day ago and hour-aligned: old enough to land in persisted blocks, not the head block.
    start = (int(time.time()) // 3600 - 27) * 3600
    jsonl = tmp / "sustainbot.jsonl"
    events = write_events(jsonl, float(start))
    openmetrics = tmp / "backfill.om"
    replay_args = [
        "--quiet",
        "--format",
        "openmetrics",
        "--step",
        str(STEP),
        "-o",
        str(openmetrics),
    ]
    replay = run([sys.executable, "-m", "log_exporter", "replay", *replay_args, str(jsonl)])
    assert replay.returncode == 0, replay.stderr
    data = tmp / "data"
    blocks = run(
        [promtool_binary, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)]
    )
    assert blocks.returncode == 0, blocks.stdout + blocks.stderr
    prom = Prometheus(prometheus_binary, tmp, data=data)
    try:
        yield Backfilled(prom, events, jsonl)
    finally:
        prom.stop()


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _substitute(expr: str, drag_mode: str, workflow: str, range_seconds: int) -> str:
    """Expand Grafana's variables the way Grafana does before sending a query."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$__range", f"{range_seconds}s")
        .replace("$drag_mode", drag_mode)
        .replace("$workflow", workflow)
    )


def _targets(dashboard: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(p["id"], t) for p in dashboard["panels"] for t in p["targets"]]


# "All" is the variable's allValue; a multi-select is a regex alternation of the chosen values.
SELECTIONS = [(".*", ".*"), ("(draft|research)", "(generate_report|carbon_audit)")]


@pytest.mark.parametrize(("drag_mode", "workflow"), SELECTIONS, ids=["all", "selected"])
def test_panel_query_fails_or_returns_nothing(
    backfilled: Backfilled, drag_mode: str, workflow: str
) -> None:
    """Every panel target parses in Prometheus and returns data over the backfilled window."""
    events = backfilled.events
    window = int(events.end - events.start)
    for panel_id, target in _targets(_dashboard()):
        expr = _substitute(target["expr"], drag_mode, workflow, window)
        result = backfilled.prometheus.api(
            "/api/v1/query_range",
            query=expr,
            start=events.start,
            end=events.end,
            step=STEP,
        )
        assert result["status"] == "success", (panel_id, expr, result)
        assert result["data"]["result"], f"panel {panel_id} returns no data: {expr}"
        if target.get("instant"):
            # Grafana sends instant targets as a query at the end of the time range.
            instant = backfilled.prometheus.api("/api/v1/query", query=expr, time=events.end)
            assert instant["status"] == "success", (panel_id, expr, instant)
            assert instant["data"]["result"], f"panel {panel_id} (instant) returns no data"


@pytest.mark.parametrize(("drag_mode", "workflow"), SELECTIONS, ids=["all", "selected"])
def test_prescriptive_stat_misses_detections(
    backfilled: Backfilled, drag_mode: str, workflow: str
) -> None:
    """The prescriptive-language stat shows exactly how many detections the range holds."""
    events = backfilled.events
    (panel,) = [p for p in _dashboard()["panels"] if p["id"] == 10]
    (target,) = panel["targets"]
    # A range reaching back before the first event: every detection of the log is in it.
    window = int(events.end - events.start) + 600
    expr = _substitute(target["expr"], drag_mode, workflow, window)
    result = backfilled.prometheus.api("/api/v1/query", query=expr, time=events.end)
    assert result["status"] == "success", result
    ((sample),) = result["data"]["result"]
    wanted = re.compile(drag_mode)
    expected = sum(1 for _, mode in events.detections if wanted.fullmatch(mode))
    assert expected > 0
    assert float(sample["value"][1]) == expected


def test_template_variable_offers_wrong_values(backfilled: Backfilled) -> None:
    """$drag_mode and $workflow list exactly the label values present in the data."""
    events = backfilled.events
    expected = {"drag_mode": events.drag_modes, "workflow": events.workflows}
    for variable in _dashboard()["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        metric, label = match.groups()
        # What Grafana's Prometheus datasource sends for label_values(metric, label).
        result = backfilled.prometheus.api(
            f"/api/v1/label/{label}/values",
            **{"match[]": metric, "start": events.start, "end": events.end},
        )
        assert result["status"] == "success", result
        assert set(result["data"]) == expected[variable["name"]]


def test_deployment_annotation_missing_or_repeated(backfilled: Backfilled) -> None:
    """Each app start with a new version yields one annotation point, at its start time."""
    events = backfilled.events
    (annotation,) = [
        a for a in _dashboard()["annotations"]["list"] if a.get("name") == "Deployments"
    ]
    step = int(annotation["step"].removesuffix("s"))
    result = backfilled.prometheus.api(
        "/api/v1/query_range",
        query=annotation["expr"],
        start=events.start,
        end=events.end,
        step=step,
    )
    assert result["status"] == "success", result
    points = {
        series["metric"]["version"]: [float(t) for t, _ in series["values"]]
        for series in result["data"]["result"]
    }
    for started, version in events.deployments:
        # The first step at or after the start that sees the new series, and only that one.
        assert len(points[version]) == 1, (version, points[version])
        assert started <= points[version][0] < started + step + STEP
    assert set(points) == {v for _, v in events.deployments}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(?:sustainbot|log_exporter)_[a-z_]+\b", expr))


def _served_by_serve(jsonl: Path, port: int) -> str:
    """The /metrics page of a real `log-exporter serve` that has read the whole file.

    With a state file, as compose and Kubernetes run it: the state metrics exist only then.
    """
    state_dir = jsonl.parent / "serve-state"
    state_dir.mkdir(exist_ok=True)
    args = ["serve", "--file", str(jsonl), "--listen", f"127.0.0.1:{port}"]
    args += ["--state", str(state_dir / "state.json")]
    log_path = jsonl.with_name("serve.log")
    proc = spawn([sys.executable, "-m", "log_exporter", *args], log_path)
    try:

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for(ready, "log-exporter serve to answer /readyz", timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            text: str = r.read().decode()
        return text
    finally:
        terminate(proc)


def test_query_names_metric_the_exporter_never_serves(
    backfilled: Backfilled, free_port: int
) -> None:
    """Every metric the dashboard and alert rules use is on a real sidecar's /metrics page."""
    served = set(
        re.findall(
            r"^([a-zA-Z_:][a-zA-Z0-9_:]*)",
            _served_by_serve(backfilled.jsonl, free_port),
            re.MULTILINE,
        )
    )
    dashboard = _dashboard()
    exprs = [t["expr"] for _, t in _targets(dashboard)]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    rules = load_yaml(DEPLOY / "prometheus" / "rules" / "sustainbot-alerts.yml")
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert len(used) >= 12
    # Served only with CloudWatch shipping on, which this sidecar runs without.
    assert used - served - CLOUDWATCH_ONLY_METRICS == set()
