"""serve's own OpenMetrics encoder writes exactly client_python's bytes (``generate_latest`` under
``escaping=allow-utf-8``, as ``select_encoder`` asked of it before), for every page we produce."""

from __future__ import annotations

import functools
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.samples import Exemplar, Timestamp

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector, register_standard
from log_exporter.prometheus.encoder import OpenMetricsEncoder
from log_exporter.prometheus.negotiate import select_encoder
from log_exporter.spec import compile_spec, load_default_spec, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch
from tests.support.pipeline import FixedFamilies, store_for
from tests.support.serve import in_process_service, run_beside
from tests.support.waits import wait_for

FIXTURES = Path(__file__).parents[1] / "fixtures"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
reference = functools.partial(generate_latest, escaping="allow-utf-8")


def _same(registry: FixedFamilies | CollectorRegistry, encoder: Callable[..., bytes]) -> None:
    expected = reference(registry)
    assert encoder(registry) == expected
    # Again: the second render reuses the composed exemplars and must not differ either.
    assert encoder(registry) == expected


# -- generated registries ---------------------------------------------------------------------

_legacy = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
# Any text UTF-8 can carry: quotes, backslashes, newlines, accents, emoji.
_text = st.text(
    alphabet=st.one_of(
        st.sampled_from('"\\\n{},= #é€😀'), st.characters(exclude_categories=["Cs"])
    ),
    max_size=12,
)
_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0.0, -0.0, 1e-7, 123456789.0, 1.5e21, 3.0]),
)
_timestamp = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=4e9),
    st.builds(Timestamp, st.integers(0, 4_000_000_000), st.integers(0, 999_999_999)),
)
_exemplar = st.builds(
    Exemplar, st.dictionaries(_legacy, _text, min_size=1, max_size=2), _number, _timestamp
)
# (type, the sample suffixes it writes, whether those samples may carry an exemplar)
_KINDS = {
    "counter": (("_total", True), ("_created", False)),
    "gauge": (("", False),),
    "histogram": (("_bucket", True), ("_count", False), ("_sum", False), ("", True)),
    "gaugehistogram": (("_bucket", True), ("_gcount", False)),
    "summary": (("", False), ("_count", False), ("_sum", False)),
    "info": (("_info", False),),
    "stateset": (("", False),),
    "unknown": (("", False),),
}


@st.composite
def _family(draw: st.DrawFn) -> Metric:
    kind = draw(st.sampled_from(sorted(_KINDS)))
    name = draw(_legacy)
    metric = Metric(name, draw(_text), kind, unit=draw(st.sampled_from(["", "seconds"])))
    if metric.unit and not name.endswith("_seconds"):
        metric.name = name = f"{name}_seconds"
    for _ in range(draw(st.integers(0, 4))):
        suffix, exemplar_allowed = draw(st.sampled_from(_KINDS[kind]))
        labels = draw(st.dictionaries(_legacy, _text, max_size=3))
        exemplar = draw(st.none() | _exemplar) if exemplar_allowed else None
        metric.add_sample(name + suffix, labels, draw(_number), draw(_timestamp), exemplar)
    return metric


@given(st.lists(_family(), max_size=5))
def test_generated_registries_render_to_client_pythons_exact_bytes(metrics: list[Metric]) -> None:
    """Any mix of family types, label values, numbers, timestamps and exemplars renders to the
    same bytes as client_python's encoder, on a first render and on a cached one."""
    _same(FixedFamilies(metrics), OpenMetricsEncoder())


@given(
    st.lists(
        st.tuples(
            _text, st.floats(0, 100), st.one_of(_text, st.integers(-(2**62), 2**62)), st.booleans()
        ),
        max_size=12,
    )
)
def test_generated_store_pages_render_to_client_pythons_exact_bytes(
    events: list[tuple[str, float, object, bool]],
) -> None:
    """The store's own families (counters, gauges, histograms, info, self-metrics; exemplars with
    odd trace ids and labels, several labels with ``le`` among them, a negative first bound)
    render identically, scrape after scrape while events arrive."""
    pipeline, store = store_for(
        """
series_cap = 6
[metrics.hits_total]
type = "counter"
help = "Hits \\\\ by \\"route\\"."
events = ["request"]
labels = ["route"]
exemplar = "trace_id"
[metrics.latency_seconds]
type = "histogram"
help = "Latency."
events = ["request"]
value = "seconds"
buckets = [0.5, 10]
labels = ["route"]
exemplar = "trace_id"
[metrics.build_info]
type = "info"
help = "Builds."
events = ["request"]
labels = ["route"]
[metrics.weighed_total]
type = "counter"
help = "Seconds, by zone, kind and route."
events = ["request"]
value = "seconds"
labels = ["zone", "kind", "route"]
exemplar = { name = "trace", field = "trace_id" }
[metrics.spread_seconds]
type = "histogram"
help = "Spread: a negative first bound, le among the labels."
events = ["request"]
value = "seconds"
buckets = [-1, 0.5, 10]
labels = ["zone", "kind", "route"]
exemplar = "trace_id"
[metrics.level]
type = "gauge"
help = "Level."
labels = ["route"]
rules = [{ events = ["request"], op = "set", value = "seconds" }]
""",
        "gen.toml",
    )
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    encoder = OpenMetricsEncoder()
    for route, seconds, trace, timestamped in events:
        event: dict[str, object] = {"event": "request", "route": route, "seconds": seconds}
        event |= {"zone": route[::-1], "kind": str(len(route) % 3)}
        event["trace_id"] = trace
        if timestamped:
            event["timestamp"] = "2026-02-01T14:30:00.250Z"
        line = orjson.dumps(event)
        pipeline.feed(Batch([line], bytes_read=len(line)))
        _same(registry, encoder)


