"""Metric state: the values derived so far, series caps, and the exporter's own counters.

Knows nothing of files, events or HTTP. The compiled spec program writes into the per-metric
state objects directly (that is the hot path); the self-counters of reading (lines, bytes,
rotations, truncations, the last event's time) change only through ``record``, which only the
pipeline calls; everything else reads them, a ``snapshot()`` taken under ``lock``, or a ``dump()``
for the state file.

Counter and gauge series map a label tuple to a float. A histogram series is a list of
per-bucket counts (not cumulative; the last bucket is +Inf) followed by the sum of observations.
A histogram with native buckets (the spec's ``native``) also keeps each series' ``NativeBuckets``
(``log_exporter.native``), saved in ``dump()`` beside the classic cells. Every series also keeps
the time it was created (its start, which the protobuf exposition sends as a counter's or
histogram's created timestamp), saved too. An info metric holds only its latest series. A
counter or histogram with an exemplar setting also keeps the latest exemplar of each series (of
each bucket): memory only, never in ``dump()``. A
partitioned gauge (the spec's ``partition``) also keeps each partition's share of every series;
its series hold the sums of the shares.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from log_exporter.limits import OVERFLOW
from log_exporter.native import NativeBuckets, NativeDef, rebuilt
from log_exporter.values import ReadCounts

__all__ = [
    "CRI_LINE_RESULTS",
    "DEFAULT_SERIES_CAP",
    "LINE_RESULTS",
    "OVERFLOW",
    "CounterState",
    "GaugeState",
    "HistogramState",
    "InfoState",
    "MetricDef",
    "MetricKind",
    "MetricSnapshot",
    "MetricState",
    "Snapshot",
    "Store",
    "StoreError",
]

DEFAULT_SERIES_CAP: Final = 1000
LINE_RESULTS: Final = ("parsed", "malformed", "oversized")
# Results of CRI input only (docs/node.md): present once one is counted, so a JSON log's
# exposition stays as it was.
CRI_LINE_RESULTS: Final = ("unstructured", "partial")
DUMP_VERSION: Final = 1
# The partition of events without the partition's field (the label text of a missing field).
# Values a gauge had before it was partitioned (an earlier release's state file, a reload that
# adds ``partition``) came from such events as far as anyone can tell: they become its share.
UNPARTITIONED: Final = "unknown"

MetricKind = Literal["counter", "gauge", "histogram", "info"]


class StoreError(ValueError):
    """A dump that cannot be restored (wrong shape or version)."""


@dataclass(frozen=True, slots=True)
class MetricDef:
    """What the store needs to know of one metric; equal definitions share state across reloads."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    cap: int = DEFAULT_SERIES_CAP
    # The label name of this metric's exemplars (counters and histograms), None for none: the
    # store then keeps the latest one per series (per bucket of a histogram), never saved.
    exemplar: str | None = None
    # A gauge kept per partition (the spec's ``partition``): its state keeps the shares too.
    partitioned: bool = False
    # A histogram's native bucket settings, None for classic buckets only.
    native: NativeDef | None = None

    def same_shape(self, other: MetricDef) -> bool:
        """True when values of ``other`` mean the same thing here (help and cap may differ; a
        histogram's native settings too: its classic values stay, ``HistogramState.renative``
        rebuilds the native buckets)."""
        return (
            self.name == other.name
            and self.kind == other.kind
            and self.labels == other.labels
            and self.buckets == other.buckets
        )


