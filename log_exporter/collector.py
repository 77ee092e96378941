"""Prometheus metric families from a ``Store``, built at scrape time.

A scrape copies the store under its lock (``Store.snapshot``) and renders outside it, so a scrape
never stalls ingestion for long. ``families`` also serves replay, which renders snapshots it took
between events.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from log_exporter import __version__
from log_exporter.store import LINE_RESULTS, MetricSnapshot, Snapshot, Store

__all__ = ["StoreCollector", "build_info_family", "families"]

Extra = Callable[[], Iterable[Metric]]


class StoreCollector(Collector):
    """A custom collector for a registry: the store's metrics and the exporter's self-metrics.

    ``extra`` is called at each scrape for families only its owner knows (the server passes
    ``log_exporter_lag_bytes``). ``log_exporter_build_info`` is included unless ``build_info`` is
    False.
    """

    def __init__(self, store: Store, extra: Extra | None = None, build_info: bool = True) -> None:
        self._store = store
        self._extra = extra
        self._build_info = build_info

    def collect(self) -> Iterator[Metric]:
        yield from families(self._store.snapshot())
        if self._build_info:
            yield build_info_family()
        if self._extra is not None:
            yield from self._extra()


def build_info_family() -> Metric:
    """``log_exporter_build_info{version,python}`` = 1."""
    info = InfoMetricFamily(
        "log_exporter_build",
        "log-exporter's version and the Python it runs on.",
        labels=("version", "python"),
    )
    info.add_metric((__version__, platform.python_version()), {})
    return info


def families(snap: Snapshot) -> list[Metric]:
    """Every metric family of a snapshot: the spec's metrics, then the self-metrics."""
    out = [_family(m) for m in snap.metrics]

    lines = CounterMetricFamily(
        "log_exporter_lines_total", "Lines read, by result.", labels=("result",)
    )
    for result in LINE_RESULTS:
        lines.add_metric((result,), snap.lines.get(result, 0.0))
    out.append(lines)
    out.append(
        CounterMetricFamily(
            "log_exporter_bytes_read_total", "Bytes consumed from the log.", value=snap.bytes_read
        )
    )
    out.append(
        CounterMetricFamily(
            "log_exporter_file_rotations_total",
            "Rotations of the log noticed.",
            value=snap.rotations,
        )
    )
    out.append(
        CounterMetricFamily(
            "log_exporter_file_truncations_total",
            "Truncations of the log noticed.",
            value=snap.truncations,
        )
    )
    if snap.last_event_timestamp is not None:
        # Absent until an event with a valid timestamp is seen, so no alert fires on a fake 0.
        out.append(
            GaugeMetricFamily(
                "log_exporter_last_event_timestamp_seconds",
                "Timestamp of the latest event read, in Unix seconds.",
                value=snap.last_event_timestamp,
            )
        )
    invalid = CounterMetricFamily(
        "log_exporter_invalid_values_total",
        "Observations skipped because the value was missing, not a number, negative or infinite.",
        labels=("metric",),
    )
    overflow = CounterMetricFamily(
        "log_exporter_series_overflow_total",
        "Events counted in a metric's __overflow__ series because its series cap was reached.",
        labels=("metric",),
    )
    series = GaugeMetricFamily(
        "log_exporter_series", "Series a metric currently has.", labels=("metric",)
    )
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
    out += [invalid, overflow, series]
    return out


def _family(m: MetricSnapshot) -> Metric:
    d = m.definition
    labels = d.labels
    if d.kind == "counter":
        counter = CounterMetricFamily(d.name, d.help, labels=labels)
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
    for key, cells in m.series.items():
        cumulative = 0.0
        buckets = []
        for le, count in zip(les, cells, strict=False):
            cumulative += count
            buckets.append((le, cumulative))
        hist.add_metric(key, buckets, cells[-1])
    return hist