def test_an_exemplar_on_a_gauge_fails_as_client_python_does() -> None:
    """A collector's exemplar where OpenMetrics allows none is refused with client_python's
    error (the server answers 500), not written."""
    gauge = Metric("g", "A gauge.", "gauge")
    gauge.add_sample("g", {}, 1.0, None, Exemplar({"a": "b"}, 1.0))
    with pytest.raises(ValueError, match="has exemplars") as ours:
        OpenMetricsEncoder()(FixedFamilies([gauge]))
    with pytest.raises(ValueError, match="has exemplars") as theirs:
        reference(FixedFamilies([gauge]))
    assert ours.value.args == theirs.value.args


def test_names_outside_the_legacy_charset_render_as_client_python_quotes_them() -> None:
    """A metric or label name outside the legacy charset (none of ours, but a collector's may)
    gets client_python's quoted form, not a broken line."""
    metric = Metric("odd.name", "Odd.", "gauge")
    metric.add_sample("odd.name", {"a.b": "x", "ok": "y"}, 2.0)
    other = Metric("fine", "Fine.", "gauge")
    other.add_sample("fine", {"sp ace": "v"}, 1.0)
    _same(FixedFamilies([metric, other]), OpenMetricsEncoder())


# -- the pages we serve -----------------------------------------------------------------------


def test_the_golden_contract_page_and_the_standard_collectors_render_identically() -> None:
    """The contract's page with the process, platform and GC collectors (collected once, their
    numbers move) is byte for byte client_python's, and is the reviewed golden page."""
    spec = load_default_spec()
    store = Store(spec.definitions)
    data = (FIXTURES / "contract.jsonl").read_bytes()
    Pipeline(compile_spec(spec), store).feed(Batch(data.split(b"\n")[:-1], bytes_read=len(data)))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    encoder, content_type = select_encoder(OPENMETRICS)
    assert isinstance(encoder, OpenMetricsEncoder)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert encoder(registry) == (FIXTURES / "contract.expected.om").read_bytes()
    register_standard(registry)
    _same(FixedFamilies(registry.collect()), OpenMetricsEncoder())


# Families whose numbers move between two collections (CPU time, memory, GC counts, and the
# answers counted by code: the scrape itself is counted once answered).
_MOVING = re.compile(r"^# HELP (process_|python_gc_|log_exporter_http_requests)")


def _steady(page: bytes) -> list[str]:
    families = page.decode().split("\n# HELP ")
    return [f for f in families if not _MOVING.match("# HELP " + f)]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except OSError:
        return 0


def test_a_real_sidecars_openmetrics_scrape_is_client_pythons_page(tmp_path: Path) -> None:
    """A running ``serve`` answers an OpenMetrics scrape over HTTP with client_python's page of
    the same registry (the families whose numbers move between two renders aside)."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes((FIXTURES / "contract.jsonl").read_bytes())
    service = in_process_service(log)
    pages: list[bytes] = []

    def scrape() -> None:
        try:
            url = service.server.url
            wait_for(lambda: _status(url.replace("/metrics", "/readyz")) == 200, "caught up")
            request = urllib.request.Request(url, headers={"Accept": OPENMETRICS})
            with urllib.request.urlopen(request, timeout=30) as response:
                pages.append(response.read())
            pages.append(reference(service.registry))
        finally:
            service.request_stop()

    assert run_beside(service, scrape) == 0
    served, expected = pages
    assert b"# {trace_id=" in served
    assert _steady(served) == _steady(expected)


def test_a_reload_that_renames_a_label_is_seen_by_the_next_scrape() -> None:
    """Texts kept from the scrape before a SIGHUP reload are not reused once the reload changed
    the metric: with a label renamed (the same values, so the same series keys) and the
    exemplar's label renamed, the next page is the new spec's."""
    spec_text = """
[metrics.hits_total]
type = "counter"
help = "Hits."
events = ["request"]
labels = ["route"]
exemplar = "trace_id"
"""
    spec = load_spec(spec_text, "gen.toml")
    store = Store(spec.definitions)
    pipeline = Pipeline(compile_spec(spec), store)
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    encoder = OpenMetricsEncoder()
    line = orjson.dumps({"event": "request", "route": "/a", "path": "/a", "trace_id": "t1"})
    pipeline.feed(Batch([line], bytes_read=len(line)))
    _same(registry, encoder)
    renamed = spec_text.replace('["route"]', '["path"]').replace(
        'exemplar = "trace_id"', 'exemplar = { name = "trace", field = "trace_id" }'
    )
    pipeline.reload(compile_spec(load_spec(renamed, "gen.toml")))
    pipeline.feed(Batch([line], bytes_read=len(line)))
    assert b'hits_total{path="/a"} 1.0 # {trace="t1"} 1.0\n' in encoder(registry)
    _same(registry, encoder)
