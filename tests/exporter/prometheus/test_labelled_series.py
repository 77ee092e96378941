"""Several label sets' stores and constant labels on one page: each family once, every series
with its set's and the constant pairs, byte for byte as client_python writes the same samples."""

from __future__ import annotations

from prometheus_client import exposition as text_reference
from prometheus_client.openmetrics.exposition import generate_latest as reference
from prometheus_client.parser import text_string_to_metric_families

from log_exporter.prometheus.collector import (
    Registry,
    ServeCollector,
    ServeValues,
    StoreSetCollector,
    register_standard,
)
from log_exporter.prometheus.encoder import OpenMetricsEncoder, TextEncoder
from log_exporter.prometheus.negotiate import select_encoder
from log_exporter.prometheus.protobuf import CONTENT_TYPE
from log_exporter.store import Store
from tests.support.pipeline import FixedFamilies, feed, store_for
from tests.support.protobuf_decode import decode_delimited

PROTOBUF_FIRST = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
)

SPEC = """
[metrics.requests_total]
type = "counter"
help = "Requests."
labels = ["route"]
exemplar = "trace_id"
rules = [{ events = ["request"] }]
[metrics.latency_seconds]
type = "histogram"
help = "Latency."
buckets = [0.1, 1]
labels = ["route"]
exemplar = "trace_id"
rules = [{ events = ["request"], value = "seconds" }]
"""


def _two_pods() -> tuple[Registry, list[tuple[tuple[tuple[str, str], ...], Store]]]:
    sets: list[tuple[tuple[tuple[str, str], ...], Store]] = []
    for pod, n in (("web-0", 2), ("web-1", 3)):
        pipeline, store = store_for(SPEC)
        events = [
            {"event": "request", "route": "/a", "seconds": 0.5, "trace_id": f"t{i}"}
            for i in range(n)
        ]
        feed(pipeline, events)
        sets.append(((("namespace", "prod"), ("pod", pod)), store))
    constant = (("job", "sustainbot"),)
    registry = Registry(constant)
    registry.register(
        StoreSetCollector(
            lambda: sets, lambda: sets[0][1].definitions, constant=constant, build_info=True
        )
    )
    registry.register(
        ServeCollector(lambda: ServeValues(lag_bytes=0, io_errors=0, spec_reloads={}))
    )
    register_standard(registry)
    return registry, sets


def test_each_family_appears_once_with_every_label_sets_series() -> None:
    """Two pods' stores give one requests family whose series carry their pod, the constant
    job and their own counts, as client_python writes the same samples."""
    registry, _ = _two_pods()
    collected = list(registry.collect())
    names = [m.name for m in collected]
    assert len(names) == len(set(names))
    page = OpenMetricsEncoder()(FixedFamilies(collected))
    assert page == reference(FixedFamilies(collected))  # type: ignore[no-untyped-call]
    text = page.decode()
    assert 'requests_total{job="sustainbot",namespace="prod",pod="web-0",route="/a"} 2.0' in text
    assert 'requests_total{job="sustainbot",namespace="prod",pod="web-1",route="/a"} 3.0' in text
    assert (
        'latency_seconds_bucket{job="sustainbot",le="1.0",namespace="prod",pod="web-1",'
        'route="/a"} 3.0' in text
    )
    # A second render reuses the kept texts and must not differ.
    again = list(registry.collect())
    assert OpenMetricsEncoder()(FixedFamilies(again)) == reference(FixedFamilies(again))  # type: ignore[no-untyped-call]


def test_the_constant_label_is_on_every_series_self_and_process_metrics_included() -> None:
    """Every sample of the page, the self-metrics, serve's own, build_info and client_python's
    process and Python metrics included, carries the constant label."""
    registry, _ = _two_pods()
    collected = list(registry.collect(exemplars=False))
    page = TextEncoder()(FixedFamilies(collected))
    assert page == text_reference.generate_latest(FixedFamilies(collected))
    text = page.decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert samples
    assert all(s.labels.get("job") == "sustainbot" for s in samples)
    lines = {
        s.labels["pod"]: s.value
        for s in samples
        if s.name == "log_exporter_lines_total" and s.labels.get("result") == "parsed"
    }
    assert lines == {"web-0": 2.0, "web-1": 3.0}
    assert any(s.name.startswith("process_") for s in samples)
    assert any(s.name == "log_exporter_build_info" for s in samples)


def test_protobuf_page_carries_every_label_sets_pairs_on_its_series() -> None:
    """A protobuf scrape of two pods' stores gives one family per metric whose series carry
    their pod, the constant job and their own labels, in name order, with their own counts."""
    registry, _ = _two_pods()
    encoder, content_type = select_encoder(PROTOBUF_FIRST)
    assert content_type == CONTENT_TYPE
    for _ in range(2):  # the second scrape writes from the bytes kept by the first
        families = {f.name: f for f in decode_delimited(encoder(registry))}
        requests = families["requests_total"]
        seen = {
            tuple((lp.name, lp.value) for lp in m.label): m.counter.value for m in requests.metric
        }
        assert seen == {
            (("job", "sustainbot"), ("namespace", "prod"), ("pod", "web-0"), ("route", "/a")): 2,
            (("job", "sustainbot"), ("namespace", "prod"), ("pod", "web-1"), ("route", "/a")): 3,
        }
        latency = families["latency_seconds"]
        assert sorted(
            (dict((lp.name, lp.value) for lp in m.label)["pod"], m.histogram.sample_count)
            for m in latency.metric
        ) == [("web-0", 2), ("web-1", 3)]
        process = families["process_cpu_seconds_total"].metric[0]
        assert ("job", "sustainbot") in [(lp.name, lp.value) for lp in process.label]