class _SeriesState:
    """Shared by counters, gauges and histograms: a dict of series with a cap."""

    __slots__ = (
        "clock",
        "definition",
        "exemplars",
        "overflow_key",
        "overflowed",
        "real",
        "series",
        "started",
    )

    def __init__(self, definition: MetricDef) -> None:
        self.definition = definition
        # When each series was created (Unix seconds, by ``clock``, the store's): its start.
        # Absent for a series restored from a state file of a release that did not save it.
        self.started: dict[tuple[str, ...], float] = {}
        self.clock: Callable[[], float] = time.time
        # With an exemplar setting, the latest exemplar per series key (a counter's), or per
        # bucket (a histogram's list, one slot per bucket, +Inf last): (label value, value, the
        # event's raw timestamp). Keys are the series' own, so the series cap bounds them too.
        self.exemplars: dict[tuple[str, ...], Any] = {}
        self.overflow_key: tuple[str, ...] = (OVERFLOW,) * len(definition.labels)
        # Events redirected to the overflow series.
        self.overflowed = 0
        # Series other than the overflow one; the cap applies to these.
        self.real = 0

    def admit(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """The key under which a new series ``key`` is stored: itself, or the overflow key."""
        if self.real < self.definition.cap:
            self.real += 1
            self.started[key] = self.clock()
            return key
        self.overflowed += 1
        overflow = self.overflow_key
        if overflow not in self.started:
            self.started[overflow] = self.clock()
        return overflow

    def _recount(self, keys: Iterable[tuple[str, ...]]) -> None:
        ok = self.overflow_key
        self.real = sum(1 for k in keys if k != ok or not k)


class CounterState(_SeriesState):
    """A counter: label tuple -> running total."""

    __slots__ = ()
    series: dict[tuple[str, ...], float]

    def __init__(self, definition: MetricDef) -> None:
        super().__init__(definition)
        self.series = {}
        if not definition.labels:
            # A label-less metric exists from the start, as client_python shows it.
            self.series[()] = 0.0
            self.real = 1

    def add_new(self, key: tuple[str, ...], amount: float) -> None:
        """Add to a series that was not there yet (the cap may send it to overflow)."""
        key = self.admit(key)
        series = self.series
        series[key] = series.get(key, 0.0) + amount


class GaugeState(CounterState):
    """A gauge: label tuple -> current value, and for a partitioned gauge each partition's share.

    ``parts`` maps a partition (a process, say) to its label tuple -> value; a series is the sum
    of its shares, kept up to date by the program's updates (which add the change of a share)
    and recomputed by a reset. Partitions are bounded by the metric's cap, as series are: past
    it a new partition shares ``OVERFLOW``'s, which only ``reset_all`` clears.
    """

    __slots__ = ("parts",)

    def __init__(self, definition: MetricDef) -> None:
        super().__init__(definition)
        self.parts: dict[str, dict[tuple[str, ...], float]] = {}

    def new_part(self, name: str) -> dict[tuple[str, ...], float]:
        """The shares of a partition not seen yet (past the cap: the overflow partition's)."""
        if len(self.parts) >= self.definition.cap:
            self.overflowed += 1
            name = OVERFLOW
        return self.parts.setdefault(name, {})

    def reset_part(self, name: str) -> None:
        """Forget partition ``name``: every series loses its share (its process is gone)."""
        gone = self.parts.pop(name, None)
        if gone:
            series = self.series
            for k in gone:
                series[k] = sum(p.get(k, 0.0) for p in self.parts.values())

    def take_series_as_shares(self) -> None:
        """Shares from the series alone: all ``UNPARTITIONED``'s (none if not partitioned)."""
        self.parts.clear()
        if self.definition.partitioned:
            shares = {k: v for k, v in self.series.items() if v != 0.0}
            if shares:
                self.parts[UNPARTITIONED] = shares

    def reset_all(self) -> None:
        """Forget every partition: every series is 0 (all the processes are gone)."""
        self.parts.clear()
        series = self.series
        for k in series:
            series[k] = 0.0


class HistogramState(_SeriesState):
    """A histogram: label tuple -> [count per bucket..., count above the last bound, sum]; with
    native buckets also label tuple -> ``NativeBuckets`` (only for series observed into since
    the start or a restore: a series without is an empty one).

    A histogram with native buckets only (no classic bounds) keeps its count in them: its cells'
    first (the +Inf bucket's) holds only what they do not, normally nothing, so an observation
    does not count twice. ``counted`` gives the cells with the count in them, as a snapshot and
    the state file show them; ``restore`` and replay's merge take that form back."""

    __slots__ = ("bounds", "native", "native_def")
    series: dict[tuple[str, ...], list[float]]

    def __init__(self, definition: MetricDef) -> None:
        super().__init__(definition)
        self.bounds = definition.buckets
        self.native_def = definition.native
        self.native: dict[tuple[str, ...], NativeBuckets] = {}
        self.series = {}
        if not definition.labels:
            self.series[()] = self.empty()
            self.real = 1

    def counted(self) -> dict[tuple[str, ...], list[float]]:
        """A copy of every series' cells, the count in them (see the class doc)."""
        out = {k: cells[:] for k, cells in self.series.items()}
        if not self.bounds:
            for k, b in self.native.items():
                out[k][0] += b.count
        return out

    def uncount(self) -> None:
        """Take the count of each series' native buckets out of its cells (see the class doc),
        after the cells and buckets were restored as ``counted`` gives them."""
        if not self.bounds:
            for k, b in self.native.items():
                self.series[k][0] -= b.count

    def new_native(self, key: tuple[str, ...]) -> NativeBuckets:
        """The native buckets series ``key`` observes into when none are stored under ``key``:
        the series admitted first if new, then its own buckets or, when the cap turned it away,
        the overflow series', created empty and linked to the series' cells if there are none."""
        cells = self.series.get(key)
        if cells is None:
            cells = self.new_series(key)
            if key not in self.series:
                key = self.overflow_key
        buckets = self.native.get(key)
        if buckets is None:
            native = self.native_def
            assert native is not None
            buckets = self.native[key] = NativeBuckets(native.schema)
            buckets.link(cells, native.schema)
        return buckets

    def take_native(self, buckets: Mapping[tuple[str, ...], NativeBuckets]) -> None:
        """Hold ``buckets`` (restored or rebuilt) as the native buckets, each linked to its
        series' cells; any of a key with no series is dropped, as no series shows it."""
        self.native.clear()
        native = self.native_def
        if native is None:
            return
        for key, b in buckets.items():
            cells = self.series.get(key)
            if cells is not None:
                b.link(cells, native.schema)
                self.native[key] = b

    def renative(
        self,
        native: NativeDef | None,
        old: dict[tuple[str, ...], NativeBuckets],
        was: NativeDef | None,
    ) -> None:
        """Take native settings ``native`` (None: none), the buckets rebuilt from ``old`` (kept
        under ``was``) or from the classic cells (``log_exporter.native.rebuilt``)."""
        self.native_def = native
        fresh: dict[tuple[str, ...], NativeBuckets] = {}
        if native is not None:
            for key, cells in self.series.items():
                b = rebuilt(native, old.get(key), was, self.bounds, cells)
                if b is not None:
                    fresh[key] = b
        self.take_native(fresh)

    def observe_native(self, key: tuple[str, ...], value: float) -> None:
        """Count ``value`` in the native buckets of the stored series ``key`` (replay's merge)."""
        native = self.native_def
        if native is not None:
            buckets = self.native.get(key)
            if buckets is None:
                buckets = self.new_native(key)
            buckets.observe(value, native)

    def empty(self) -> list[float]:
        return [0.0] * (len(self.bounds) + 2)

    def new_exemplar_slots(self, key: tuple[str, ...]) -> list[Any]:
        """The exemplar slots (one per bucket) of series ``key``, just observed into: its own,
        or the overflow series' when the cap turned it away."""
        if key not in self.series:
            key = self.overflow_key
        slots = self.exemplars.get(key)
        if slots is None:
            slots = self.exemplars[key] = [None] * (len(self.bounds) + 1)
        return slots

    def new_series(self, key: tuple[str, ...]) -> list[float]:
        """The series a new ``key`` observes into (the cap may send it to overflow)."""
        key = self.admit(key)
        cells = self.series.get(key)
        if cells is None:
            cells = self.series[key] = self.empty()
        return cells


class InfoState:
    """An info metric: only the latest label tuple, which replaces the previous one entirely."""

    __slots__ = ("current", "definition")

    def __init__(self, definition: MetricDef) -> None:
        self.definition = definition
        self.current: tuple[str, ...] | None = None


MetricState = CounterState | GaugeState | HistogramState | InfoState


def _new_state(definition: MetricDef) -> MetricState:
    if definition.kind == "counter":
        return CounterState(definition)
    if definition.kind == "gauge":
        return GaugeState(definition)
    if definition.kind == "histogram":
        return HistogramState(definition)
    return InfoState(definition)


@dataclass(frozen=True, slots=True)
class MetricSnapshot:
    """A copy of one metric's series, safe to read while ingestion goes on."""

    definition: MetricDef
    # counter/gauge: key -> value; histogram: key -> cells (see module doc); info: 0 or 1 entry.
    series: dict[tuple[str, ...], Any]
    overflowed: int
    # Key -> latest exemplar (counter) or list of them per bucket (histogram); see _SeriesState.
    exemplars: dict[tuple[str, ...], Any] = field(default_factory=dict)
    # A histogram with native buckets: key -> a copy of its ``NativeBuckets`` (absent: empty).
    native: dict[tuple[str, ...], NativeBuckets] = field(default_factory=dict)
    # A counter's or histogram's series -> its start (see ``_SeriesState.started``).
    started: dict[tuple[str, ...], float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the whole store at one instant."""

    metrics: tuple[MetricSnapshot, ...]
    lines: dict[str, float]
    bytes_read: float
    rotations: float
    truncations: float
    last_event_timestamp: float | None
    invalid_values: dict[str, float] = field(default_factory=dict)
    label_values_too_long: dict[str, float] = field(default_factory=dict)
    exemplars_skipped: dict[str, float] = field(default_factory=dict)


class Store:
    """All metric state plus the exporter's self-counters, guarded by ``lock``.

    The tail thread is the only writer and holds ``lock`` for a whole batch; readers hold it only
    to take a ``snapshot()``.
    """

    def __init__(
        self, definitions: Sequence[MetricDef], clock: Callable[[], float] = time.time
    ) -> None:
        self.lock = threading.Lock()
        # The wall clock of series' start times.
        self._clock = clock
        self.states: dict[str, MetricState] = {}
        self._lines: dict[str, float] = dict.fromkeys(LINE_RESULTS, 0.0)
        self._bytes_read = 0.0
        self._rotations = 0.0
        self._truncations = 0.0
        self._last_event_timestamp: float | None = None
        # Keyed by metric name: observations skipped for an invalid value.
        self.invalid_values: dict[str, float] = {}
        # Keyed by metric name: open label values over the spec's bound, sent as __overflow__.
        self.label_values_too_long: dict[str, float] = {}
        # Keyed by metric name: exemplars not kept (field missing, not a string, or too long).
        self.exemplars_skipped: dict[str, float] = {}
        self._install(definitions, {})

    # -- the self-counters of reading ---------------------------------------------------------

    def record(self, counts: ReadCounts) -> None:
        """Add a stretch of reading to the self-counters (the pipeline's call, ``lock`` held).

        ``counts.last_event_timestamp`` replaces the current value unless None. Nothing else
        changes these counters, so what a line counts as is decided in one place: the pipeline.
        """
        lines = self._lines
        lines["parsed"] += counts.parsed
        lines["malformed"] += counts.malformed
        lines["oversized"] += counts.oversized
        if counts.unstructured:
            lines["unstructured"] = lines.get("unstructured", 0.0) + counts.unstructured
        if counts.partial:
            lines["partial"] = lines.get("partial", 0.0) + counts.partial
        self._bytes_read += counts.bytes_read
        self._rotations += counts.rotations
        self._truncations += counts.truncations
        if counts.last_event_timestamp is not None:
            self._last_event_timestamp = counts.last_event_timestamp

    @property
    def lines(self) -> Mapping[str, float]:
        """Lines read by result (``LINE_RESULTS``), read-only."""
        return MappingProxyType(self._lines)

    @property
    def bytes_read(self) -> float:
        return self._bytes_read

    @property
    def rotations(self) -> float:
        return self._rotations

    @property
    def truncations(self) -> float:
        return self._truncations

    @property
    def last_event_timestamp(self) -> float | None:
        """The latest event time read, in Unix seconds; None before any timed event."""
        return self._last_event_timestamp

    def _install(self, definitions: Sequence[MetricDef], keep: dict[str, MetricState]) -> None:
        states: dict[str, MetricState] = {}
        for d in definitions:
            old = keep.get(d.name)
            if old is not None and old.definition.same_shape(d):
                # Same meaning: keep the values, take the new help text and cap.
                if not isinstance(old, InfoState) and old.definition.exemplar != d.exemplar:
                    old.exemplars.clear()  # another label name, or none: the old ones would lie
                was_partitioned = old.definition.partitioned
                was_native = old.definition.native
                old.definition = d
                states[d.name] = old
                if isinstance(old, HistogramState) and was_native != d.native:
                    old.renative(d.native, dict(old.native), was_native)
                if isinstance(old, GaugeState) and d.partitioned != was_partitioned:
                    old.take_series_as_shares()
            else:
                new = states[d.name] = _new_state(d)
                if not isinstance(new, InfoState):
                    new.clock = self._clock
                    for key in new.series:  # a label-less metric's one series
                        new.started[key] = self._clock()
        self.states = states
        self.invalid_values = {n: self.invalid_values.get(n, 0.0) for n in states}
        self.label_values_too_long = {n: self.label_values_too_long.get(n, 0.0) for n in states}
        self.exemplars_skipped = {n: self.exemplars_skipped.get(n, 0.0) for n in states}

    @property
    def definitions(self) -> tuple[MetricDef, ...]:
        return tuple(s.definition for s in self.states.values())

    def reconfigure(self, definitions: Sequence[MetricDef]) -> None:
        """Switch to a reloaded spec's metrics (call with ``lock`` held).

        A metric keeps its values when its name, type, label names (in order) and buckets are
        unchanged; any other metric starts empty, and a metric no longer in the spec is dropped.
        Self-counters always carry on. State objects of changed metrics are replaced, so a
        program bound to this store must be bound again.
        """
        self._install(definitions, self.states)

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self, exemplars: bool = True) -> Snapshot:
        """A consistent copy, taken under ``lock`` (which must NOT already be held)."""
        with self.lock:
            return self.snapshot_unlocked(exemplars)

    def snapshot_unlocked(self, exemplars: bool = True) -> Snapshot:
        """``snapshot()`` for a caller that already holds ``lock`` (replay, between events);
        without ``exemplars`` (replay, which writes none) they are not copied."""
        metrics: list[MetricSnapshot] = []
        for s in self.states.values():
            if isinstance(s, InfoState):
                series: dict[tuple[str, ...], Any] = {} if s.current is None else {s.current: 1.0}
                metrics.append(MetricSnapshot(s.definition, series, 0))
            elif isinstance(s, HistogramState):
                hist = s.counted()
                slots = {k: x[:] for k, x in s.exemplars.items()} if exemplars else {}
                native = {k: b.copy() for k, b in s.native.items()}
                metrics.append(
                    MetricSnapshot(s.definition, hist, s.overflowed, slots, native, dict(s.started))
                )
            else:
                kept = dict(s.exemplars) if exemplars else {}
                started = {} if isinstance(s, GaugeState) else dict(s.started)
                metrics.append(
                    MetricSnapshot(
                        s.definition, dict(s.series), s.overflowed, kept, started=started
                    )
                )
        return Snapshot(
            metrics=tuple(metrics),
            lines=dict(self._lines),
            bytes_read=self._bytes_read,
            rotations=self._rotations,
            truncations=self._truncations,
            last_event_timestamp=self._last_event_timestamp,
            invalid_values=dict(self.invalid_values),
            label_values_too_long=dict(self.label_values_too_long),
            exemplars_skipped=dict(self.exemplars_skipped),
        )

    # -- persistence --------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything, as JSON-serialisable plain data (non-finite floats as strings)."""
        metrics: dict[str, Any] = {}
        for name, s in self.states.items():
            d = s.definition
            entry: dict[str, Any] = {
                "type": d.kind,
                "labels": list(d.labels),
                "buckets": [_num_out(b) for b in d.buckets],
            }
            if isinstance(s, InfoState):
                entry["current"] = None if s.current is None else list(s.current)
            elif isinstance(s, HistogramState):
                entry["overflowed"] = s.overflowed
                entry["started"] = [[list(k), t] for k, t in s.started.items()]
                entry["series"] = [
                    [list(k), [_num_out(c) for c in cells]] for k, cells in s.counted().items()
                ]
                if d.native is not None:
                    entry["native"] = _native_def_out(d.native)
                    entry["native_series"] = [
                        [list(k), b.schema, b.zero, [[i, n] for i, n in b.positive.items()]]
                        for k, b in s.native.items()
                    ]
            else:
                entry["overflowed"] = s.overflowed
                entry["series"] = [[list(k), _num_out(v)] for k, v in s.series.items()]
                if not isinstance(s, GaugeState):
                    entry["started"] = [[list(k), t] for k, t in s.started.items()]
                if isinstance(s, GaugeState) and d.partitioned:
                    entry["parts"] = [
                        [p, [[list(k), _num_out(v)] for k, v in shares.items()]]
                        for p, shares in s.parts.items()
                    ]
            metrics[name] = entry
        return {
            "version": DUMP_VERSION,
            "metrics": metrics,
            "lines": {k: _num_out(v) for k, v in self._lines.items()},
            "bytes_read": _num_out(self._bytes_read),
            "rotations": _num_out(self._rotations),
            "truncations": _num_out(self._truncations),
            "last_event_timestamp": (
                None if self._last_event_timestamp is None else _num_out(self._last_event_timestamp)
            ),
            "invalid_values": {k: _num_out(v) for k, v in self.invalid_values.items()},
            "label_values_too_long": {
                k: _num_out(v) for k, v in self.label_values_too_long.items()
            },
            # The count only: the exemplars themselves are never saved (a restart collects anew).
            "exemplars_skipped": {k: _num_out(v) for k, v in self.exemplars_skipped.items()},
        }

    @classmethod
    def load(cls, definitions: Sequence[MetricDef], dump: dict[str, Any]) -> Store:
        """A new store for ``definitions`` holding the values of ``dump`` (see ``restore``)."""
        store = cls(definitions)
        store.restore(dump)
        return store

    def restore(self, dump: dict[str, Any]) -> None:
        """Take the values of ``dump`` (call with ``lock`` held, before ingestion starts).

        The same rule as a spec reload: a metric's values are taken only when the dump's type,
        label names and buckets match the current definition; others stay empty. State objects
        are updated in place, so a bound program stays valid. Raises ``StoreError`` for a dump
        of the wrong shape, leaving the store unchanged.
        """
        try:
            parsed = _parse_dump(dump, self.states)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            # AttributeError: a list or a number where the dump has an object (no .items()).
            raise StoreError(f"state dump not usable: {exc!r}") from exc
        values, lines, counters, invalid, too_long, skipped = parsed
        for name, restored in values.items():
            s = self.states[name]
            if isinstance(s, InfoState):
                s.current = restored
            else:
                _restore_series(s, *restored[:3])
                s.started.clear()
                s.started.update({k: t for k, t in restored[4].items() if k in s.series})
                if isinstance(s, HistogramState) and restored[3] != s.native_def:
                    # Saved under other native settings (or none, by an earlier release).
                    s.renative(s.native_def, dict(s.native), restored[3])
        self._lines.update(lines)
        self._bytes_read, self._rotations, self._truncations, self._last_event_timestamp = counters
        for name, v in invalid.items():
            if name in self.invalid_values:
                self.invalid_values[name] = v
        for name, v in too_long.items():
            if name in self.label_values_too_long:
                self.label_values_too_long[name] = v
        for name, v in skipped.items():
            if name in self.exemplars_skipped:
                self.exemplars_skipped[name] = v


def _restore_series(
    s: CounterState | HistogramState, series: Any, overflowed: int, extra: Any
) -> None:
    """A counter's, gauge's or histogram's restored values; ``extra`` a partitioned gauge's
    shares or a histogram's native buckets (None: none saved)."""
    s.series.clear()
    s.series.update(series)
    s.exemplars.clear()
    s.overflowed = overflowed
    s._recount(s.series)
    if isinstance(s, HistogramState):
        s.take_native(extra or {})
        s.uncount()
    elif isinstance(s, GaugeState):
        if extra is None:
            s.take_series_as_shares()
        else:
            s.parts.clear()
            s.parts.update(extra)


def _num_out(v: float) -> float | str:
    if math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")


def _num_in(v: Any) -> float:
    if type(v) is str:
        return {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}[v]
    if type(v) not in (int, float):
        raise TypeError(f"expected a number, got {v!r}")
    return float(v)


def _started_in(entry: dict[str, Any], width: int) -> dict[tuple[str, ...], float]:
    """A metric's saved series starts (absent from earlier releases' state files: none)."""
    started = {}
    for k, t in entry.get("started", ()):
        if type(t) not in (int, float) or not math.isfinite(t):
            raise ValueError(f"bad series start {t!r}")
        started[_key_in(k, width)] = float(t)
    return started


def _native_def_out(d: NativeDef) -> dict[str, Any]:
    return {"schema": d.schema, "zero_threshold": d.zero_threshold, "max_buckets": d.max_buckets}


def _native_def_in(v: Any) -> NativeDef:
    schema, threshold, limit = v["schema"], v["zero_threshold"], v["max_buckets"]
    if type(schema) is not int or type(limit) is not int:
        raise TypeError(f"bad native settings {v!r}")
    return NativeDef(schema, _num_in(threshold), limit)


def _count_in(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise ValueError(f"bad native bucket count {v!r}")
    return v


def _native_in(schema: Any, zero: Any, buckets: Any) -> NativeBuckets:
    if type(schema) is not int:
        raise TypeError(f"bad native schema {schema!r}")
    positive = {}
    for i, n in buckets:
        if type(i) is not int:
            raise TypeError(f"bad native bucket index {i!r}")
        positive[i] = _count_in(n)
    return NativeBuckets(schema, _count_in(zero), positive)


def _key_in(v: Any, width: int) -> tuple[str, ...]:
    if not isinstance(v, list) or len(v) != width or not all(type(x) is str for x in v):
        raise ValueError(f"bad label values {v!r}")
    return tuple(v)


def _parse_dump(dump: dict[str, Any], states: dict[str, MetricState]) -> tuple[Any, ...]:
    """Validate a whole dump before anything is changed, so a bad one changes nothing."""
    if not isinstance(dump, dict):
        raise TypeError(f"the dump is not an object: {type(dump).__name__}")
    if dump.get("version") != DUMP_VERSION:
        raise ValueError(f"unsupported dump version {dump.get('version')!r}")
    values: dict[str, Any] = {}
    for name, entry in dump["metrics"].items():
        s = states.get(name)
        if s is None:
            continue
        d = s.definition
        shape = MetricDef(
            name,
            entry["type"],
            "",
            tuple(entry["labels"]),
            tuple(_num_in(b) for b in entry["buckets"]),
            # Absent from state files of releases before native buckets, and for classic only.
            native=_native_def_in(entry["native"]) if "native" in entry else None,
        )
        if not d.same_shape(shape):
            continue
        width = len(d.labels)
        if isinstance(s, InfoState):
            cur = entry["current"]
            values[name] = None if cur is None else _key_in(cur, width)
        elif isinstance(s, HistogramState):
            cells_len = len(d.buckets) + 2
            hist: dict[tuple[str, ...], list[float]] = {}
            for k, cells in entry["series"]:
                if not isinstance(cells, list) or len(cells) != cells_len:
                    raise ValueError(f"bad histogram cells for {name}")
                hist[_key_in(k, width)] = [_num_in(c) for c in cells]
            native = None
            if shape.native is not None:
                native = {
                    _key_in(k, width): _native_in(schema, zero, buckets)
                    for k, schema, zero, buckets in entry["native_series"]
                }
            values[name] = (
                hist,
                int(entry["overflowed"]),
                native or {},
                shape.native,
                _started_in(entry, width),
            )
        else:
            plain = {_key_in(k, width): _num_in(v) for k, v in entry["series"]}
            # Absent for an unpartitioned gauge, and from state files of earlier releases.
            parts = None
            if "parts" in entry:
                parts = {
                    str(p): {_key_in(k, width): _num_in(v) for k, v in shares}
                    for p, shares in entry["parts"]
                }
            values[name] = (plain, int(entry["overflowed"]), parts, None, _started_in(entry, width))
    lines = {k: _num_in(dump["lines"][k]) for k in LINE_RESULTS}
    lines.update({k: _num_in(dump["lines"][k]) for k in CRI_LINE_RESULTS if k in dump["lines"]})
    ts = dump["last_event_timestamp"]
    counters = (
        _num_in(dump["bytes_read"]),
        _num_in(dump["rotations"]),
        _num_in(dump["truncations"]),
        None if ts is None else _num_in(ts),
    )
    invalid = {str(k): _num_in(v) for k, v in dump["invalid_values"].items()}
    # Absent from the state files of releases before the label value bound: none counted yet.
    too_long = {str(k): _num_in(v) for k, v in dump.get("label_values_too_long", {}).items()}
    # Absent from the state files of releases before exemplars.
    skipped = {str(k): _num_in(v) for k, v in dump.get("exemplars_skipped", {}).items()}
    return values, lines, counters, invalid, too_long, skipped
