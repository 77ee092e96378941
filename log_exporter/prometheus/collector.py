"""The exporter's collectors: the store's metrics and self-metrics, serve's own, and
client_python's standard process and Python collectors; and ``Registry``, whose scrape says
whether exemplars are wanted.

A scrape copies the store under its lock (``Store.snapshot``) and renders outside it, so a scrape
never stalls ingestion for long. ``families`` also serves replay, which renders snapshots it took
between events. Every self-metric's name, type, help and labels come from ``selfmetrics``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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

from log_exporter import buildinfo
from log_exporter.parse import event_time
from log_exporter.prometheus import selfmetrics
from log_exporter.prometheus.families import Pairs, SeriesTexts, StoreFamily
from log_exporter.prometheus.selfmetrics import (
    BUILD_INFO,
    BYTES_READ,
    EXEMPLARS_SKIPPED,
    FILE_ROTATIONS,
    FILE_TRUNCATIONS,
    HTTP_CONNECTION_ERRORS,
    HTTP_REQUESTS,
    INVALID_VALUES,
    IO_ERRORS,
    LABEL_VALUES_TOO_LONG,
    LAG_BYTES,
    LAST_EVENT_TIMESTAMP,
    LINES,
    RESUME_LOST_BYTES,
    RESUME_MISSES,
    ROTATION_LOST_LINES,
    SERIES,
    SERIES_OVERFLOW,
    SPEC_RELOADS,
    STATE_LOAD_FAILURES,
    STATE_SAVES,
    TLS_HANDSHAKE_FAILURES,
    WEB_CONFIG_RELOADS,
    SelfMetric,
)
from log_exporter.store import (
    CRI_LINE_RESULTS,
    LINE_RESULTS,
    MetricDef,
    MetricSnapshot,
    Snapshot,
    Store,
)

__all__ = [
    "Pairs",
    "Registry",
    "ServeCollector",
    "ServeValues",
    "StateValues",
    "StoreCollector",
    "StoreSetCollector",
    "build_info_family",
    "families",
    "merged_families",
    "register_standard",
    "serve_families",
    "with_labels",
]


class StoreSetCollector(Collector):
    """A custom collector for a registry: the metrics and self-metrics of several stores, one per
    label set, each family once with every set's series (Prometheus refuses a family twice).

    ``sets`` gives, at each scrape, each label set's pairs with its store (in the order shown);
    every series of a set carries its pairs and the ``constant`` ones. ``definitions`` are the
    metrics ``describe`` names. ``log_exporter_build_info`` is included unless ``build_info`` is
    False, with the constant pairs.
    """

    def __init__(
        self,
        sets: Callable[[], Sequence[tuple[Pairs, Store]]],
        definitions: Callable[[], Sequence[MetricDef]],
        *,
        build_info: bool = True,
        constant: Pairs = (),
    ) -> None:
        self._sets = sets
        self._definitions = definitions
        self._build_info = build_info
        self.constant = constant
        # Each label set's metrics' series texts, kept between OpenMetrics scrapes
        # (families.SeriesTexts); a set gone from ``sets`` takes its texts with it.
        self._texts: dict[Pairs, dict[str, SeriesTexts]] = {}

    def collect(self, exemplars: bool = True) -> Iterator[Metric]:
        """The families; without ``exemplars`` (for a format that has none) they are neither
        copied nor built, so such a scrape costs what it did before exemplars existed."""
        constant = self.constant
        kept: dict[Pairs, dict[str, SeriesTexts]] = {}
        parts: list[Part] = []
        for pairs, store in self._sets():
            texts = kept[pairs] = self._texts.get(pairs) or {}
            # The same families, which write text-format lines too, share the series texts.
            snap = store.snapshot() if exemplars else store.snapshot(exemplars=False)
            parts.append((pairs + constant, snap, texts))
        # Replaced whole: two scrapes at once each keep a consistent dict.
        self._texts = kept
        yield from merged_families(parts)
        if self._build_info:
            yield with_labels(build_info_family(), constant)

    def describe(self) -> list[Metric]:
        """The families ``collect`` yields, without values: the spec's, then the self-metrics."""
        out = [_shell(d) for d in self._definitions()]
        out += [m.described() for m in selfmetrics.STORE if m is not BUILD_INFO]
        if self._build_info:
            out.append(BUILD_INFO.described())
        return out


