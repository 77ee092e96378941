"""Every dashboard query runs against a real Prometheus holding backfilled exporter data.

Contract events from a day ago, written for two namespaces (staging and production, different
traffic), go through `log-exporter replay --format openmetrics` with the target labels a scrape
would attach given as `--label` (namespace, pod, job, instance), then `promtool tsdb
create-blocks-from openmetrics`, then a real `prometheus` on those blocks; each panel target,
variable and annotation query is run through the HTTP API the way Grafana runs it, with its
variables substituted.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import CLOUDWATCH_ONLY_METRICS, DEPLOY, REPO, load_yaml
from tests.support.event_history import Generated, write_events, write_pod_logs
from tests.support.processes import run, spawn, terminate
from tests.support.prometheus import Prometheus
from tests.support.serve import exporter_argv
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "dashboards" / "governance-observability.json"
STEP = 60
JOB = "sustainbot-exporter"
# Namespace -> the seed of its traffic: different seeds, different counts per namespace.
NAMESPACES = {"staging": 7, "production": 11}
# The health panels whose metrics only a running sidecar serves (lag, state saves, CloudWatch,
# process): tests/deploy/test_dashboard_health.py runs those against live sidecars.
LIVE_ONLY_PANELS = {11, 14, 15, 16, 17}


@dataclass
class Backfilled:
    prometheus: Prometheus
    events: dict[str, Generated]
    jsonl: Path

    @property
    def start(self) -> float:
        return min(e.start for e in self.events.values())

    @property
    def end(self) -> float:
        return max(e.end for e in self.events.values())


def pod_of(namespace: str) -> str:
    return f"sustainbot-{namespace}-0"


@pytest.fixture(scope="module")
def backfilled(
    tmp_path_factory: pytest.TempPathFactory, promtool_binary: str, prometheus_binary: str
) -> Iterator[Backfilled]:
    tmp = tmp_path_factory.mktemp("backfill")
    # A day ago and hour-aligned: old enough to land in persisted blocks, not the head block.
    start = (int(time.time()) // 3600 - 27) * 3600
    data = tmp / "data"
    events = {}
    for namespace, seed in NAMESPACES.items():
        jsonl = tmp / f"{namespace}.jsonl"
        events[namespace] = write_events(jsonl, float(start), seed=seed)
        openmetrics = tmp / f"{namespace}.om"
        replay_args = ["--quiet", "--format", "openmetrics", "--step", str(STEP)]
        # The labels a scrape of that namespace's pod attaches, as docs/backfill.md gives them.
        for label in (f"namespace={namespace}", f"pod={pod_of(namespace)}", f"job={JOB}"):
            replay_args += ["--label", label]
        replay_args += ["--label", "instance=10.0.0.1:9464", "-o", str(openmetrics), str(jsonl)]
        replay = run(exporter_argv("replay", *replay_args))
        assert replay.returncode == 0, replay.stderr
        # Two runs into one directory: two sets of blocks over the same hours, which
        # Prometheus merges at query time.
        create = ["tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)]
        blocks = run([promtool_binary, *create])
        assert blocks.returncode == 0, blocks.stdout + blocks.stderr
    prom = Prometheus(prometheus_binary, tmp, data=data)
    try:
        yield Backfilled(prom, events, tmp / "staging.jsonl")
    finally:
        prom.stop()


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Selection:
    """The values chosen in the dashboard's variables, as Grafana formats them into queries."""

    namespace: str = ".*"
    job: str = ".*"
    pod: str = ".*"
    drag_mode: str = ".*"
    workflow: str = ".*"


def _substitute(expr: str, chosen: Selection, range_seconds: int, step: int = STEP) -> str:
    """Expand Grafana's variables the way Grafana does before sending a query.

    $__interval is the query's step; $__rate_interval is max($__interval + scrape interval,
    4 x scrape interval), the scrape interval here being the replay's step.
    """
    rate_interval = max(step + STEP, 4 * STEP)
    for name, value in (
        ("$__rate_interval", f"{rate_interval}s"),
        ("$__interval", f"{step}s"),
        ("$__range", f"{range_seconds}s"),
        ("$namespace", chosen.namespace),
        ("$job", chosen.job),
        ("$pod", chosen.pod),
        ("$drag_mode", chosen.drag_mode),
        ("$workflow", chosen.workflow),
    ):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def _targets(dashboard: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(p["id"], t) for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]


