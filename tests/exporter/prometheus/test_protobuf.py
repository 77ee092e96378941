"""The protobuf exposition, read back by the ``protobuf`` package over client_model's schema:
every family, classic buckets, native spans and deltas, exemplars, and the negotiation."""

from __future__ import annotations

import gzip
import http.client
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from log_exporter.native import SCHEMA_MAX, bounds, pick_schema
from log_exporter.prometheus.collector import (
    Registry,
    ServeCollector,
    ServeValues,
    StoreCollector,
    register_standard,
)
from log_exporter.prometheus.negotiate import select_encoder, wants_protobuf
from log_exporter.prometheus.protobuf import CONTENT_TYPE
from log_exporter.prometheus.server import MetricsServer
from log_exporter.spec import compile_spec, load_spec
from log_exporter.store import Store
from tests.support.native_reference import reference
from tests.support.protobuf_decode import decode_delimited

# What Prometheus 2.42 sends with --enable-feature=native-histograms (and 3.x with
# scrape_native_histograms), protobuf first.
PROMETHEUS_NATIVE = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_CLASSIC = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

SPEC = """
[metrics.t_requests_total]
type = "counter"
help = "Requests."
events = ["done"]
labels = ["route"]
exemplar = "trace_id"

[metrics.t_in_flight]
type = "gauge"
help = "In flight."
labels = ["route"]
rules = [{ events = ["start"], op = "inc" }, { events = ["done"], op = "dec" }]

[metrics.t_build_info]
type = "info"
help = "Build."
events = ["boot"]
labels = ["version"]

[metrics.t_classic_seconds]
type = "histogram"
help = "Classic only."
events = ["done"]
labels = ["route"]
value = "seconds"
buckets = [0.1, 1.0]
exemplar = "trace_id"

[metrics.t_native_seconds]
type = "histogram"
help = "Native only."
events = ["done"]
labels = ["route"]
value = "seconds"
native = { bucket_factor = 1.1, max_buckets = 5 }
exemplar = "trace_id"

[metrics.t_both_seconds]
type = "histogram"
help = "Both."
events = ["done"]
labels = ["route"]
value = "seconds"
buckets = [0.1, 1.0]
native = { bucket_factor = 1.05, zero_threshold = 0.001 }
exemplar = "trace_id"
"""

VALUES = [0.0, 0.0005, 0.05, 0.3, 0.3, 1.0, 2.5, 40.0]


def store_with_events() -> Store:
    spec = load_spec(SPEC, "t.toml")
    store = Store(spec.definitions)
    fns = compile_spec(spec).bind(store)
    fns["boot"]({"event": "boot", "version": "1.2"})
    for i, v in enumerate(VALUES):
        route = "/a" if i % 2 else "/b"
        fns["start"]({"event": "start", "route": route})
        fns["done"](
            {
                "event": "done",
                "route": route,
                "seconds": v,
                "trace_id": f"t{i}",
                "timestamp": f"2026-01-01T00:00:0{i}.250Z",
            }
        )
    return store


def registry_of(store: Store) -> Registry:
    registry = Registry()
    registry.register(StoreCollector(store))
    registry.register(ServeCollector(lambda: ServeValues(1.0, 0.0, {"success": 1.0})))
    register_standard(registry)
    return registry


def protobuf_page(registry: Any) -> list[Any]:
    encoder, content_type = select_encoder(PROMETHEUS_NATIVE)
    assert content_type == CONTENT_TYPE
    return decode_delimited(encoder(registry))


def by_name(families: list[Any]) -> dict[str, Any]:
    return {f.name: f for f in families}


def labels_of(metric: Any) -> dict[str, str]:
    return {lp.name: lp.value for lp in metric.label}


def native_counts(h: Any) -> dict[int, int]:
    """A histogram's positive spans and deltas decoded to bucket index -> count."""
    counts: dict[int, int] = {}
    index, count, deltas = 0, 0, iter(h.positive_delta)
    for span in h.positive_span:
        index += span.offset  # from the end of the previous span, or from 0
        for _ in range(span.length):
            count += next(deltas)
            if count:
                counts[index] = count
            index += 1
    assert next(deltas, None) is None
    return counts


