#!/usr/bin/env python3
"""Generate the Grafana dashboard "SustainBot governance observability" with grafana-foundation-sdk.

One file, dashboards/governance-observability.json, serves every way of loading it: import by
hand, compose's file provisioning, and the Kubernetes ConfigMap for Grafana's dashboard sidecar
(dashboards/kustomization.yaml). The Prometheus datasource is the `$datasource` template variable,
so nothing has to be substituted at import or provisioning time.

Usage: python scripts/gen_dashboard.py           rewrite the file
       python scripts/gen_dashboard.py --check   exit 1 if the committed file differs from the code
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import gauge, piechart, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import piechart as pm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_FILE = REPO / "dashboards" / "governance-observability.json"

DASHBOARD_UID = "sustainbot-governance"
TITLE = "SustainBot governance observability"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Grafana formats a multi-value variable as a regex alternation and "All" as allValue (.*), so
# every filter is a regex match. `.*` also matches a series without the label (a compose stack
# without pods, say).
SCOPE = 'namespace=~"$namespace", job=~"$job", pod=~"$pod"'
DRAG = 'drag_mode=~"$drag_mode"'
WORKFLOW = 'workflow_name=~"$workflow"'
# The exporter's own metrics, present on every sidecar whatever the app did.
SIDECAR_METRIC = "log_exporter_lines_total"

Json = dict[str, Any]


def _q(
    ref: str,
    expr: str,
    legend: str,
    *,
    instant: bool = False,
    exemplar: bool = False,
    table_format: bool = False,
) -> prometheus.Dataquery:
    query = (
        prometheus.Dataquery()
        .datasource(DS)
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend)
        .editor_mode(QueryEditorMode.CODE)
    )
    query = query.instant() if instant else query.range()
    if exemplar:
        # Grafana then asks Prometheus for the exemplars (trace ids) of the series it draws.
        query = query.exemplar(True)
    if table_format:
        query = query.format(PromQueryFormat.TABLE)
    return query


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def _grid(x: int, y: int, w: int, h: int) -> dm.GridPos:
    return dm.GridPos(h=h, w=w, x=x, y=y)


def _legend(*, table_mode: bool = False) -> cb.VizLegendOptions:
    legend = cb.VizLegendOptions().show_legend(True).calcs([])
    if table_mode:
        return legend.display_mode(cm.LegendDisplayMode.TABLE).placement(cm.LegendPlacement.RIGHT)
    return legend.display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM)


def _color(color: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"fixedColor": color, "mode": "fixed"})


OUTCOME_COLORS = {"success": "green", "failure": "red", "rejected": "orange"}


def _by_outcome(panel: Any, colors: dict[str, str]) -> Any:
    for name, color in colors.items():
        panel = panel.override_by_name(name, [_color(color)])
    return panel


def _timeseries(
    pid: int,
    title: str,
    description: str,
    grid: dm.GridPos,
    queries: list[prometheus.Dataquery],
    unit: str,
    *,
    threshold: float | None = None,
) -> timeseries.Panel:
    steps: list[tuple[float | None, str]] = [(None, "green")]
    if threshold is not None:
        steps.append((threshold, "red"))
    return (
        timeseries.Panel()
        .id(pid)
        .title(title)
        .description(description)
        .datasource(DS)
        .grid_pos(grid)
        .targets(list(queries))
        .unit(unit)
        .min(0)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(_thresholds(*steps))
        .thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(
                cm.GraphThresholdsStyleMode.OFF
                if threshold is None
                else cm.GraphThresholdsStyleMode.LINE
            )
        )
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(_legend())
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
    )


def _reduce_last() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def governance_panels() -> list[Any]:
    """The ten panels of the design, numbered as in the design (panel id = design number)."""
    aim = f"{SCOPE}, {DRAG}, {WORKFLOW}"
    return [
        _timeseries(
            1,
            "AIM governance requests by DRAG mode",
            "Governance requests that reached AIM validation, per second.",
            _grid(0, 0, 12, 8),
            [
                _q(
                    "A",
                    "sum by (drag_mode) "
                    f"(rate(sustainbot_aim_requests_total{{{aim}}}[$__rate_interval]))",
                    "{{drag_mode}}",
                )
            ],
            "reqps",
        ),
        _timeseries(
            2,
            "AIM validation failures by reason",
            "Validation failures per second. The red line is the alert threshold (0.1/s "
            "summed over all reasons, as a 5-minute rate, for 5 minutes). Exemplars link to "
            "a failed request's events.",
            _grid(12, 0, 12, 8),
            [
                _q(
                    "A",
                    "sum by (failure_reason) (rate(sustainbot_aim_validation_failures_total"
                    f"{{{SCOPE}, {DRAG}}}[$__rate_interval]))",
                    "{{failure_reason}}",
                    exemplar=True,
                ),
                _q(
                    "B",
                    "sum(rate(sustainbot_aim_validation_failures_total"
                    f"{{{SCOPE}, {DRAG}}}[$__rate_interval]))",
                    "all reasons",
                ),
            ],
            "reqps",
            threshold=0.1,
        ),
        _timeseries(
            3,
            "Governed workflow duration p50 / p95 / p99",
            "Quantiles estimated from the duration histogram (its native buckets where "
            "Prometheus ingests them, else the classic ones). The red line is the alert "
            "threshold (p95 above 30 s for 10 minutes). Exemplars are single slow or fast "
            "requests: follow one to its events.",
            _grid(0, 8, 12, 8),
            [
                _q(
                    ref,
                    # The native histogram where Prometheus ingested one (it asked for
                    # protobuf), the classic buckets where it did not: either way one line.
                    f"histogram_quantile({q}, sum(rate("
                    f"sustainbot_governed_workflow_duration_seconds{{{aim}}}"
                    "[$__rate_interval])))"
                    f" or histogram_quantile({q}, sum by (le) (rate("
                    f"sustainbot_governed_workflow_duration_seconds_bucket{{{aim}}}"
                    "[$__rate_interval])))",
                    label,
                    exemplar=True,
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
        _by_outcome(
            piechart.Panel()
            .id(4)
            .title("Workflow outcomes")
            .description("Workflow executions in the selected time range by outcome.")
            .datasource(DS)
            .grid_pos(_grid(12, 8, 6, 8))
            .targets(
                [
                    _q(
                        "A",
                        "sum by (outcome) (increase(sustainbot_workflow_executions_total"
                        f"{{{SCOPE}, {WORKFLOW}}}[$__range]))",
                        "{{outcome}}",
                        instant=True,
                    )
                ]
            )
            .unit("short")
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
            .pie_type(pm.PieChartType.PIE)
            .display_labels([pm.PieChartLabels.PERCENT])
            .legend(
                piechart.PieChartLegendOptions()
                .display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.RIGHT)
                .show_legend(True)
                .values([pm.PieChartLegendValues.VALUE, pm.PieChartLegendValues.PERCENT])
            )
            .reduce_options(_reduce_last())
            .tooltip(
                cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE).sort(cm.SortOrder.NONE)
            ),
            OUTCOME_COLORS,
        ),
        _by_outcome(
            _timeseries(
                5,
                "Audit log entries by outcome",
                "Audit records written per second, one per execute attempt.",
                _grid(0, 16, 12, 8),
                [
                    _q(
                        "A",
                        "sum by (outcome) (rate(sustainbot_audit_log_entries_total"
                        f"{{{SCOPE}, {DRAG}}}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                "reqps",
            ),
            OUTCOME_COLORS,
        ),
        _by_outcome(
            stat.Panel()
            .id(6)
            .title("JWT validations")
            .description("JWT validations in the selected time range, success against failure.")
            .datasource(DS)
            .grid_pos(_grid(12, 16, 6, 8))
            .targets(
                [
                    _q(
                        "A",
                        "sum by (outcome) "
                        f"(increase(sustainbot_jwt_validations_total{{{SCOPE}}}[$__range]))",
                        "{{outcome}}",
                        instant=True,
                    )
                ]
            )
            .unit("short")
            .decimals(0)
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("text"))
            .color_mode(cm.BigValueColorMode.VALUE)
            .graph_mode(cm.BigValueGraphMode.NONE)
            .justify_mode(cm.BigValueJustifyMode.AUTO)
            .orientation(cm.VizOrientation.HORIZONTAL)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .reduce_options(_reduce_last()),
            {"success": "green", "failure": "red"},
        ),
        gauge.Panel()
        .id(7)
        .title("Active HTTP requests")
        .description(
            "HTTP requests in flight across the selected pods (yellow from 50, red from 80)."
        )
        .datasource(DS)
        .grid_pos(_grid(18, 8, 6, 8))
        .targets([_q("A", f"sum(sustainbot_active_requests{{{SCOPE}}})", "in flight")])
        .unit("short")
        .min(0)
        .max(100)
        .thresholds(_thresholds((None, "green"), (50, "yellow"), (80, "red")))
        .orientation(cm.VizOrientation.AUTO)
        .reduce_options(_reduce_last())
        .show_threshold_labels(False)
        .show_threshold_markers(True),
        table.Panel()
        .id(8)
        .title("DRAG mode distribution")
        .description(
            "AIM requests in the selected time range by DRAG mode, actor role and workflow."
        )
        .datasource(DS)
        .grid_pos(_grid(0, 24, 12, 9))
        .targets(
            [
                _q(
                    "A",
                    "sum by (drag_mode, actor_role, workflow_name) "
                    f"(increase(sustainbot_aim_requests_total{{{aim}}}[$__range]))",
                    "__auto",
                    instant=True,
                    table_format=True,
                )
            ]
        )
        .unit("short")
        .decimals(0)
        .cell_height(cm.TableCellHeight.SM)
        .show_header(True)
        .sort_by([cb.TableSortByFieldState().display_name("Requests").desc(True)])
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
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
            )
        ),
        _timeseries(
            9,
            "HTTP requests by method and endpoint",
            "Requests per second; the endpoint is the route template, never the raw path.",
            _grid(12, 24, 12, 9),
            [
                _q(
                    "A",
                    "sum by (method, endpoint) "
                    f"(rate(sustainbot_http_requests_total{{{SCOPE}}}[$__rate_interval]))",
                    "{{method}} {{endpoint}}",
                )
            ],
            "reqps",
        ),
        stat.Panel()
        .id(10)
        .title("Prescriptive language detections")
        .description(
            "Prescriptive phrases detected in the selected time range; orange on any. Counted "
            "as the difference of the counter over the range (not increase()), so the very "
            "first detection of a kind is not missed. The range query below it carries the "
            "exemplars: follow one to the request's audit entry."
        )
        .datasource(DS)
        .grid_pos(_grid(18, 16, 6, 8))
        .targets(
            [
                _q(
                    "A",
                    "clamp_min("
                    f"(sum(sustainbot_prescriptive_language_detections_total{{{SCOPE}, {DRAG}}}) "
                    "or vector(0)) - "
                    f"(sum(sustainbot_prescriptive_language_detections_total{{{SCOPE}, {DRAG}}} "
                    "offset $__range) or vector(0)), 0)",
                    "detections",
                    instant=True,
                ),
                _q(
                    "B",
                    "sum(rate(sustainbot_prescriptive_language_detections_total"
                    f"{{{SCOPE}, {DRAG}}}[$__rate_interval]))",
                    "detections/s",
                    exemplar=True,
                ).hide(True),
            ]
        )
        .unit("short")
        .decimals(0)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .thresholds(_thresholds((None, "green"), (1, "orange")))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .text_mode(cm.BigValueTextMode.VALUE)
        .reduce_options(_reduce_last()),
    ]


HEALTH_Y = 33


def health_panels() -> list[Any]:
    """The row on the sidecars' own health, one line per pod."""
    per_pod = "{{namespace}}/{{pod}}"

    def panel(
        pid: int, title: str, description: str, x: int, y: int, expr: str, legend: str, unit: str
    ) -> timeseries.Panel:
        return _timeseries(
            pid,
            title,
            description,
            _grid(x, HEALTH_Y + 1 + y, 8, 7),
            [_q("A", expr, legend)],
            unit,
        )

    return [
        panel(
            11,
            "Unread log (lag)",
            "Bytes written to the log and not read yet. A healthy sidecar returns to 0 "
            "between writes (alert SustainBotExporterLagging).",
            0,
            0,
            f"max by (namespace, pod) (log_exporter_lag_bytes{{{SCOPE}}})",
            per_pod,
            "bytes",
        ),
        panel(
            12,
            "Malformed and oversized lines",
            "Lines skipped per second because they are not JSON or exceed the line limit; "
            "each is counted and skipped.",
            8,
            0,
            "sum by (namespace, pod, result) (rate(log_exporter_lines_total"
            f'{{{SCOPE}, result=~"malformed|oversized"}}[$__rate_interval]))',
            "{{namespace}}/{{pod}} {{result}}",
            "short",
        ),
        panel(
            13,
            "Log rotations",
            "Rotations of the log noticed by the sidecar in each interval.",
            16,
            0,
            "sum by (namespace, pod) "
            f"(increase(log_exporter_file_rotations_total{{{SCOPE}}}[$__rate_interval]))",
            per_pod,
            "short",
        ),
        panel(
            14,
            "State saves",
            "State file saves per second by result; errors without successes mean a restart "
            "would resume from an old snapshot (alert SustainBotExporterStateSavesFailing).",
            0,
            7,
            "sum by (namespace, pod, result) "
            f"(rate(log_exporter_state_saves_total{{{SCOPE}}}[$__rate_interval]))",
            "{{namespace}}/{{pod}} {{result}}",
            "ops",
        ),
        panel(
            15,
            "CloudWatch backlog",
            "Bytes of the log not yet acknowledged by CloudWatch (sidecars shipping to "
            "CloudWatch only).",
            8,
            7,
            f"max by (namespace, pod) (log_exporter_cloudwatch_backlog_bytes{{{SCOPE}}})",
            per_pod,
            "bytes",
        ),
        panel(
            16,
            "CloudWatch rejections",
            "Log events CloudWatch refused per second, by reason (too old, too new, expired); "
            "never retried. No data means none were refused.",
            16,
            7,
            "sum by (namespace, pod, reason) (rate("
            f"log_exporter_cloudwatch_rejected_events_total{{{SCOPE}}}[$__rate_interval]))",
            "{{namespace}}/{{pod}} {{reason}}",
            "short",
        ),
        panel(
            17,
            "Sidecar memory (RSS)",
            "Resident memory of each sidecar process; its target is 80 MB, its Kubernetes "
            "limit 128 MiB.",
            0,
            14,
            f"max by (namespace, pod) (process_resident_memory_bytes{{{SCOPE}}})",
            per_pod,
            "bytes",
        ),
    ]


