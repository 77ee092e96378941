"""The exporter's Prometheus collectors: the store's metrics and self-metrics, serve's own, and
client_python's standard process and Python collectors.

A scrape copies the store under its lock (``Store.snapshot``) and renders outside it, so a scrape
never stalls ingestion for long. ``families`` also serves replay, which renders snapshots it took
between events. Every self-metric's name, type, help and labels come from ``selfmetrics``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from log_exporter import buildinfo, selfmetrics
from log_exporter.omencoder import ComposedExemplar
from log_exporter.parse import event_time
from log_exporter.selfmetrics import (
    BUILD_INFO,
    BYTES_READ,
    EXEMPLARS_SKIPPED,
    FILE_ROTATIONS,
    FILE_TRUNCATIONS,
    INVALID_VALUES,
    IO_ERRORS,
    LABEL_VALUES_TOO_LONG,
    LAG_BYTES,
    LAST_EVENT_TIMESTAMP,
    LINES,
    RESUME_MISSES,
    ROTATION_LOST_LINES,
    SERIES,
    SERIES_OVERFLOW,
    SPEC_RELOADS,
    STATE_LOAD_FAILURES,
    STATE_SAVES,
    WEB_CONFIG_RELOADS,
)
from log_exporter.store import LINE_RESULTS, MetricSnapshot, Snapshot, Store

__all__ = [
    "ExemplarCache",
    "ServeCollector",
    "ServeValues",
    "StateValues",
    "StoreCollector",
    "build_info_family",
    "families",
    "register_standard",
    "serve_families",
    "without_exemplars",
]


class StoreCollector(Collector):
    """A custom collector for a registry: the store's metrics and the exporter's self-metrics.

    ``log_exporter_build_info`` is included unless ``build_info`` is False.
    """

    def __init__(self, store: Store, build_info: bool = True) -> None:
        self._store = store
        self._build_info = build_info
        self._exemplars = ExemplarCache()

    def collect(self) -> Iterator[Metric]:
        exemplars = self._exemplars if _RENDER_EXEMPLARS.get() else None
        yield from families(self._store.snapshot(exemplars is not None), exemplars)
        if self._build_info:
            yield build_info_family()

    def describe(self) -> list[Metric]:
        """The families ``collect`` yields, without values: the spec's, then the self-metrics."""
        out = [_family(MetricSnapshot(d, {}, 0)) for d in self._store.definitions]
        out += [m.described() for m in selfmetrics.STORE if m is not BUILD_INFO]
        if self._build_info:
            out.append(BUILD_INFO.described())
        return out


def build_info_family() -> Metric:
    """``log_exporter_build_info{version,revision,python_version}`` = 1."""
    info = BUILD_INFO.info_family()
    info.add_metric((buildinfo.version(), buildinfo.revision(), buildinfo.python_version()), {})
    return info


