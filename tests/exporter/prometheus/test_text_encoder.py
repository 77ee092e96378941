"""serve's text-format writer (0.0.4) writes exactly client_python's bytes (``generate_latest``),
the store's families from the snapshot, for every page we produce: tested as the OpenMetrics
writer is."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import Registry, StoreCollector, register_standard
from log_exporter.prometheus.encoder import TextEncoder
from log_exporter.prometheus.negotiate import select_encoder
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.store import Store
from log_exporter.values import Batch
from tests.support.pipeline import FixedFamilies, store_for

FIXTURES = Path(__file__).parent.parent / "fixtures"

_text = st.text(
    alphabet=st.one_of(
        st.sampled_from('"\\\n{},= #é€😀'), st.characters(exclude_categories=["Cs"])
    ),
    max_size=12,
)


def _same(registry: CollectorRegistry) -> None:
    expected = generate_latest(registry)
    encoder = TextEncoder()
    assert encoder(registry) == expected
    # Again: the second render reuses the kept series texts and must not differ either.
    assert encoder(registry) == expected


_SPEC = """
series_cap = 6
[metrics.hits_total]
type = "counter"
help = "Hits \\\\ by \\"route\\"\\n on two lines."
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
[metrics.spread_seconds]
type = "histogram"
help = "Spread: a negative first bound, le among the labels."
events = ["request"]
value = "seconds"
buckets = [-1, 0.5, 10]
labels = ["zone", "kind", "route"]
[metrics.level]
type = "gauge"
help = "Level."
labels = ["route"]
rules = [{ events = ["request"], op = "set", value = "seconds" }]
"""


@given(st.lists(st.tuples(_text, st.floats(0, 100), _text), max_size=12))
def test_generated_store_pages_render_to_client_pythons_exact_bytes(
    events: list[tuple[str, float, str]],
) -> None:
    """The store's families (counters, gauges, histograms with le among several labels and a
    negative first bound, info, self-metrics; odd label values and help text) render as
    client_python's text format, scrape after scrape while events arrive, with and without
    exemplars collected."""
    pipeline, store = store_for(_SPEC, "gen.toml")
    registry = Registry()
    registry.register(StoreCollector(store))
    encoder, _ = select_encoder("")
    for route, seconds, trace in events:
        event = {"event": "request", "route": route, "seconds": seconds, "trace_id": trace}
        event |= {"zone": route[::-1], "kind": str(len(route) % 3)}
        line = orjson.dumps(event)
        pipeline.feed(Batch([line], bytes_read=len(line)))
        _same(registry)
        assert encoder(registry) == generate_latest(registry)


def test_the_golden_contract_page_and_the_standard_collectors_render_identically() -> None:
    """The contract's text page is the reviewed golden page, written by our writer, and with the
    process, platform and GC collectors (collected once) it is client_python's byte for byte."""
    spec = load_default_spec()
    store = Store(spec.definitions)
    data = (FIXTURES / "contract.jsonl").read_bytes()
    Pipeline(compile_spec(spec), store).feed(Batch(data.split(b"\n")[:-1], bytes_read=len(data)))
    registry = Registry()
    registry.register(StoreCollector(store, build_info=False))
    encoder, content_type = select_encoder("text/plain")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert encoder(registry) == (FIXTURES / "contract.expected.prom").read_bytes()
    register_standard(registry)
    _same(FixedFamilies(list(registry.collect())))  # type: ignore[arg-type]


def test_the_text_writer_writes_the_store_families_itself() -> None:
    """A text scrape of a ``Registry`` writes the store's lines from the snapshot (no
    client_python sample is built for them)."""
    spec = load_default_spec()
    store = Store(spec.definitions)
    registry = Registry()
    registry.register(StoreCollector(store, build_info=False))
    families = [m for m in registry.collect(exemplars=False) if hasattr(m, "text_lines")]
    assert families
    TextEncoder()(FixedFamilies(families))
    assert all(m._samples is None for m in families)  # type: ignore[attr-defined]