def test_every_family_of_the_text_page_is_in_the_protobuf_page() -> None:
    """The store's metrics, self-metrics, serve's and the process/platform/GC collectors' families
    all appear, under the names Prometheus gives their series, with their types."""
    registry = registry_of(store_with_events())
    encoder, _ = select_encoder("text/plain; version=0.0.4")
    text = encoder(registry).decode()
    expected = {}
    for f in text_string_to_metric_families(text):
        name = f.name + "_total" if f.type == "counter" else f.name
        name = name + "_info" if f.type == "info" else name
        expected[name] = f.type
    got = by_name(protobuf_page(registry))
    types = {0: "counter", 1: "gauge", 2: "summary", 3: "unknown", 4: "histogram"}
    assert {n: types[f.type] for n, f in got.items()} == {
        n: ("gauge" if t == "info" else t) for n, t in expected.items()
    }


def test_counters_gauges_and_info_carry_the_store_values_and_exemplars() -> None:
    """A counter's value and exemplar (with its event time), a gauge's value and an info metric
    (a gauge of 1) are those of the store."""
    got = by_name(protobuf_page(registry_of(store_with_events())))
    counter = {labels_of(m)["route"]: m.counter for m in got["t_requests_total"].metric}
    assert counter["/a"].value == 4.0
    assert counter["/b"].exemplar.label[0].value == "t6"
    assert counter["/b"].exemplar.timestamp.ToNanoseconds() == 1767225606_250_000_000
    gauge = {labels_of(m)["route"]: m.gauge.value for m in got["t_in_flight"].metric}
    assert gauge == {"/a": 0.0, "/b": 0.0}
    (info,) = got["t_build_info"].metric
    assert (labels_of(info), info.gauge.value) == ({"version": "1.2"}, 1.0)


def test_classic_histogram_has_cumulative_buckets_with_exemplars_and_no_native_part() -> None:
    """Classic buckets are cumulative with their bounds and exemplars; nothing marks the
    histogram as native, so Prometheus keeps reading it as a classic one."""
    got = by_name(protobuf_page(registry_of(store_with_events())))
    by_route = {labels_of(m)["route"]: m.histogram for m in got["t_classic_seconds"].metric}
    h = by_route["/b"]  # 0.0, 0.05, 0.3, 2.5
    assert [(b.upper_bound, b.cumulative_count) for b in h.bucket] == [
        (0.1, 2),
        (1.0, 3),
        (math.inf, 4),
    ]
    assert (h.sample_count, h.sample_sum) == (4, 2.85)
    assert h.bucket[2].exemplar.label[0].value == "t6"
    assert not h.positive_span and not h.zero_threshold and not h.HasField("schema")


def test_native_only_histogram_has_spans_deltas_zero_bucket_and_timed_exemplars() -> None:
    """A native-only histogram has no classic buckets, the store's schema, zero bucket and
    buckets (decoded from spans and deltas), count and sum, and its exemplar with a time."""
    store = store_with_events()
    got = by_name(protobuf_page(registry_of(store)))
    state = store.states["t_native_seconds"]
    for m in got["t_native_seconds"].metric:
        h = m.histogram
        key = (labels_of(m)["route"],)
        native = state.native[key]  # type: ignore[union-attr]
        assert not h.bucket
        assert (h.schema, h.zero_count, native_counts(h)) == (
            native.schema,
            native.zero,
            native.positive,
        )
        assert h.zero_threshold == 2.938735877055719e-39
        assert h.sample_count == native.count
        assert len(h.exemplars) == 1 and h.exemplars[0].HasField("timestamp")


def test_histogram_with_both_forms_has_classic_buckets_and_native_ones() -> None:
    """With buckets and native, one histogram message holds both, counts agreeing."""
    got = by_name(protobuf_page(registry_of(store_with_events())))
    for m in got["t_both_seconds"].metric:
        h = m.histogram
        assert h.bucket[-1].cumulative_count == h.sample_count
        assert h.schema == pick_schema(1.05)
        assert h.zero_threshold == 0.001
        assert sum(native_counts(h).values()) + h.zero_count == h.sample_count
        times = [x.timestamp.ToNanoseconds() for x in h.exemplars]
        assert times == sorted(times) and len(times) >= 2


