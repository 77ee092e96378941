#!/usr/bin/env python3
"""Generate the Grafana dashboard "SustainBot governance observability" from code.

Two variants come from the same definition:
- dashboards/governance-observability.json: for import by hand (Dashboards > New > Import); the
  Prometheus datasource is an import input (`DS_PROMETHEUS`) chosen in the import dialog.
- deploy/grafana/dashboards/governance-observability.json: for Grafana's file provisioning, which
  does not resolve import inputs, so it names the provisioned datasource by its fixed uid.

Usage: python scripts/gen_dashboard.py           rewrite both files
       python scripts/gen_dashboard.py --check   exit 1 if a committed file differs from the code
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IMPORT_FILE = REPO / "dashboards" / "governance-observability.json"
PROVISIONED_FILE = REPO / "deploy" / "grafana" / "dashboards" / "governance-observability.json"

DASHBOARD_UID = "sustainbot-governance"
TITLE = "SustainBot governance observability"
# Must equal the uid in deploy/grafana/provisioning/datasources/prometheus.yml.
PROVISIONED_DATASOURCE_UID = "prometheus"
IMPORT_INPUT = "DS_PROMETHEUS"

# Grafana formats a multi-value variable as a regex alternation and "All" as allValue, so every
# filter is a regex match.
DRAG = 'drag_mode=~"$drag_mode"'
WORKFLOW = 'workflow_name=~"$workflow"'

Json = dict[str, Any]


def _datasource(uid: str) -> Json:
    return {"type": "prometheus", "uid": uid}


def _target(
    ds: Json, ref: str, expr: str, legend: str = "__auto", *, instant: bool = False
) -> Json:
    target: Json = {
        "datasource": ds,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }
    if instant:
        target["instant"] = True
    return target


def _thresholds(*steps: tuple[float | None, str]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def _color_overrides(colors: dict[str, str]) -> list[Json]:
    return [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
        }
        for name, color in colors.items()
    ]


OUTCOME_COLORS = {"success": "green", "failure": "red", "rejected": "orange"}


def _timeseries(
    ds: Json,
    pid: int,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    targets: list[Json],
    unit: str,
    *,
    threshold: float | None = None,
    overrides: list[Json] | None = None,
) -> Json:
    custom: Json = {
        "drawStyle": "line",
        "fillOpacity": 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "thresholdsStyle": {"mode": "off" if threshold is None else "line"},
    }
    steps: list[tuple[float | None, str]] = [(None, "green")]
    if threshold is not None:
        steps.append((threshold, "red"))
    return {
        "datasource": ds,
        "description": description,
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "palette-classic"},
                "custom": custom,
                "min": 0,
                "thresholds": _thresholds(*steps),
                "unit": unit,
            },
            "overrides": overrides or [],
        },
        "gridPos": _grid(grid),
        "id": pid,
        "options": {
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
        "title": title,
        "type": "timeseries",
    }


def _grid(grid: tuple[int, int, int, int]) -> Json:
    x, y, w, h = grid
    return {"h": h, "w": w, "x": x, "y": y}


def _reduce_last() -> Json:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def panels(ds: Json) -> list[Json]:
    """The ten panels, numbered as in the design (panel id = design number)."""
    return [
        _timeseries(
            ds,
            1,
            "AIM governance requests by DRAG mode",
            "Governance requests that reached AIM validation, per second over 5 minutes.",
            (0, 0, 12, 8),
            [
                _target(
                    ds,
                    "A",
                    f"sum by (drag_mode) (rate(sustainbot_aim_requests_total{{{DRAG}, {WORKFLOW}}}"
                    "[5m]))",
                    "{{drag_mode}}",
                )
            ],
            "reqps",
        ),
        _timeseries(
            ds,
            2,
            "AIM validation failures by reason",
            "Validation failures per second over 5 minutes. The red line is the alert "
            "threshold (0.1/s summed over all reasons, for 5 minutes).",
            (12, 0, 12, 8),
            [
                _target(
                    ds,
                    "A",
                    "sum by (failure_reason) "
                    f"(rate(sustainbot_aim_validation_failures_total{{{DRAG}}}[5m]))",
                    "{{failure_reason}}",
                ),
                _target(
                    ds,
                    "B",
                    f"sum(rate(sustainbot_aim_validation_failures_total{{{DRAG}}}[5m]))",
                    "all reasons",
                ),
            ],
            "reqps",
            threshold=0.1,
        ),
        _timeseries(
            ds,
            3,
            "Governed workflow duration p50 / p95 / p99",
            "Quantiles estimated from the duration histogram over 5 minutes. The red line is "
            "the alert threshold (p95 above 30 s for 10 minutes).",
            (0, 8, 12, 8),
            [
                _target(
                    ds,
                    ref,
                    f"histogram_quantile({q}, sum by (le) (rate("
                    f"sustainbot_governed_workflow_duration_seconds_bucket{{{DRAG}, {WORKFLOW}}}"
                    "[5m])))",
                    label,
                )
                for ref, q, label in (
                    ("A", "0.5", "p50"),
                    ("B", "0.95", "p95"),
                    ("C", "0.99", "p99"),
                )
            ],
            "s",
            threshold=30,
        ),
        {
            "datasource": ds,
            "description": "Workflow executions in the selected time range by outcome.",
            "fieldConfig": {
                "defaults": {"color": {"mode": "palette-classic"}, "unit": "short"},
                "overrides": _color_overrides(OUTCOME_COLORS),
            },
            "gridPos": _grid((12, 8, 6, 8)),
            "id": 4,
            "options": {
                "displayLabels": ["percent"],
                "legend": {
                    "displayMode": "table",
                    "placement": "right",
                    "showLegend": True,
                    "values": ["value", "percent"],
                },
                "pieType": "pie",
                "reduceOptions": _reduce_last(),
                "tooltip": {"mode": "single", "sort": "none"},
            },
            "targets": [
                _target(
                    ds,
                    "A",
                    "sum by (outcome) "
                    f"(increase(sustainbot_workflow_executions_total{{{WORKFLOW}}}[$__range]))",
                    "{{outcome}}",
                    instant=True,
                )
            ],
            "title": "Workflow outcomes",
            "type": "piechart",
        },
        _timeseries(
            ds,
            5,
            "Audit log entries by outcome",
            "Audit records written per second, one per execute attempt.",
            (0, 16, 12, 8),
            [
                _target(
                    ds,
                    "A",
                    "sum by (outcome) "
                    f"(rate(sustainbot_audit_log_entries_total{{{DRAG}}}[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            "reqps",
            overrides=_color_overrides(OUTCOME_COLORS),
        ),
        {
            "datasource": ds,
            "description": "JWT validations in the selected time range, success against failure.",
            "fieldConfig": {
                "defaults": {
                    "color": {"mode": "fixed", "fixedColor": "text"},
                    "decimals": 0,
                    "unit": "short",
                },
                "overrides": _color_overrides({"success": "green", "failure": "red"}),
            },
            "gridPos": _grid((12, 16, 6, 8)),
            "id": 6,
            "options": {
                "colorMode": "value",
                "graphMode": "none",
                "justifyMode": "auto",
                "orientation": "horizontal",
                "reduceOptions": _reduce_last(),
                "textMode": "value_and_name",
            },
            "targets": [
                _target(
                    ds,
                    "A",
                    "sum by (outcome) (increase(sustainbot_jwt_validations_total[$__range]))",
                    "{{outcome}}",
                    instant=True,
                )
            ],
            "title": "JWT validations",
            "type": "stat",
        },
        {
            "datasource": ds,
            "description": "HTTP requests in flight across all instances (yellow from 50, red "
            "from 80).",
            "fieldConfig": {
                "defaults": {
                    "max": 100,
                    "min": 0,
                    "thresholds": _thresholds((None, "green"), (50, "yellow"), (80, "red")),
                    "unit": "short",
                },
                "overrides": [],
            },
            "gridPos": _grid((18, 8, 6, 8)),
            "id": 7,
            "options": {
                "orientation": "auto",
                "reduceOptions": _reduce_last(),
                "showThresholdLabels": False,
                "showThresholdMarkers": True,
            },
            "targets": [_target(ds, "A", "sum(sustainbot_active_requests)", "in flight")],
            "title": "Active HTTP requests",
            "type": "gauge",
        },
        {
            "datasource": ds,
            "description": "AIM requests in the selected time range by DRAG mode, actor role "
            "and workflow.",
            "fieldConfig": {"defaults": {"decimals": 0, "unit": "short"}, "overrides": []},
            "gridPos": _grid((0, 24, 12, 9)),
            "id": 8,
            "options": {
                "cellHeight": "sm",
                "showHeader": True,
                "sortBy": [{"desc": True, "displayName": "Requests"}],
            },
            "targets": [
                {
                    **_target(
                        ds,
                        "A",
                        "sum by (drag_mode, actor_role, workflow_name) (increase("
                        f"sustainbot_aim_requests_total{{{DRAG}, {WORKFLOW}}}[$__range]))",
                        instant=True,
                    ),
                    "format": "table",
                }
            ],
            "title": "DRAG mode distribution",
            "transformations": [
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "indexByName": {
                            "drag_mode": 0,
                            "actor_role": 1,
                            "workflow_name": 2,
                            "Value": 3,
                        },
                        "renameByName": {
                            "drag_mode": "DRAG mode",
                            "actor_role": "Actor role",
                            "workflow_name": "Workflow",
                            "Value": "Requests",
                        },
                    },
                }
            ],
            "type": "table",
        },
        _timeseries(
            ds,
            9,
            "HTTP requests by method and endpoint",
            "Requests per second; the endpoint is the route template, never the raw path.",
            (12, 24, 12, 9),
            [
                _target(
                    ds,
                    "A",
                    "sum by (method, endpoint) "
                    "(rate(sustainbot_http_requests_total[$__rate_interval]))",
                    "{{method}} {{endpoint}}",
                )
            ],
            "reqps",
        ),
        {
            "datasource": ds,
            "description": "Prescriptive phrases detected in the selected time range; orange "
            "on any. Counted as the difference of the counter over the range (not increase()), "
            "so the very first detection of a kind is not missed.",
            "fieldConfig": {
                "defaults": {
                    "color": {"mode": "thresholds"},
                    "decimals": 0,
                    "thresholds": _thresholds((None, "green"), (1, "orange")),
                    "unit": "short",
                },
                "overrides": [],
            },
            "gridPos": _grid((18, 16, 6, 8)),
            "id": 10,
            "options": {
                "colorMode": "background",
                "graphMode": "none",
                "justifyMode": "auto",
                "orientation": "auto",
                "reduceOptions": _reduce_last(),
                "textMode": "value",
            },
            "targets": [
                _target(
                    ds,
                    "A",
                    "clamp_min("
                    f"(sum(sustainbot_prescriptive_language_detections_total{{{DRAG}}}) "
                    "or vector(0)) - "
                    f"(sum(sustainbot_prescriptive_language_detections_total{{{DRAG}}} "
                    "offset $__range) or vector(0)), 0)",
                    "detections",
                    instant=True,
                )
            ],
            "title": "Prescriptive language detections",
            "type": "stat",
        },
    ]


def _variable(ds: Json, name: str, label: str, metric: str, label_name: str) -> Json:
    query = f"label_values({metric}, {label_name})"
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": ds,
        "definition": query,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def _annotations(ds: Json) -> Json:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    # sustainbot_app_info is always 1, so changes() would never see a deployment; a start with
    # new labels is a series that had no sample in the hour before (one point per 60 s step).
    deployments = {
        "datasource": ds,
        "enable": True,
        "expr": "sustainbot_app_info unless max_over_time(sustainbot_app_info[1h] offset 1m)",
        "iconColor": "purple",
        "name": "Deployments",
        "step": "60s",
        "tagKeys": "version,phase",
        "textFormat": "phase {{phase}}, compliance spec {{compliance_spec}}",
        "titleFormat": "SustainBot {{version}} started",
        "useValueForTime": False,
    }
    return {"list": [builtin, deployments]}


def build(datasource_uid: str, *, for_import: bool) -> Json:
    """The dashboard model; `for_import` adds the import input and requirements sections."""
    ds = _datasource(datasource_uid)
    dashboard: Json = {}
    if for_import:
        dashboard["__inputs"] = [
            {
                "name": IMPORT_INPUT,
                "label": "Prometheus",
                "description": "Prometheus that scrapes the log-exporter sidecar",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ]
        dashboard["__elements"] = {}
        dashboard["__requires"] = [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "gauge", "name": "Gauge", "version": ""},
            {"type": "panel", "id": "piechart", "name": "Pie chart", "version": ""},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            {"type": "panel", "id": "table", "name": "Table", "version": ""},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ]
    dashboard.update(
        {
            "annotations": _annotations(ds),
            "description": "Governance metrics derived by the log-exporter sidecar from "
            "SustainBot's JSONL event log. Generated by scripts/gen_dashboard.py; edit the "
            "code, not this file.",
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [],
            "panels": panels(ds),
            "refresh": "30s",
            "schemaVersion": 39,
            "tags": ["sustainbot", "governance", "log-exporter"],
            "templating": {
                "list": [
                    _variable(
                        ds, "drag_mode", "DRAG mode", "sustainbot_aim_requests_total", "drag_mode"
                    ),
                    _variable(
                        ds, "workflow", "Workflow", "sustainbot_aim_requests_total", "workflow_name"
                    ),
                ]
            },
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "utc",
            "title": TITLE,
            "uid": DASHBOARD_UID,
            "version": 1,
            "weekStart": "",
        }
    )
    return dashboard


def render(dashboard: Json) -> str:
    """Serialise the way the committed files are written (stable, diff-friendly)."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    """Each generated file and the text it must contain."""
    return {
        IMPORT_FILE: render(build("${" + IMPORT_INPUT + "}", for_import=True)),
        PROVISIONED_FILE: render(build(PROVISIONED_DATASOURCE_UID, for_import=False)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(REPO))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        names = ", ".join(str(p) for p in stale)
        print(f"out of date: {names}; run python scripts/gen_dashboard.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