class StoreCollector(StoreSetCollector):
    """A custom collector for a registry: one store's metrics and the exporter's self-metrics,
    each series with the ``constant`` pairs (none by default).

    ``log_exporter_build_info`` is included unless ``build_info`` is False.
    """

    def __init__(self, store: Store, build_info: bool = True, *, constant: Pairs = ()) -> None:
        sets: list[tuple[Pairs, Store]] = [((), store)]
        super().__init__(
            lambda: sets,
            lambda: store.definitions,
            build_info=build_info,
            constant=constant,
        )
        self._store = store


def with_labels(metric: Metric, pairs: Pairs) -> Metric:
    """``metric`` with ``pairs`` added to every sample's labels (itself when there are none)."""
    if not pairs:
        return metric
    extra = dict(pairs)
    out = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    out.samples = [s._replace(labels={**s.labels, **extra}) for s in metric.samples]
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


class Registry(CollectorRegistry):
    """client_python's registry, whose ``collect`` takes the scrape's exemplar choice and hands it
    to the collectors that take one (``StoreCollector``); every other collector is asked as usual.

    serve's registry is one, so a text scrape (``negotiate``) collects the store without
    exemplars. A plain ``CollectorRegistry`` renders the same bytes, only collecting exemplars the
    text encoder then drops.
    """

    def __init__(self, constant: Pairs = ()) -> None:
        super().__init__()
        # In registration order, the order client_python's own collect() asks them in.
        self._members: dict[Collector, None] = {}
        # The ``--label`` pairs, added here to every family of every collector but the stores'
        # (which compose them into their series texts once): serve's own, client_python's.
        self.constant = constant

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self._members[collector] = None

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._members.pop(collector, None)

    def collect(self, exemplars: bool = True) -> Iterator[Metric]:
        if self.get_target_info():
            # Target info is a family client_python's registry writes itself.
            yield from super().collect()
            return
        constant = self.constant
        for collector in list(self._members):
            if isinstance(collector, StoreSetCollector):
                yield from collector.collect(exemplars=exemplars)
            elif constant:
                for metric in collector.collect():
                    yield with_labels(metric, constant)
            else:
                yield from collector.collect()


def families(
    snap: Snapshot, texts: dict[str, SeriesTexts] | None = None, extra: Pairs = ()
) -> list[Metric]:
    """Every metric family of a snapshot: the spec's metrics, then the self-metrics, each series
    with the ``extra`` label pairs.

    With ``texts`` (serve's OpenMetrics scrapes: each metric's series texts, kept in it from
    scrape to scrape), counters and histogram buckets carry their exemplars, and the spec's
    counters, gauges and histograms are ``StoreFamily`` objects, which write their own lines;
    without (replay, text scrapes), ordinary families without exemplars.
    """
    return merged_families([(extra, snap, texts)])


# One label set at a scrape: its pairs (with the constant ones), its snapshot, its texts.
Part = tuple[Pairs, Snapshot, "dict[str, SeriesTexts] | None"]


def merged_families(parts: Sequence[Part]) -> list[Metric]:
    """``families`` of several label sets' snapshots, each family once holding every set's
    series in the sets' order; a family only some sets have (an optional self-metric, or a
    metric a reload changed between two snapshots) holds theirs."""
    groups: dict[str, list[tuple[MetricSnapshot, Pairs, dict[str, SeriesTexts] | None]]] = {}
    for extra, snap, texts in parts:
        for m in snap.metrics:
            groups.setdefault(m.definition.name, []).append((m, extra, texts))
        if texts is not None and len(texts) > len(snap.metrics):
            # A reload dropped metrics: forget their texts.
            for name in texts.keys() - {m.definition.name for m in snap.metrics}:
                del texts[name]
    out = [_merged_metric(group) for group in groups.values()]
    selves: dict[str, Metric] = {}
    for extra, snap, _texts in parts:
        for family in [*_reading_families(snap), *_per_metric_families(snap)]:
            family = with_labels(family, extra)
            first = selves.setdefault(family.name, family)
            if first is not family:
                first.samples += family.samples
    return out + list(selves.values())