def test_text_formats_show_a_native_only_histogram_as_count_sum_and_inf() -> None:
    """The text format and OpenMetrics keep classic buckets: a native-only histogram shows its
    +Inf bucket, _count and _sum, as client_golang writes it."""
    registry = registry_of(store_with_events())
    for accept in ("text/plain; version=0.0.4", PROMETHEUS_CLASSIC):
        encoder, content_type = select_encoder(accept)
        assert content_type != CONTENT_TYPE
        page = encoder(registry).decode()
        lines = [ln for ln in page.splitlines() if ln.startswith("t_native_seconds")]
        assert sorted(ln.split("{")[0] for ln in lines) == sorted(
            ["t_native_seconds_bucket", "t_native_seconds_count", "t_native_seconds_sum"] * 2
        )
        assert any('le="+Inf"' in ln and ln.split()[1] == "4.0" for ln in lines), lines


@pytest.mark.parametrize(
    ("accept", "protobuf"),
    [
        (PROMETHEUS_NATIVE, True),
        (PROMETHEUS_CLASSIC, False),
        ("", False),
        ("*/*", False),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
         "encoding=delimited;q=0.5,text/plain;q=0.8", False),
        ("text/plain;q=0.2,application/vnd.google.protobuf;"
         "proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6", True),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
         "encoding=delimited;q=0", False),
        ("application/vnd.google.protobuf;proto=other.Message;encoding=delimited", False),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
         "encoding=text", False),
        ("*/*;q=0.9,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
         "encoding=delimited;q=0.5", True),
        # Equal quality: the range with more parameters first, as goautoneg sorts them.
        ("text/plain;version=0.0.4,application/vnd.google.protobuf;"
         "proto=io.prometheus.client.MetricFamily;encoding=delimited", True),
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;x=y,"
         "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
         "encoding=delimited", False),
    ],
)  # fmt: skip
def test_protobuf_is_negotiated_as_client_golang_does(accept: str, protobuf: bool) -> None:
    """The protobuf page goes to a client whose best-quality served format is delimited
    MetricFamily protobuf (as Prometheus asks with native histograms on), never otherwise."""
    assert wants_protobuf(accept) is protobuf
    assert (select_encoder(accept)[1] == CONTENT_TYPE) is protobuf


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    srv = MetricsServer(registry_of(store_with_events()), listen="127.0.0.1:0")
    srv.start()
    yield srv
    srv.shutdown()


def test_server_sends_protobuf_gzipped_on_the_same_listener(server: MetricsServer) -> None:
    """Over HTTP, Prometheus' native-histogram Accept header with gzip gets the gzipped protobuf
    page under its content type; the same listener still serves text to others."""
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(
            "GET", "/metrics", headers={"Accept": PROMETHEUS_NATIVE, "Accept-Encoding": "gzip"}
        )
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == CONTENT_TYPE
        assert resp.getheader("Content-Encoding") == "gzip"
        assert "t_native_seconds" in by_name(decode_delimited(gzip.decompress(body)))
        conn.request("GET", "/metrics", headers={"Accept": "text/plain"})
        resp = conn.getresponse()
        assert resp.getheader("Content-Type", "").startswith("text/plain")
        assert b"t_native_seconds_count" in resp.read()
    finally:
        conn.close()


