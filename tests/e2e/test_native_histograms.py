"""Native histograms end to end: a real Prometheus with native histograms on asks the real sidecar
for protobuf while the real SustainBot serves requests, and stores what the log says; a text
scraper still gets the classic buckets (docs/exporter.md, "Native histograms")."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sustainbot.auth import mint_token
from sustainbot.settings import Settings
from tests.support.load import scraping_sidecar, send_governed
from tests.support.prometheus import Prometheus
from tests.support.protobuf_decode import decode_delimited
from tests.support.serve import Exporter
from tests.support.service import SECRET, Service
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

HTTP = "sustainbot_http_request_duration_seconds"
WORKFLOW = "sustainbot_governed_workflow_duration_seconds"
PROTOBUF_FIRST = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "text/plain;version=0.0.4;q=0.5"
)
CLIENTS = 4
REQUESTS_PER_CLIENT = 50
BODIES = (
    ("approver", "deploy_staging", "execute", "Deploy api@1.4.2. You must check it."),
    ("analyst", "carbon_audit", "analysis", "We used 1,200 kWh. You should always check."),
    ("admin", "generate_report", "execute", "Board summary #simulate-failure"),
)


Key = tuple[str, ...]


def _durations(log: Path, event: str, labels: Key) -> dict[Key, list[float]]:
    out: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for line in log.read_bytes().splitlines():
        e = json.loads(line)
        if e.get("event") == event:
            out[tuple(str(e[k]) for k in labels)].append(float(e["duration_seconds"]))
    return out


def _by_labels(prom: Prometheus, expr: str, labels: Key) -> dict[Key, float]:
    return {
        tuple(item["metric"].get(k, "") for k in labels): float(item["value"][1])
        for item in prom.query(expr)
    }


def _exact_quantile(values: list[float], q: float) -> float:
    """The observation of rank ceil(q * n): the one whose native bucket Prometheus interpolates
    in (it looks for the first bucket whose cumulative count reaches q * n)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _schemas(exporter: Exporter, family: str, labels: Key) -> dict[Key, int]:
    """Each series' schema as the sidecar sends it (the bucket limit may have halved it)."""
    status, body = exporter.get("/metrics", headers={"Accept": PROTOBUF_FIRST})
    assert status == 200
    (fam,) = [f for f in decode_delimited(body) if f.name == family]
    return {
        tuple({lp.name: lp.value for lp in m.label}[k] for k in labels): m.histogram.schema
        for m in fam.metric
    }


def test_prometheus_stores_native_histograms_equal_to_the_log(
    tmp_path: Path, prometheus_binary: str
) -> None:
    """Under load, Prometheus (native histograms on) stores per series the log's count and sum,
    quantiles within one bucket of the exact ones, exemplars with the requests' trace ids; a
    text scrape of the same sidecar has classic buckets."""
    log = tmp_path / "logs" / "sustainbot.jsonl"
    settings = Settings(jwt_secret=SECRET)
    tokens = {r: mint_token(settings, actor="Dana Operator", role=r) for r, *_ in BODIES}
    start = time.time() - 60
    with (
        Exporter(tmp_path, ["--file", str(log)]) as exporter,
        Service(tmp_path, log, workers=2, threads=4) as service,
    ):
        exporter.wait_healthy()
        service.start()
        # 2.42 asks for protobuf first with this flag; 3.8+ take scrape_native_histograms.
        prom = scraping_sidecar(
            prometheus_binary,
            tmp_path / "prometheus",
            exporter.port,
            flags=("--enable-feature=native-histograms,exemplar-storage",),
        )
        try:
            send_governed(
                service.port,
                tokens,
                BODIES,
                clients=CLIENTS,
                requests=REQUESTS_PER_CLIENT,
                health=True,
            )
            assert service.stop() == 0  # every event is in the log now

            http_labels = ("method", "endpoint")
            wf_labels = ("workflow_name", "outcome", "drag_mode")
            logged_http = _durations(log, "http.request", http_labels)
            logged_wf = _durations(log, "workflow.completed", wf_labels)
            want = {k: float(len(v)) for k, v in logged_http.items()}
            wait_for(
                lambda: _by_labels(prom, f"histogram_count({HTTP})", http_labels) == want,
                "Prometheus to hold the log's request counts",
                explain=prom.log,
            )
            wf_counts = {k: float(len(v)) for k, v in logged_wf.items()}
            wait_for(
                lambda: _by_labels(prom, f"histogram_count({WORKFLOW})", wf_labels) == wf_counts,
                "Prometheus to hold the log's workflow counts",
                explain=prom.log,
            )
            targets = prom.active_targets()
            assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")], targets
            # Stored as native histograms: no _bucket series came from the protobuf scrapes.
            assert prom.query(f"{HTTP}_bucket") == []

            for name, labels, logged in (
                (HTTP, http_labels, logged_http),
                (WORKFLOW, wf_labels, logged_wf),
            ):
                sums = _by_labels(prom, f"histogram_sum({name})", labels)
                for key, values in logged.items():
                    assert sums[key] == pytest.approx(math.fsum(values), rel=1e-9), key
                schemas = _schemas(exporter, name, labels)
                for q in (0.5, 0.9, 0.99):
                    got = _by_labels(prom, f"histogram_quantile({q}, {name})", labels)
                    for key, values in logged.items():
                        exact = _exact_quantile(values, q)
                        width = 2.0 ** (2.0 ** -schemas[key])  # one bucket's growth
                        assert exact / width <= got[key] <= exact * width, (name, key, q)

            exemplars = prom.exemplars(WORKFLOW, start, time.time() + 60)
            traces = {
                e["trace_id"]
                for line in log.read_bytes().splitlines()
                for e in [json.loads(line)]
                if e.get("event") == "workflow.completed"
            }
            seen = [x["labels"]["trace_id"] for s in exemplars for x in s["exemplars"]]
            assert seen and set(seen) <= traces, exemplars

            status, text = exporter.get("/metrics", headers={"Accept": "text/plain"})
            assert status == 200
            (family,) = [f for f in text_string_to_metric_families(text.decode()) if f.name == HTTP]
            les: dict[tuple[str, ...], list[str]] = defaultdict(list)
            for s in family.samples:
                if s.name == f"{HTTP}_bucket":
                    key = tuple(s.labels[k] for k in http_labels)
                    les[key].append(s.labels["le"])
                    if s.labels["le"] == "+Inf":
                        assert s.value == len(logged_http[key])
            classic = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0"]
            assert les == {key: [*classic, "10.0", "+Inf"] for key in logged_http}
        finally:
            prom.stop()