def _merged_metric(
    group: Sequence[tuple[MetricSnapshot, Pairs, dict[str, SeriesTexts] | None]],
) -> Metric:
    """One spec metric's family over its label sets (``merged_families``)."""
    m, _, texts = group[0]
    d = m.definition
    pairs = [(g[0], g[1]) for g in group]
    if texts is None or d.kind == "info":
        return _joined(pairs, texts is not None)
    # Every part of one scrape keeps texts, or none does (``merged_families``' callers).
    own = [(g[0], _own_texts(g[0], g[1], g[2] if g[2] is not None else {})) for g in group]
    build = functools.partial(_joined, pairs, True)
    return StoreFamily(_shell(d), m, own[0][1], build, own[1:])


def _own_texts(m: MetricSnapshot, extra: Pairs, texts: dict[str, SeriesTexts]) -> SeriesTexts:
    d = m.definition
    own = texts.get(d.name)
    if own is None or own.definition is not d or own.extra != extra:
        # A new metric, or a reload changed it: its old texts may be wrong.
        own = texts[d.name] = SeriesTexts(d, extra)
    return own


def _joined(group: Sequence[tuple[MetricSnapshot, Pairs]], exemplars: bool) -> Metric:
    """The ordinary families of one metric's label sets as one family."""
    first = _family(group[0][0], exemplars, group[0][1])
    for m, extra in group[1:]:
        first.samples += _family(m, exemplars, extra).samples
    return first


def _reading_families(snap: Snapshot) -> list[Metric]:
    """The self-metrics of reading: lines by result, bytes, rotations, truncations and, once
    known, the last event's time."""
    lines = LINES.family()
    for result in LINE_RESULTS:
        lines.add_metric((result,), snap.lines.get(result, 0.0))
    for result in CRI_LINE_RESULTS:
        if result in snap.lines:
            lines.add_metric((result,), snap.lines[result])
    out: list[Metric] = [
        lines,
        BYTES_READ.family(snap.bytes_read),
        FILE_ROTATIONS.family(snap.rotations),
        FILE_TRUNCATIONS.family(snap.truncations),
    ]
    if snap.last_event_timestamp is not None:
        # Absent until an event with a valid timestamp is seen, so no alert fires on a fake 0.
        out.append(LAST_EVENT_TIMESTAMP.family(snap.last_event_timestamp))
    return out


def _per_metric_families(snap: Snapshot) -> list[Metric]:
    """The self-metrics by spec metric: invalid values, values cut, exemplars skipped, overflow
    and series, the optional ones only once something happened."""
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
    out: list[Metric] = [invalid]
    too_long = _by_metric(LABEL_VALUES_TOO_LONG, snap, snap.label_values_too_long)
    if too_long.samples:
        # Absent until a value was cut (the store does not know which labels are open), so the
        # pages of logs that never reach the bound, SustainBot's among them, do not change.
        out.append(too_long)
    no_exemplar = _by_metric(EXEMPLARS_SKIPPED, snap, snap.exemplars_skipped)
    if no_exemplar.samples:
        # Absent until one was skipped, as above: SustainBot's lines all carry a trace id.
        out.append(no_exemplar)
    out += [overflow, series]
    return out


def _by_metric(
    declared: SelfMetric, snap: Snapshot, counts: Mapping[str, float]
) -> CounterMetricFamily | GaugeMetricFamily:
    """``declared``'s family with a sample for each spec metric whose count is not zero."""
    family = declared.family()
    for m in snap.metrics:
        n = counts.get(m.definition.name, 0.0)
        if n:
            family.add_metric((m.definition.name,), n)
    return family