def register_standard(registry: CollectorRegistry) -> None:
    """Add client_python's process (CPU, memory, descriptors), platform and GC collectors, which
    its default registry has and a registry of our own lacks (``selfmetrics.STANDARD``)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


# False while a format without exemplars (the Prometheus text format) renders in this context:
# then they are neither copied nor built, and a text scrape costs what it did before them.
_RENDER_EXEMPLARS: ContextVar[bool] = ContextVar("render_exemplars", default=True)


@contextlib.contextmanager
def without_exemplars() -> Iterator[None]:
    """Collect without exemplars in this context (the encoder would drop them anyway)."""
    token = _RENDER_EXEMPLARS.set(False)
    try:
        yield
    finally:
        _RENDER_EXEMPLARS.reset(token)


class ExemplarCache:
    """The exemplars of the previous render, so that a series whose exemplar did not change since
    costs a lookup, not a timestamp parse and two objects (most series, at 10k of them).

    Keyed by the kept entry's identity, checked with ``is`` (the cache holds the entry, so its id
    cannot be reused while cached): two renders at once may miss, never mix up. An entry shared
    by two metrics whose exemplar labels differ misses each time, and is still right.
    """

    def __init__(self) -> None:
        self._previous: dict[int, tuple[object, str, Exemplar]] = {}
        self._current: dict[int, tuple[object, str, Exemplar]] = {}

    def get(self, label: str, kept: tuple[str, float, object]) -> Exemplar:
        key = id(kept)
        hit = self._previous.get(key)
        if hit is None or hit[0] is not kept or hit[1] != label:
            hit = (kept, label, _exemplar(label, kept))
        # The previous render's entry itself on a hit: no new objects a scrape for the garbage
        # collector to look at, at 10k series.
        self._current[key] = hit
        return hit[2]

    def rendered(self) -> None:
        """One render is done: what it used is what the next one may reuse."""
        self._previous, self._current = self._current, {}


def families(snap: Snapshot, exemplars: ExemplarCache | None = None) -> list[Metric]:
    """Every metric family of a snapshot: the spec's metrics, then the self-metrics.

    With ``exemplars`` (serve's scrapes), counters and histogram buckets carry their exemplars,
    which only the OpenMetrics encoder writes; without (replay), none.
    """
    out = [_family(m, exemplars) for m in snap.metrics]
    if exemplars is not None:
        exemplars.rendered()

    lines = LINES.family()
    for result in LINE_RESULTS:
        lines.add_metric((result,), snap.lines.get(result, 0.0))
    out.append(lines)
    out.append(BYTES_READ.family(snap.bytes_read))
    out.append(FILE_ROTATIONS.family(snap.rotations))
    out.append(FILE_TRUNCATIONS.family(snap.truncations))
    if snap.last_event_timestamp is not None:
        # Absent until an event with a valid timestamp is seen, so no alert fires on a fake 0.
        out.append(LAST_EVENT_TIMESTAMP.family(snap.last_event_timestamp))
    invalid = INVALID_VALUES.family()
    overflow = SERIES_OVERFLOW.family()
    series = SERIES.family()
    for m in snap.metrics:
        d = m.definition
        skipped = snap.invalid_values.get(d.name, 0.0)
        # Histograms always read a value; other metrics only when their spec says so, and the
        # store does not know the rules, so they appear once something was skipped.
        if d.kind == "histogram" or skipped:
            invalid.add_metric((d.name,), skipped)
        if d.kind != "info":
            overflow.add_metric((d.name,), float(m.overflowed))
        series.add_metric((d.name,), float(len(m.series)))
    out.append(invalid)
    too_long = LABEL_VALUES_TOO_LONG.family()
    for m in snap.metrics:
        cut = snap.label_values_too_long.get(m.definition.name, 0.0)
        if cut:
            too_long.add_metric((m.definition.name,), cut)
    if too_long.samples:
        # Absent until a value was cut (the store does not know which labels are open), so the
        # pages of logs that never reach the bound, SustainBot's among them, do not change.
        out.append(too_long)
    no_exemplar = EXEMPLARS_SKIPPED.family()
    for m in snap.metrics:
        n = snap.exemplars_skipped.get(m.definition.name, 0.0)
        if n:
            no_exemplar.add_metric((m.definition.name,), n)
    if no_exemplar.samples:
        # Absent until one was skipped, as above: SustainBot's lines all carry a trace id.
        out.append(no_exemplar)
    out += [overflow, series]
    return out


@dataclass(frozen=True, slots=True)
class StateValues:
    """serve's numbers about its state file, shown only when it has one."""

    saves: Mapping[str, float]  # by result, in the order shown
    load_failures: float
    resume_misses: float


@dataclass(frozen=True, slots=True)
class ServeValues:
    """serve's own numbers at one scrape (the tailer's, the reloads', the state file's)."""

    lag_bytes: float
    io_errors: float
    spec_reloads: Mapping[str, float]  # by result, in the order shown
    state: StateValues | None = None
    web_config_reloads: Mapping[str, float] | None = None  # by result; with a web config only
    # Lines of generations deleted before a reader read them, by reader (tail.ledger); empty
    # without a reader to watch, and the family left out.
    rotation_lost: Mapping[str, float] | None = None


class ServeCollector(Collector):
    """serve's own self-metrics (lag, I/O errors, reloads, state file), from ``values()``.

    ``values`` is called once per scrape, from the scrape's thread.
    """

    def __init__(self, values: Callable[[], ServeValues]) -> None:
        self._values = values

    def collect(self) -> Iterator[Metric]:
        yield from serve_families(self._values())

    def describe(self) -> list[Metric]:
        return [m.described() for m in selfmetrics.SERVE]


def serve_families(values: ServeValues) -> Iterator[Metric]:
    """serve's self-metric families holding ``values``; the state file's and the web config's
    only with one."""
    yield LAG_BYTES.family(float(values.lag_bytes))
    yield IO_ERRORS.family(float(values.io_errors))
    reloads = SPEC_RELOADS.family()
    for result, count in values.spec_reloads.items():
        reloads.add_metric([result], float(count))
    yield reloads
    state = values.state
    if state is not None:
        saves = STATE_SAVES.family()
        for result, count in state.saves.items():
            saves.add_metric([result], float(count))
        yield saves
        yield STATE_LOAD_FAILURES.family(float(state.load_failures))
        # Logged at start too, but a log line is easily missed: a loss must be alertable.
        yield RESUME_MISSES.family(float(state.resume_misses))
    if values.web_config_reloads is not None:
        reloads = WEB_CONFIG_RELOADS.family()
        for result, count in values.web_config_reloads.items():
            reloads.add_metric([result], float(count))
        yield reloads
    if values.rotation_lost:
        lost = ROTATION_LOST_LINES.family()
        for reader, lines in values.rotation_lost.items():
            lost.add_metric([reader], float(lines))
        yield lost


def _exemplar(name: str, kept: tuple[str, float, object]) -> Exemplar:
    """A kept exemplar (label value, value, the event's raw timestamp) as client_python's."""
    value, amount, raw_time = kept
    return ComposedExemplar({name: value}, float(amount), event_time({"timestamp": raw_time}))


def _family(m: MetricSnapshot, cache: ExemplarCache | None = None) -> Metric:
    d = m.definition
    labels = d.labels
    # Only the OpenMetrics encoder writes exemplars; the Prometheus text format has none.
    exemplars = m.exemplars if cache is not None else {}
    if d.kind == "counter":
        counter = CounterMetricFamily(d.name, d.help, labels=labels)
        if exemplars and d.exemplar is not None and cache is not None:
            label_name, get = d.exemplar, cache.get
            for key, value in m.series.items():
                kept = exemplars.get(key)
                counter.add_metric(key, value, exemplar=kept and get(label_name, kept))
            return counter
        for key, value in m.series.items():
            counter.add_metric(key, value)
        return counter
    if d.kind == "gauge":
        gauge = GaugeMetricFamily(d.name, d.help, labels=labels)
        for key, value in m.series.items():
            gauge.add_metric(key, value)
        return gauge
    if d.kind == "info":
        # client_python appends the _info suffix itself.
        info = InfoMetricFamily(d.name.removesuffix("_info"), d.help, labels=labels)
        for key in m.series:
            info.add_metric(key, {})
        return info
    hist = HistogramMetricFamily(d.name, d.help, labels=labels)
    les = [floatToGoString(b) for b in d.buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
    label: str | None = d.exemplar if exemplars else None
    for key, cells in m.series.items():
        cumulative = 0.0
        buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
        slots = exemplars.get(key) if label is not None else None
        if slots is None or label is None or cache is None:
            for le, count in zip(les, cells, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
        else:
            for le, count, kept in zip(les, cells, slots, strict=False):
                cumulative += count
                if kept is None:
                    buckets.append((le, cumulative))
                else:
                    buckets.append((le, cumulative, cache.get(label, kept)))
        hist.add_metric(key, buckets, cells[-1])
    return hist
