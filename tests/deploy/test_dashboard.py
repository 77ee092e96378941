"""The generated Grafana dashboard and its provisioning files, checked without a Grafana."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.deploy import (
    CONTRACT_METRICS,
    DEPLOY,
    HISTOGRAM_SUFFIXES,
    REPO,
    SELF_METRICS,
    load_script,
    load_yaml,
)

DASHBOARD_FILE = REPO / "dashboards" / "governance-observability.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "sustainbot.yml"

# The ten panels of the design, by id, with the visualisation each one must use.
DESIGN_PANELS = {
    1: "timeseries",
    2: "timeseries",
    3: "timeseries",
    4: "piechart",
    5: "timeseries",
    6: "stat",
    7: "gauge",
    8: "table",
    9: "timeseries",
    10: "stat",
}
# The exporter-health row and the self-metric each of its panels shows.
HEALTH_PANELS = {
    11: "log_exporter_lag_bytes",
    12: "log_exporter_lines_total",
    13: "log_exporter_file_rotations_total",
    14: "log_exporter_state_saves_total",
    15: "log_exporter_cloudwatch_backlog_bytes",
    16: "log_exporter_cloudwatch_rejected_events_total",
    17: "process_resident_memory_bytes",
}
HEALTH_ROW = 100
# Issue 14: the panels whose series have a request behind them show exemplars.
EXEMPLAR_PANELS = {2, 3, 10}
SCOPE = ('namespace=~"$namespace"', 'job=~"$job"', 'pod=~"$pod"')


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_script("gen_dashboard")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")))


def _by_id(dashboard: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["id"]: p for p in dashboard["panels"]}


def _query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus":
            yield ds
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


def all_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and annotations."""
    exprs = [t["expr"] for p in _query_panels(dashboard) for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return exprs


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(?:sustainbot|log_exporter|process)_[a-z_]+\b", expr))


def test_committed_dashboard_differs_from_generator(generator: ModuleType) -> None:
    """The committed JSON is exactly what scripts/gen_dashboard.py builds with the SDK."""
    outputs = generator.outputs()
    assert set(outputs) == {DASHBOARD_FILE}
    for path, text in outputs.items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run the generator"


def test_generator_check_mode_fails_on_a_stale_file(
    generator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gen_dashboard.py --check` fails on an edited copy and passes once regenerated."""
    stale = tmp_path / "dash.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(generator, "REPO", tmp_path)
    monkeypatch.setattr(generator, "outputs", lambda: {stale: '{"ok": 1}\n'})
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0


def test_dashboard_rejected_by_grafana_models() -> None:
    """The JSON reads back into grafana-foundation-sdk's Dashboard model with every panel."""
    from grafana_foundation_sdk.models.dashboard import Dashboard

    model = Dashboard.from_json(json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")))
    assert model.uid == "sustainbot-governance"
    assert model.panels is not None and len(model.panels) == 1 + len(DESIGN_PANELS) + len(
        HEALTH_PANELS
    )


def test_every_designed_panel_exists_with_its_visualisation(dashboard: dict[str, Any]) -> None:
    """All ten designed panels, the health row and its panels exist with their visualisations."""
    expected = DESIGN_PANELS | dict.fromkeys(HEALTH_PANELS, "timeseries") | {HEALTH_ROW: "row"}
    assert {pid: p["type"] for pid, p in _by_id(dashboard).items()} == expected
    for panel in _query_panels(dashboard):
        assert panel["title"] and panel["description"] and panel["targets"]
    assert _by_id(dashboard)[HEALTH_ROW]["title"] == "Exporter health"
    for pid, metric in HEALTH_PANELS.items():
        (target,) = _by_id(dashboard)[pid]["targets"]
        assert metric in target["expr"], pid


def test_panels_neither_overlap_nor_leave_the_grid(dashboard: dict[str, Any]) -> None:
    """No two panels overlap, none runs past the 24-column grid, the row heads its panels."""
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not (cells & mine), f"panel {panel['id']} overlaps another"
        cells |= mine
    panels = _by_id(dashboard)
    row_y = panels[HEALTH_ROW]["gridPos"]["y"]
    assert all(panels[p]["gridPos"]["y"] < row_y for p in DESIGN_PANELS)
    assert all(panels[p]["gridPos"]["y"] > row_y for p in HEALTH_PANELS)


def test_datasource_not_a_template_variable(dashboard: dict[str, Any]) -> None:
    """Every query uses the $datasource variable; no import input, no second copy to keep."""
    assert not [k for k in dashboard if k.startswith("__")]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["name"] == "datasource" and variable["query"] == "prometheus"
    refs = list(_datasource_refs(dashboard))
    assert len(refs) >= 30
    assert all(ds["uid"] == "${datasource}" for ds in refs)
    assert list(DASHBOARD_FILE.parent.glob("*.json")) == [DASHBOARD_FILE]
    assert not (DEPLOY / "grafana" / "dashboards").exists()


def test_provisioned_datasource_not_the_variables_default() -> None:
    """Provisioning's Prometheus is the default datasource, so $datasource starts on it."""
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"


def _aws_fragment_decode(text: str) -> str:
    """CloudWatch console deep links escape with * (and $ for the fragment's ? and =)."""
    text = text.replace("$3F", "?").replace("$3D", "=")
    return re.sub(r"\*([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def test_exemplar_trace_id_links_nowhere() -> None:
    """An exemplar's trace_id opens Logs Insights on the sidecar's log group, filtered by it."""
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    (destination,) = datasource["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"  # the label the sidecar's exemplars carry
    # Grafana expands $NAME in provisioning files; $$ is a literal $. No variable is left.
    template = destination["url"]
    assert not re.search(r"(?<!\$)\$(?!\$)", template.replace("$$", ""))
    url = template.replace("$$", "$").replace("${__value.raw}", "4bf92f3577b34da6a3ce929d0e0e4736")
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "https" and parts.hostname == "eu-west-1.console.aws.amazon.com"
    assert urllib.parse.parse_qs(parts.query)["region"] == ["eu-west-1"]
    fragment = _aws_fragment_decode(parts.fragment)
    assert fragment.startswith("logsV2:logs-insights?queryDetail=")
    assert "source~(~'/aiwf/sustainbot)" in fragment  # CLOUDWATCH_LOG_GROUP's default
    assert '| filter trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"' in fragment
    assert "| sort @timestamp asc" in fragment


def test_exemplars_off_on_request_panels(dashboard: dict[str, Any]) -> None:
    """The duration, failure and detection panels ask for exemplars; no other panel does."""
    with_exemplars = {
        p["id"] for p in _query_panels(dashboard) if any(t.get("exemplar") for t in p["targets"])
    }
    assert with_exemplars == EXEMPLAR_PANELS
    # Exemplars come only with range queries.
    for panel in _query_panels(dashboard):
        for target in panel["targets"]:
            if target.get("exemplar"):
                assert target["range"] is True and not target.get("instant"), panel["id"]


def test_dashboard_provider_loads_nothing() -> None:
    """Grafana's dashboard provider reads the directory where the compose file mounts the JSON."""
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_template_variables_not_multi_select(dashboard: dict[str, Any]) -> None:
    """namespace, job, pod, drag_mode and workflow offer their label values, several at once."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"] if v["type"] == "query"}
    assert list(variables) == ["namespace", "job", "pod", "drag_mode", "workflow"]
    assert variables["namespace"]["query"]["query"] == (
        "label_values(log_exporter_lines_total, namespace)"
    )
    assert variables["pod"]["query"]["query"] == (
        'label_values(log_exporter_lines_total{namespace=~"$namespace", job=~"$job"}, pod)'
    )
    assert variables["workflow"]["query"]["query"].endswith(", workflow_name)")
    for var in variables.values():
        assert var["multi"] is True and var["includeAll"] is True and var["allValue"] == ".*"
        assert var["datasource"]["uid"] == "${datasource}"


def test_every_query_keeps_to_the_chosen_namespace_job_and_pod(dashboard: dict[str, Any]) -> None:
    """Every panel and annotation query keeps to the chosen namespace, job and pod."""
    for expr in all_queries(dashboard):
        for selector in re.findall(r"\b[a-z_]+\{([^}]*)\}", expr):
            for matcher in SCOPE:
                assert matcher in selector, expr


def test_panels_filter_on_the_chosen_variables(dashboard: dict[str, Any]) -> None:
    """Panels whose metric carries drag_mode or workflow_name filter on the chosen values."""
    for expr in all_queries(dashboard):
        if "sustainbot_aim_requests_total" in expr:
            assert 'drag_mode=~"$drag_mode"' in expr and 'workflow_name=~"$workflow"' in expr
        for metric in ("aim_validation_failures", "audit_log_entries", "prescriptive_language"):
            if metric in expr:
                assert 'drag_mode=~"$drag_mode"' in expr
        if "sustainbot_workflow_executions_total" in expr:
            assert 'workflow_name=~"$workflow"' in expr


def test_rate_window_fixed_instead_of_rate_interval(dashboard: dict[str, Any]) -> None:
    """Rates use $__rate_interval; totals over the range use $__range; no fixed [5m] window."""
    for expr in all_queries(dashboard):
        windows = set(re.findall(r"\[([^\]]+)\]", expr))
        assert windows <= {"$__rate_interval", "$__range", "1h"}, expr
        if "rate(" in expr:
            assert "[$__rate_interval]" in expr, expr
    # The only fixed window is the deployment annotation's look-back.
    fixed = [e for e in all_queries(dashboard) if "[1h]" in e]
    assert len(fixed) == 1 and "sustainbot_app_info" in fixed[0]


def test_every_panel_states_its_unit_and_legend(dashboard: dict[str, Any]) -> None:
    """Every panel states its unit and names each series it draws."""
    for panel in _query_panels(dashboard):
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["id"]
        for target in panel["targets"]:
            assert target.get("legendFormat"), (panel["id"], target["refId"])
        if panel["type"] == "timeseries":
            assert panel["options"]["legend"]["showLegend"] is True, panel["id"]
    health = _by_id(dashboard)
    for pid in HEALTH_PANELS:
        assert "{{pod}}" in health[pid]["targets"][0]["legendFormat"], pid


def test_panel_thresholds_match_the_alert_rules(dashboard: dict[str, Any]) -> None:
    """Thresholds shown on panels match the alert rules and the design (0.1/s, 30 s, 50/80, any)."""
    panels = _by_id(dashboard)

    def steps(pid: int) -> list[tuple[float | None, str]]:
        th = panels[pid]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        return [(s["value"], s["color"]) for s in th]

    assert steps(2) == [(None, "green"), (0.1, "red")]
    assert steps(3) == [(None, "green"), (30, "red")]
    for pid in (2, 3):
        assert panels[pid]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    assert steps(7) == [(None, "green"), (50, "yellow"), (80, "red")]
    assert steps(10) == [(None, "green"), (1, "orange")]
    assert [t["legendFormat"] for t in panels[3]["targets"]] == ["p50", "p95", "p99"]


def test_query_uses_metric_the_exporter_does_not_serve(dashboard: dict[str, Any]) -> None:
    """Every metric a panel or annotation queries is one the exporter derives or reports."""
    known = CONTRACT_METRICS | SELF_METRICS
    for expr in all_queries(dashboard):
        for name in _metric_names(expr):
            base = name
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name.removesuffix(suffix) in known:
                    base = name.removesuffix(suffix)
            assert base in known, f"{name} in {expr!r}"


def test_deployments_not_annotated(dashboard: dict[str, Any]) -> None:
    """A deployment annotation is drawn from sustainbot_app_info with the version in its title."""
    (annotation,) = [a for a in dashboard["annotations"]["list"] if a.get("name") == "Deployments"]
    assert "sustainbot_app_info" in annotation["expr"]
    assert "{{version}}" in annotation["titleFormat"]
    assert annotation["enable"] is True and annotation["step"] == "60s"


def test_dashboard_threshold_disagrees_with_alert(dashboard: dict[str, Any]) -> None:
    """The threshold lines on panels 2 and 3 are the thresholds the alert rules fire at."""
    rules = load_yaml(DEPLOY / "prometheus" / "rules" / "sustainbot-alerts.yml")
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    panels = _by_id(dashboard)

    def line(pid: int) -> float:
        return float(panels[pid]["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"])

    def rule_threshold(alert: str) -> float:
        (value,) = re.findall(r">\s*([0-9.]+)\s*$", exprs[alert].strip())
        return float(value)

    assert line(2) == rule_threshold("SustainBotAIMValidationFailureRateHigh")
    assert line(3) == rule_threshold("SustainBotWorkflowLatencyP95High")