@dataclass(frozen=True, slots=True)
class StateValues:
    """serve's numbers about its state file, shown only when it has one."""

    saves: Mapping[str, float]  # by result, in the order shown
    load_failures: float
    resume_misses: float
    resume_lost_bytes: float = 0.0


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
    # The HTTP server's answers by status code and connections lost to an unexpected error;
    # the families left out when None (a collector without a server).
    http_requests: Mapping[str, float] | None = None
    http_connection_errors: float | None = None
    tls_handshake_failures: Mapping[str, float] | None = None  # by reason; with TLS only


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
    yield _by_label(SPEC_RELOADS, values.spec_reloads)
    state = values.state
    if state is not None:
        yield _by_label(STATE_SAVES, state.saves)
        yield STATE_LOAD_FAILURES.family(float(state.load_failures))
        # Logged at start too, but a log line is easily missed: a loss must be alertable.
        yield RESUME_MISSES.family(float(state.resume_misses))
        yield RESUME_LOST_BYTES.family(float(state.resume_lost_bytes))
    if values.web_config_reloads is not None:
        yield _by_label(WEB_CONFIG_RELOADS, values.web_config_reloads)
    if values.rotation_lost:
        yield _by_label(ROTATION_LOST_LINES, values.rotation_lost)
    if values.http_requests is not None:
        yield _by_label(HTTP_REQUESTS, dict(sorted(values.http_requests.items())))
    if values.http_connection_errors is not None:
        yield HTTP_CONNECTION_ERRORS.family(float(values.http_connection_errors))
    if values.tls_handshake_failures is not None:
        yield _by_label(TLS_HANDSHAKE_FAILURES, values.tls_handshake_failures)


def _by_label(metric: selfmetrics.SelfMetric, counts: Mapping[str, float]) -> Metric:
    """``metric``'s family with one sample per value of its one label, in ``counts``' order."""
    family = metric.family()
    for label, count in counts.items():
        family.add_metric([label], float(count))
    return family


def _exemplar(name: str, kept: tuple[str, float, object]) -> Exemplar:
    """A kept exemplar (label value, value, the event's raw timestamp) as client_python's."""
    value, amount, raw_time = kept
    # A spec reading Unix times keeps the seconds themselves (``[input]`` timestamp).
    stamp = raw_time if type(raw_time) is float else event_time({"timestamp": raw_time})
    return Exemplar({name: value}, float(amount), stamp)


def _shell(d: MetricDef, extra: tuple[str, ...] = ()) -> Metric:
    """The metric's family, without samples; ``extra``: label names after the metric's own."""
    labels = (*d.labels, *extra)
    if d.kind == "counter":
        return CounterMetricFamily(d.name, d.help, labels=labels)
    if d.kind == "gauge":
        return GaugeMetricFamily(d.name, d.help, labels=labels)
    if d.kind == "info":
        # client_python appends the _info suffix itself.
        return InfoMetricFamily(d.name.removesuffix("_info"), d.help, labels=labels)
    return HistogramMetricFamily(d.name, d.help, labels=labels)


def _family(m: MetricSnapshot, exemplars: bool = False, extra: Pairs = ()) -> Metric:
    """The metric's family with its samples, each series with the ``extra`` pairs; with
    ``exemplars``, a counter's series and a histogram's buckets carry the exemplars kept for
    them (only OpenMetrics has any)."""
    d = m.definition
    family = _shell(d, tuple(n for n, _ in extra))
    if extra:
        values = tuple(v for _, v in extra)
        series: Mapping[tuple[str, ...], Any] = {k + values: v for k, v in m.series.items()}
        kept_of: Mapping[tuple[str, ...], Any] = {k + values: v for k, v in m.exemplars.items()}
    else:
        series, kept_of = m.series, m.exemplars
    label = d.exemplar if exemplars and m.exemplars else None
    if isinstance(family, CounterMetricFamily):
        for key, value in series.items():
            kept = kept_of.get(key) if label is not None else None
            exemplar = None if kept is None or label is None else _exemplar(label, kept)
            family.add_metric(key, value, exemplar=exemplar)
    elif isinstance(family, GaugeMetricFamily):
        for key, value in series.items():
            family.add_metric(key, value)
    elif isinstance(family, InfoMetricFamily):
        for key in series:
            family.add_metric(key, {})
    elif isinstance(family, HistogramMetricFamily):
        les = [floatToGoString(b) for b in d.buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        for key, cells in series.items():
            cumulative = 0.0
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            slots = kept_of.get(key) if label is not None else None
            for i, (le, count) in enumerate(zip(les, cells, strict=False)):
                cumulative += count
                x = slots[i] if slots is not None else None
                if x is None or label is None:
                    buckets.append((le, cumulative))
                else:
                    buckets.append((le, cumulative, _exemplar(label, x)))
            family.add_metric(key, buckets, cells[-1])
    return family