# "All" is the variable's allValue; a multi-select is a regex alternation of the chosen values.
SELECTIONS = {
    "all": Selection(),
    "staging": Selection(namespace="staging", job=JOB, pod=pod_of("staging")),
    "selected": Selection(
        namespace="(staging|production)",
        drag_mode="(draft|research)",
        workflow="(generate_report|carbon_audit)",
    ),
}


@pytest.mark.parametrize("chosen", SELECTIONS.values(), ids=SELECTIONS.keys())
def test_every_panel_query_parses_and_returns_data(
    backfilled: Backfilled, chosen: Selection
) -> None:
    """Every panel target parses in Prometheus and returns data over the backfilled window."""
    window = int(backfilled.end - backfilled.start)
    checked = 0
    for panel_id, target in _targets(_dashboard()):
        if panel_id in LIVE_ONLY_PANELS:
            continue
        checked += 1
        expr = _substitute(target["expr"], chosen, window)
        result = backfilled.prometheus.api(
            "/api/v1/query_range",
            query=expr,
            start=backfilled.start,
            end=backfilled.end,
            step=STEP,
        )
        assert result["status"] == "success", (panel_id, expr, result)
        assert result["data"]["result"], f"panel {panel_id} returns no data: {expr}"
        if target.get("instant"):
            # Grafana sends instant targets as a query at the end of the time range.
            instant = backfilled.prometheus.api("/api/v1/query", query=expr, time=backfilled.end)
            assert instant["status"] == "success", (panel_id, expr, instant)
            assert instant["data"]["result"], f"panel {panel_id} (instant) returns no data"
    assert checked >= 14


def _detections(backfilled: Backfilled, chosen: Selection) -> float:
    (panel,) = [p for p in _dashboard()["panels"] if p["id"] == 10]
    target = next(t for t in panel["targets"] if t.get("instant"))
    # A range reaching back before the first event: every detection of the log is in it.
    window = int(backfilled.end - backfilled.start) + 600
    expr = _substitute(target["expr"], chosen, window)
    result = backfilled.prometheus.api("/api/v1/query", query=expr, time=backfilled.end)
    assert result["status"] == "success", result
    ((sample),) = result["data"]["result"]
    return float(sample["value"][1])


@pytest.mark.parametrize("drag_mode", [".*", "(draft|research)"])
def test_prescriptive_stat_shows_every_detection(backfilled: Backfilled, drag_mode: str) -> None:
    """The prescriptive-language stat shows exactly how many detections the range holds."""
    wanted = re.compile(drag_mode)
    everywhere = 0
    for namespace, events in backfilled.events.items():
        expected = sum(1 for _, mode in events.detections if wanted.fullmatch(mode))
        assert expected > 0
        chosen = Selection(namespace=namespace, drag_mode=drag_mode)
        assert _detections(backfilled, chosen) == expected, namespace
        everywhere += expected
    assert _detections(backfilled, Selection(drag_mode=drag_mode)) == everywhere


def test_namespace_variable_mixes_namespaces(backfilled: Backfilled) -> None:
    """Choosing a namespace shows only its traffic; the namespaces' numbers differ and add up."""
    counts = {ns: len(e.detections) for ns, e in backfilled.events.items()}
    assert counts["staging"] != counts["production"], "the seeds must tell them apart"
    for namespace, expected in counts.items():
        assert _detections(backfilled, Selection(namespace=namespace)) == expected
        # The pod variable scopes the same way within the namespace.
        chosen = Selection(namespace=namespace, job=JOB, pod=pod_of(namespace))
        assert _detections(backfilled, chosen) == expected
    assert _detections(backfilled, Selection(namespace="qa")) == 0


def _variable_values(backfilled: Backfilled, query: str, chosen: Selection) -> set[str]:
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, query
    metric, label = match.groups()
    # What Grafana's Prometheus datasource sends for label_values(metric, label).
    result = backfilled.prometheus.api(
        f"/api/v1/label/{label}/values",
        **{"match[]": _substitute(metric, chosen, 0)},
        start=backfilled.start,
        end=backfilled.end,
    )
    assert result["status"] == "success", result
    return set(result["data"])


