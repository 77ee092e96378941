"""The data path in one process, for the tests of its stages: a spec's pipeline and store,
events fed as the tailer hands lines over, and the store rendered as serve's /metrics renders it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.spec import compile_spec, load_default_spec, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch


def store_for(spec_text: str | None = None, name: str = "test.toml") -> tuple[Pipeline, Store]:
    """A pipeline over a new store for ``spec_text`` (the built-in SustainBot spec by default)."""
    spec = load_default_spec() if spec_text is None else load_spec(spec_text, name)
    store = Store(spec.definitions)
    return Pipeline(compile_spec(spec), store), store


def feed(
    pipeline: Pipeline, events: Iterable[Mapping[str, object]], *, bytes_read: int | None = None
) -> None:
    """``events`` as one batch of JSON lines; ``bytes_read`` is their length unless given."""
    lines = [orjson.dumps(e) for e in events]
    read = sum(map(len, lines)) if bytes_read is None else bytes_read
    pipeline.feed(Batch(lines, bytes_read=read))


def render(source: Store | Collector) -> bytes:
    """The Prometheus text page of a store (without build_info, whose Python version differs
    between machines) or of any one collector."""
    registry = CollectorRegistry()
    registry.register(
        StoreCollector(source, build_info=False) if isinstance(source, Store) else source
    )
    return generate_latest(registry)


class FixedFamilies:
    """A registry of families collected once, so two encoders see the very same samples."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> list[Metric]:
        return self.metrics
