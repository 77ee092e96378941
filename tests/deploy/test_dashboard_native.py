"""The duration panel and the p95 alert on both forms of the histogram: one live sidecar scraped
by two real Prometheus servers, one with native histograms on (it stores the native form only),
one without (the classic buckets)."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.contract import contract_line
from tests.support.deploy import DEPLOY, REPO, load_yaml
from tests.support.prometheus import Prometheus
from tests.support.serve import Exporter
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "dashboards" / "governance-observability.json"
DURATION = "sustainbot_governed_workflow_duration_seconds"
JOB = "sustainbot-exporter"
# Per workflow, the durations its events log: one workflow well above the alert's 30 s.
DURATIONS = {
    "carbon_audit": [0.2 * (i + 1) for i in range(40)],
    "generate_report": [40.0 + i for i in range(40)],
}
WINDOW = "60s"


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _line(workflow: str, duration: float, i: int) -> bytes:
    return contract_line(
        "workflow.completed",
        _stamp(time.time()),
        logger="sustainbot",
        trace_id=f"{i:032x}",
        workflow_name=workflow,
        outcome="success",
        drag_mode="analysis",
        duration_seconds=duration,
    )


def _values(prom: Prometheus, expr: str, want: list[float]) -> bool:
    return [float(x["value"][1]) for x in prom.query(expr)] == want


@dataclass
class Both:
    native: Prometheus
    classic: Prometheus


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str) -> Iterator[Both]:
    tmp = tmp_path_factory.mktemp("both")
    log = tmp / "sustainbot.jsonl"
    log.write_bytes(b"")
    with Exporter(tmp, ["--file", str(log)]) as exporter:
        exporter.wait_healthy()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1h"},
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{exporter.port}"],
                            "labels": {"namespace": "production", "pod": "sustainbot-0"},
                        }
                    ],
                }
            ],
        }
        servers = []
        try:
            for name, flags in (
                ("native", ("--enable-feature=native-histograms",)),
                ("classic", ()),
            ):
                (tmp / name).mkdir()
                servers.append(
                    Prometheus(prometheus_binary, tmp / name, config=config, flags=flags)
                )
            native, classic = servers
            # A first event per workflow, so the series exist before the rest: rate() then
            # sees the rest as an increase.
            with log.open("ab") as f:
                f.write(b"".join(_line(w, 1.0, 999) for w in DURATIONS))
            for prom, expr in (
                (native, f"histogram_count({DURATION})"),
                (classic, f"{DURATION}_count"),
            ):
                wait_for(functools.partial(_values, prom, expr, [1.0, 1.0]), "first events")
            with log.open("ab") as f:
                f.write(
                    b"".join(
                        _line(w, d, i) for w, ds in DURATIONS.items() for i, d in enumerate(ds)
                    )
                )
            total = sum(len(v) for v in DURATIONS.values()) + len(DURATIONS)
            for prom, expr in (
                (native, f"sum(histogram_count({DURATION}))"),
                (classic, f"sum({DURATION}_count)"),
            ):
                wait_for(
                    functools.partial(_values, prom, expr, [float(total)]),
                    "every observation in Prometheus",
                    explain=prom.log,
                )
            yield Both(native, classic)
        finally:
            for prom in servers:
                prom.stop()


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (panel,) = [p for p in dashboard["panels"] if p["id"] == 3]
    return [(t["legendFormat"], t["expr"]) for t in panel["targets"]]


def _substitute(expr: str, workflow: str) -> str:
    for name, value in (
        ("$__rate_interval", WINDOW),
        ("$namespace", "production"),
        ("$job", JOB),
        ("$pod", ".*"),
        ("$drag_mode", ".*"),
        ("$workflow", workflow),
    ):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def _value(prom: Prometheus, expr: str) -> float:
    (sample,) = prom.query(expr)
    return float(sample["value"][1])


def test_each_prometheus_holds_only_its_form(both: Both) -> None:
    """The native Prometheus has no _bucket series, the classic one no native series: the panel
    and the alert below each really run on one form."""
    assert both.native.query(f"{DURATION}_bucket") == []
    assert both.native.query(DURATION)
    assert both.classic.query(DURATION) == []
    assert both.classic.query(f"{DURATION}_bucket")


@pytest.mark.parametrize("form", ["native", "classic"])
@pytest.mark.parametrize("workflow", sorted(DURATIONS))
def test_duration_panel_draws_quantiles_from_either_form(
    both: Both, form: str, workflow: str
) -> None:
    """The p50/p95/p99 queries return one line on either Prometheus, within a bucket of the
    exact quantile: the native bucket's growth, or the classic bucket the quantile is in."""
    prom = both.native if form == "native" else both.classic
    values = sorted(DURATIONS[workflow])
    classic = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, math.inf]
    for label, expr in _panel_queries():
        q = {"p50": 0.5, "p95": 0.95, "p99": 0.99}[label]
        got = _value(prom, _substitute(expr, workflow))
        exact = values[math.ceil(q * len(values)) - 1]
        if form == "native":
            width = 2.0 ** (2.0**-3)
            assert exact / width <= got <= exact * width, (workflow, label, got, exact)
        else:
            upper = next(b for b in classic if b >= exact)
            lower = max([0.0, *(b for b in classic if b < exact)])
            assert lower <= got <= upper, (workflow, label, got, exact)


def test_p95_alert_fires_for_the_same_workflows_on_either_form(both: Both) -> None:
    """The p95 alert's expression (its 5m window shortened to the test's minute) selects the
    slow workflow, and only it, on both Prometheus servers."""
    rules = load_yaml(DEPLOY / "prometheus" / "rules" / "sustainbot-alerts.yml")
    (expr,) = [
        r["expr"]
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("alert") == "SustainBotWorkflowLatencyP95High"
    ]
    expr = expr.replace("[5m]", f"[{WINDOW}]")
    for prom in (both.native, both.classic):
        fired: list[dict[str, Any]] = prom.query(expr)
        assert [s["metric"]["workflow_name"] for s in fired] == ["generate_report"], fired
        assert {s["metric"]["namespace"] for s in fired} == {"production"}