def test_template_variable_offers_wrong_values(backfilled: Backfilled) -> None:
    """Each variable lists exactly the label values present within the chosen scope."""
    variables = {
        v["name"]: v["query"]["query"]
        for v in _dashboard()["templating"]["list"]
        if v["type"] == "query"
    }
    staging = backfilled.events["staging"]
    everywhere = Selection()
    within = Selection(namespace="staging")
    assert _variable_values(backfilled, variables["namespace"], everywhere) == set(NAMESPACES)
    assert _variable_values(backfilled, variables["job"], within) == {JOB}
    assert _variable_values(backfilled, variables["pod"], everywhere) == {
        pod_of(ns) for ns in NAMESPACES
    }
    assert _variable_values(backfilled, variables["pod"], within) == {pod_of("staging")}
    assert _variable_values(backfilled, variables["drag_mode"], within) == staging.drag_modes
    assert _variable_values(backfilled, variables["workflow"], within) == staging.workflows


def test_deployment_annotation_once_per_app_start(backfilled: Backfilled) -> None:
    """Each app start with a new version yields one annotation point per namespace, at its start."""
    (annotation,) = [
        a for a in _dashboard()["annotations"]["list"] if a.get("name") == "Deployments"
    ]
    step = int(annotation["step"].removesuffix("s"))
    for namespace, events in backfilled.events.items():
        result = backfilled.prometheus.api(
            "/api/v1/query_range",
            query=_substitute(annotation["expr"], Selection(namespace=namespace), 0, step),
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
            assert len(points[version]) == 1, (namespace, version, points[version])
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
    proc = spawn(exporter_argv(*args), log_path)
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
    # Served only with CloudWatch shipping on: test_dashboard_health runs a sidecar that ships.
    assert {
        u for u in used if not u.startswith("log_exporter_cloudwatch_")
    } - served - CLOUDWATCH_ONLY_METRICS == set()


def test_pod_logs_backfilled_by_pattern_are_found_by_the_pod_variables(
    tmp_path: Path, promtool_binary: str, prometheus_binary: str
) -> None:
    """A node's pod logs (rotated, gzipped), replayed with --file capturing namespace and pod,
    land in the series the dashboard's namespace, job and pod variables find, each pod's
    detections counted exactly."""
    start = (int(time.time()) // 3600 - 27) * 3600
    pods = {
        "sustainbot-0": ("staging", 7, ["0.log.2.gz", "0.log.1", "0.log"]),
        "sustainbot-1": ("production", 11, ["0.log.20260101-010000.gz", "0.log"]),
    }
    events: dict[str, Generated] = {}
    for pod, (namespace, seed, names) in pods.items():
        directory = tmp_path / "pods" / f"{namespace}_{pod}_{seed:08x}-uid" / "sustainbot"
        events[pod], _ = write_pod_logs(directory, float(start), names, hours=2, seed=seed)
    pattern = str(tmp_path / "pods" / "{namespace}_{pod}_{_}" / "sustainbot" / "*.log")
    openmetrics = tmp_path / "pods.om"
    replay_args = ["--quiet", "--format", "openmetrics", "--step", str(STEP), "--jobs", "2"]
    replay_args += ["--file", pattern, "--label", f"job={JOB}", "-o", str(openmetrics)]
    replay = run(exporter_argv("replay", *replay_args))
    assert replay.returncode == 0, replay.stderr
    data = tmp_path / "data"
    create = ["tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)]
    blocks = run([promtool_binary, *create])
    assert blocks.returncode == 0, blocks.stdout + blocks.stderr
    prom = Prometheus(prometheus_binary, tmp_path, data=data)
    try:
        backfilled = Backfilled(prom, events, tmp_path)
        variables = {
            v["name"]: v["query"]["query"]
            for v in _dashboard()["templating"]["list"]
            if v["type"] == "query"
        }
        everywhere = Selection()
        assert _variable_values(backfilled, variables["namespace"], everywhere) == {
            "staging",
            "production",
        }
        assert _variable_values(backfilled, variables["job"], everywhere) == {JOB}
        assert _variable_values(backfilled, variables["pod"], everywhere) == set(pods)
        staging = Selection(namespace="staging", job=JOB)
        assert _variable_values(backfilled, variables["pod"], staging) == {"sustainbot-0"}
        for pod, (namespace, _, _) in pods.items():
            chosen = Selection(namespace=namespace, job=JOB, pod=pod)
            assert _detections(backfilled, chosen) == len(events[pod].detections), pod
    finally:
        prom.stop()
