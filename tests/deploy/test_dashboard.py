"""The generated Grafana dashboard and its provisioning files, checked without a Grafana."""

from __future__ import annotations

import importlib.util
import json
import re
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
    load_yaml,
)

IMPORT_FILE = REPO / "dashboards" / "governance-observability.json"
PROVISIONED_FILE = DEPLOY / "grafana" / "dashboards" / "governance-observability.json"
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


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_dashboard", REPO / "scripts" / "gen_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(IMPORT_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def provisioned() -> dict[str, Any]:
    return json.loads(PROVISIONED_FILE.read_text(encoding="utf-8"))


def _by_id(dashboard: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["id"]: p for p in dashboard["panels"]}


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
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return exprs


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(?:sustainbot|log_exporter)_[a-z_]+\b", expr))


def test_committed_dashboard_differs_from_generator(generator: ModuleType) -> None:
    """The committed JSON files are exactly what scripts/gen_dashboard.py produces."""
    outputs = generator.outputs()
    assert set(outputs) == {IMPORT_FILE, PROVISIONED_FILE}
    for path, text in outputs.items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run the generator"


def test_generator_check_mode_misses_stale_file(
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


def test_design_panel_missing_or_wrong_type(dashboard: dict[str, Any]) -> None:
    """All ten designed panels are present with the visualisation the design asks for."""
    assert {pid: p["type"] for pid, p in _by_id(dashboard).items()} == DESIGN_PANELS
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["description"] and panel["targets"]


def test_panels_overlap_or_leave_grid(dashboard: dict[str, Any]) -> None:
    """No two panels overlap and none runs past Grafana's 24-column grid."""
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not (cells & mine), f"panel {panel['id']} overlaps another"
        cells |= mine


def test_import_does_not_ask_for_datasource(dashboard: dict[str, Any]) -> None:
    """Importing the dashboard asks for a Prometheus datasource and every query uses it."""
    (entry,) = dashboard["__inputs"]
    assert entry == entry | {
        "name": "DS_PROMETHEUS",
        "type": "datasource",
        "pluginId": "prometheus",
    }
    refs = list(_datasource_refs(dashboard))
    assert len(refs) >= 12
    assert all(ds["uid"] == "${DS_PROMETHEUS}" for ds in refs)
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    panel_types = {("panel", t) for t in DESIGN_PANELS.values()}
    assert panel_types | {("datasource", "prometheus"), ("grafana", "grafana")} <= required


def test_provisioned_copy_points_at_unknown_datasource(
    dashboard: dict[str, Any], provisioned: dict[str, Any]
) -> None:
    """The provisioned copy uses the provisioned datasource uid and otherwise equals the import."""
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert all(ds["uid"] == datasource["uid"] for ds in _datasource_refs(provisioned))
    assert "__inputs" not in provisioned
    assert "${" not in json.dumps(_strip_datasources(provisioned))
    imported = {k: v for k, v in dashboard.items() if not k.startswith("__")}
    assert _strip_datasources(imported) == _strip_datasources(provisioned)


def _strip_datasources(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_datasources(v) for k, v in node.items() if k != "datasource"}
    if isinstance(node, list):
        return [_strip_datasources(v) for v in node]
    return node


def test_dashboard_provider_loads_nothing() -> None:
    """Grafana's dashboard provider reads the directory where the compose file mounts the JSON."""
    (provider,) = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_template_variables_not_multi_select(dashboard: dict[str, Any]) -> None:
    """$drag_mode and $workflow offer every label value, several at once, and All as a regex."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"drag_mode", "workflow"}
    assert (
        variables["drag_mode"]["definition"]
        == "label_values(sustainbot_aim_requests_total, drag_mode)"
    )
    assert (
        variables["workflow"]["definition"]
        == "label_values(sustainbot_aim_requests_total, workflow_name)"
    )
    for var in variables.values():
        assert var["type"] == "query"
        assert var["multi"] is True and var["includeAll"] is True and var["allValue"] == ".*"
        assert var["query"]["query"] == var["definition"]


def test_filter_variable_ignored_by_panels(dashboard: dict[str, Any]) -> None:
    """Panels whose metric carries drag_mode or workflow_name filter on the chosen values."""
    for expr in all_queries(dashboard):
        if "sustainbot_aim_requests_total" in expr:
            assert 'drag_mode=~"$drag_mode"' in expr and 'workflow_name=~"$workflow"' in expr
        for metric in ("aim_validation_failures", "audit_log_entries", "prescriptive_language"):
            if metric in expr:
                assert 'drag_mode=~"$drag_mode"' in expr
        if "sustainbot_workflow_executions_total" in expr:
            assert 'workflow_name=~"$workflow"' in expr


def test_threshold_missing_from_panel(dashboard: dict[str, Any]) -> None:
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
    assert annotation["enable"] is True


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