def _multi_query_variable(name: str, label: str, metric: str, label_name: str) -> db.QueryVariable:
    query = f"label_values({metric}, {label_name})"
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(
            {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"}
        )
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def variables() -> list[Any]:
    """Datasource first, then the scope (namespace, job, pod), then the governance filters."""
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        _multi_query_variable("namespace", "Namespace", SIDECAR_METRIC, "namespace"),
        _multi_query_variable("job", "Job", f'{SIDECAR_METRIC}{{namespace=~"$namespace"}}', "job"),
        _multi_query_variable(
            "pod", "Pod", f'{SIDECAR_METRIC}{{namespace=~"$namespace", job=~"$job"}}', "pod"
        ),
        _multi_query_variable(
            "drag_mode", "DRAG mode", f"sustainbot_aim_requests_total{{{SCOPE}}}", "drag_mode"
        ),
        _multi_query_variable(
            "workflow", "Workflow", f"sustainbot_aim_requests_total{{{SCOPE}}}", "workflow_name"
        ),
    ]


# sustainbot_app_info is always 1, so changes() would never see a deployment; a start with
# new labels is a series that had no sample in the hour before (one point per 60 s step).
DEPLOYMENTS_EXPR = (
    f"sustainbot_app_info{{{SCOPE}}} unless max_over_time(sustainbot_app_info{{{SCOPE}}}[1h] "
    "offset 1m)"
)
# The Prometheus-specific annotation options, which the SDK's AnnotationQuery does not model.
DEPLOYMENTS_OPTIONS: Json = {
    "step": "60s",
    "tagKeys": "version,phase",
    "textFormat": "phase {{phase}}, compliance spec {{compliance_spec}}",
    "titleFormat": "SustainBot {{version}} started",
    "useValueForTime": False,
}


