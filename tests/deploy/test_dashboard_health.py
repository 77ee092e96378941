"""The dashboard's exporter-health row against live sidecars scraped by a real Prometheus.

Lag, state saves, CloudWatch backlog and rejections and process memory exist only on a running
sidecar, so backfilled blocks cannot feed them: two real `log-exporter serve` processes, one per
namespace (the staging one shipping to a real moto server over HTTP), are scraped by a real
Prometheus that attaches the namespace and pod labels a Kubernetes scrape would.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.cloudwatch import running_moto
from tests.support.contract import contract_line
from tests.support.deploy import REPO
from tests.support.prometheus import Prometheus
from tests.support.serve import Exporter
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "dashboards" / "governance-observability.json"
JOB = "sustainbot-exporter"
SCRAPE_SECONDS = 1
HEALTH_PANELS = range(11, 18)
# Served by the process collector of issue 13's standard metrics, which another branch adds:
# until a sidecar serves it, its panel alone may stay empty, and the test says so.
PENDING = {17: "process_resident_memory_bytes"}


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _write_log(path: Path) -> None:
    now = time.time()
    lines = []
    for i in range(50):
        lines.append(
            contract_line(
                "http.request",
                _stamp(now - 60 + i),
                logger="sustainbot",
                trace_id=f"{i:032x}",
                method="GET",
                endpoint="/healthz",
                status_code=200,
                duration_seconds=0.004,
            )
        )
    path.write_bytes(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A real moto server over HTTP on an ephemeral loopback port."""
    with running_moto() as endpoint:
        yield endpoint


@dataclass
class Live:
    prometheus: Prometheus
    logs: dict[str, Path]


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str, moto_endpoint: str
) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live")
    aws = {
        "CLOUDWATCH_ENABLED": "true",
        "CLOUDWATCH_REGION": "eu-west-1",
        "CLOUDWATCH_FLUSH_SECONDS": "1",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        # moto does not decompress gzip request bodies; CloudWatch compresses PutMetricData.
        "AWS_DISABLE_REQUEST_COMPRESSION": "true",
    }
    exporters: dict[str, Exporter] = {}
    try:
        for namespace, env in (("staging", aws), ("production", {})):
            directory = tmp / namespace
            directory.mkdir()
            _write_log(directory / "sustainbot.jsonl")
            args = ["--file", str(directory / "sustainbot.jsonl"), "--state", "state.json"]
            exporters[namespace] = Exporter(directory, [*args, "--state-interval", "1"], env=env)
        for exporter in exporters.values():
            exporter.wait_healthy()
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": "1h",
            },
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{exporter.port}"],
                            "labels": {"namespace": namespace, "pod": f"sustainbot-{namespace}-0"},
                        }
                        for namespace, exporter in exporters.items()
                    ],
                }
            ],
        }
        prom = Prometheus(prometheus_binary, tmp, config=config)
        logs = {ns: tmp / ns / "sustainbot.jsonl" for ns in exporters}
        try:
            # Once Prometheus has seen both counters at 0, so that increase() sees them move.
            wait_for(
                lambda: len(prom.query('log_exporter_lines_total{result="malformed"} == 0')) == 2,
                "both sidecars scraped",
                timeout=60,
                interval=0.5,
            )
            wait_for(
                lambda: prom.query('log_exporter_cloudwatch_backlog_bytes{namespace="staging"}'),
                "the shipping sidecar scraped",
                timeout=60,
                interval=0.5,
            )
            for namespace, log in logs.items():
                with log.open("ab") as f:
                    f.write(b"this line is not JSON\n")
                    if namespace == "staging":
                        # 15 days old: outside CloudWatch Logs' 14-day window, refused, counted.
                        stale = _stamp(time.time() - 15 * 86400)
                        f.write(contract_line("http.request", stale, logger="sustainbot"))
            yield Live(prom, logs)
        finally:
            prom.stop()
    finally:
        for exporter in exporters.values():
            exporter.stop()


def _panels() -> dict[int, dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return {p["id"]: p for p in dashboard["panels"]}


def _substitute(expr: str, namespace: str) -> str:
    # Grafana's $__rate_interval with a 1 s scrape interval and a short range: 4 scrapes.
    expr = expr.replace("$__rate_interval", f"{4 * SCRAPE_SECONDS + 1}s")
    expr = expr.replace("$namespace", namespace).replace("$job", JOB).replace("$pod", ".*")
    assert "$" not in expr, expr
    return expr


def _series(prom: Prometheus, expr: str) -> list[dict[str, Any]]:
    end = time.time()
    body = prom.api("/api/v1/query_range", query=expr, start=end - 30, end=end, step=1)
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


@pytest.mark.parametrize("namespace", ["staging", "production", ".*"])
def test_health_panel_shows_nothing_for_live_sidecars(live: Live, namespace: str) -> None:
    """Every exporter-health panel draws a line per selected pod, named by namespace and pod."""
    prom = live.prometheus
    panels = _panels()
    for pid in HEALTH_PANELS:
        (target,) = panels[pid]["targets"]
        expr = _substitute(target["expr"], namespace)
        if pid in PENDING and not _series(prom, PENDING[pid]):
            continue
        if "cloudwatch" in expr and namespace == "production":
            # The production sidecar does not ship: its CloudWatch panels stay empty there.
            assert _series(prom, expr) == [], pid
            continue
        result = wait_for(
            functools.partial(_series, prom, expr),
            f"panel {pid} to return data: {expr}",
            timeout=60,
            interval=0.5,
            explain=prom.log,
        )
        wanted = re.compile(namespace)
        assert all(wanted.fullmatch(s["metric"]["namespace"]) for s in result), (pid, result)
        assert all(s["metric"]["pod"] == f"sustainbot-{s['metric']['namespace']}-0" for s in result)


def test_health_panels_show_malformed_lines_and_rejections(live: Live) -> None:
    """The malformed-line and CloudWatch rejection panels show a bad line and a stale event."""
    prom = live.prometheus
    panels = _panels()
    malformed = _substitute(panels[12]["targets"][0]["expr"], ".*").replace("rate(", "increase(")
    malformed = malformed.replace(f"[{4 * SCRAPE_SECONDS + 1}s]", "[1h]")
    rejected = _substitute(panels[16]["targets"][0]["expr"], ".*")
    rejected = rejected.replace("rate(", "increase(").replace(
        f"[{4 * SCRAPE_SECONDS + 1}s]", "[1h]"
    )

    def reasons(expr: str, label: str) -> dict[tuple[str, str], float]:
        return {
            (s["metric"]["namespace"], s["metric"][label]): float(s["value"][1])
            for s in prom.query(expr)
        }

    def one_malformed_each() -> bool:
        seen = reasons(malformed, "result")
        return all(seen.get((ns, "malformed"), 0) > 0 for ns in ("staging", "production"))

    wait_for(one_malformed_each, "a malformed line in each namespace", timeout=60, interval=0.5)
    wait_for(
        lambda: reasons(rejected, "reason"),
        "the 15-day-old event counted as a CloudWatch rejection",
        timeout=60,
        interval=0.5,
        explain=prom.log,
    )
    # Only the shipping sidecar refused anything, and for being too old.
    assert set(reasons(rejected, "reason")) == {("staging", "window_too_old")}