NATIVE_SPEC = """
[metrics.h_seconds]
type = "histogram"
help = "h"
events = ["x"]
value = "v"
native = {{ bucket_factor = {factor!r}, zero_threshold = {threshold!r}, max_buckets = {limit} }}
"""


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(
            st.just(0.0) | st.floats(1e-300, 1e9),
            st.builds(
                lambda i, e: math.ldexp(bounds(SCHEMA_MAX)[i], e),
                st.integers(0, 255),
                st.integers(-30, 30),
            ),
        ),
        max_size=80,
    ),
    factor=st.one_of(st.floats(1.0001, 1000.0), st.sampled_from([1.1, 2.0, 1.00271])),
    threshold=st.sampled_from([0.0, 2.938735877055719e-39, 0.01]),
    limit=st.integers(1, 20),
)
def test_decoded_spans_and_deltas_equal_a_plain_reference(
    values: list[float], factor: float, threshold: float, limit: int
) -> None:
    """Random observations, factors and bucket limits: the page's schema, zero bucket, spans and
    deltas decode to the counts a plain reference computes (halving and zero bucket included)."""
    spec = load_spec(NATIVE_SPEC.format(factor=factor, threshold=threshold, limit=limit), "p")
    store = Store(spec.definitions)
    apply = compile_spec(spec).bind(store)["x"]
    for v in values:
        apply({"event": "x", "v": v})
    registry = Registry()
    registry.register(StoreCollector(store, build_info=False))
    (h,) = [m.histogram for m in by_name(protobuf_page(registry))["h_seconds"].metric]
    schema, zero, counts = reference(values, pick_schema(factor), threshold, limit)
    assert (h.schema, h.zero_count, native_counts(h)) == (schema, zero, counts)
    assert h.sample_count == len(values)
    assert h.sample_sum == sum(float(v) for v in values) or not values


def test_each_scrape_shows_the_buckets_of_its_moment() -> None:
    """Scrape after scrape, with observations (and a halving) in between, the page shows the
    store's buckets at that scrape, not those written for an earlier one."""
    spec = load_spec(NATIVE_SPEC.format(factor=1.1, threshold=0.0, limit=3), "p")
    store = Store(spec.definitions)
    apply = compile_spec(spec).bind(store)["x"]
    registry = Registry()
    registry.register(StoreCollector(store, build_info=False))
    encoder = select_encoder(PROMETHEUS_NATIVE)[0]
    seen = []
    for v in [1.0, 1.0, 2.0, 0.0, 5.0, 300.0, 0.5]:
        apply({"event": "x", "v": v})
        (m,) = by_name(decode_delimited(encoder(registry)))["h_seconds"].metric
        b = store.states["h_seconds"].native[()]  # type: ignore[union-attr]
        h = m.histogram
        assert (h.schema, h.zero_count, native_counts(h)) == (b.schema, b.zero, b.positive)
        seen.append(h.schema)
    assert seen[0] == 3 and seen[-1] < 3  # the limit of 3 buckets halved the resolution


def test_counters_and_histograms_carry_their_series_start_across_a_restart() -> None:
    """Each counter and histogram series has its creation time (the store's clock) as its
    created timestamp; a store restored from the state file keeps them, and a series from a
    state file without starts (an earlier release) has none rather than a wrong one."""
    spec = load_spec(SPEC, "t.toml")
    now = iter(float(1_767_225_600 + i) for i in range(1000))
    store = Store(spec.definitions, clock=lambda: next(now))
    fns = compile_spec(spec).bind(store)
    for route in ("/a", "/b"):
        fns["done"]({"event": "done", "route": route, "seconds": 0.5, "trace_id": "t"})

    def starts(s: Store) -> dict[tuple[str, str], int]:
        out = {}
        for f in protobuf_page(registry_of(s)):
            for m in f.metric:
                value = m.counter if f.type == 0 else m.histogram
                if f.name.startswith("t_") and value.HasField("created_timestamp"):
                    out[(f.name, labels_of(m)["route"])] = value.created_timestamp.seconds
        return out

    before = starts(store)
    assert set(before) == {
        (n, r)
        for n in ("t_requests_total", "t_classic_seconds", "t_native_seconds", "t_both_seconds")
        for r in ("/a", "/b")
    }
    assert before[("t_requests_total", "/a")] < before[("t_requests_total", "/b")]
    dump = json.loads(json.dumps(store.dump()))
    assert starts(Store.load(spec.definitions, dump)) == before
    for entry in dump["metrics"].values():
        entry.pop("started", None)
    assert starts(Store.load(spec.definitions, dump)) == {}