def build() -> Json:
    """The dashboard model as Grafana's JSON."""
    builder = (
        db.Dashboard(TITLE)
        .uid(DASHBOARD_UID)
        .description(
            "Governance metrics derived by the log-exporter sidecar from SustainBot's JSONL "
            "event log, and the sidecars' own health. Generated by scripts/gen_dashboard.py; "
            "edit the code, not this file."
        )
        .tags(["sustainbot", "governance", "log-exporter"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .timezone("utc")
        .refresh("30s")
        .version(1)
        .variables(variables())
        .annotation(
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .annotation(
            db.AnnotationQuery()
            .name("Deployments")
            .datasource(DS)
            .enable(True)
            .icon_color("purple")
            .expr(DEPLOYMENTS_EXPR)
        )
    )
    for panel in governance_panels():
        builder = builder.with_panel(panel)
    builder = builder.with_row(
        db.Row("Exporter health").id(100).grid_pos(_grid(0, HEALTH_Y, 24, 1))
    )
    for panel in health_panels():
        builder = builder.with_panel(panel)
    model: Json = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for annotation in model["annotations"]["list"]:
        if annotation["name"] == "Deployments":
            annotation.update(DEPLOYMENTS_OPTIONS)
    return model


def render(dashboard: Json) -> str:
    """Serialise the way the committed file is written (stable, diff-friendly)."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    """Each generated file and the text it must contain."""
    return {DASHBOARD_FILE: render(build())}


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
