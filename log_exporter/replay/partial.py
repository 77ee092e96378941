"""A replay worker's partial state of one stretch of log, made for an exact merge into a ``Store``
(``log_exporter.replay.merge``).

A worker does not know the values its stretch starts from, so it keeps what the merge needs to
end exactly where one process reading everything in order would, bit for bit:

- a counter series fed only by rules without a value: its count (sums of whole numbers are
  exact in any order);
- a counter series fed a value: the amounts in order (float sums depend on their order and on
  the value they start from, so the merge adds them one by one, as serially);
- a histogram series: its bucket counts and the observed values in order (for the sum, and
  for its native buckets, whose resolution depends on the order of the values);
- a gauge series of ``inc``/``dec`` rules without a value and a whole-number (or no) floor:
  the net change ``a`` and the least value ``c`` the floor leaves, so the series ends at
  ``max(c, start + a)`` (exact: every value it takes is a whole number);
- any other gauge series: the value of its last ``set`` (floored) if any, then the signed
  changes after it in order, replayed with the floor by the merge;
- a partitioned gauge (the spec's ``partition``; ``inc``/``dec`` without a value, a whole-number
  or no floor, ``reset``, ``reset_all``): whether a ``reset_all`` was seen (the state before it
  no longer matters), then per partition whether a ``reset`` dropped its earlier share and, per
  series, the net change and least value of its share since (as above, per share); every value
  is a whole number, so a series, the sum of its shares, comes out exact in any order. How many
  partitions the stretch may create is kept too: where that could reach the cap (the overflow
  partition's order matters) ``mergeable`` says no;
- an info metric: its latest label tuple;
- the self-counters of reading (``record``, a ``ReadCounts``), invalid values, values cut and
  exemplars skipped (replay writes no exemplars, but counts the updates that could keep none),
  all whole numbers.

Series keys keep the order they were first seen in, so the merge admits new series against the
cap in the order one reader would. Where that order cannot be reproduced (series of a metric
whose result depends on the order of its events going to ``__overflow__``, where events of
several keys interleave), ``mergeable`` says no and the stretch is replayed in order instead;
more series than the cap + 1 in one stretch raise ``TooWide`` (the worker's memory bound) with
the same result.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from log_exporter.spec.model import MetricSpec, Spec
from log_exporter.values import ReadCounts

__all__ = [
    "BASE",
    "CHANGES",
    "EVENTS",
    "HIST_COUNTS",
    "HIST_VALUES",
    "LEAST",
    "NET",
    "Delta",
    "Mode",
    "PartShares",
    "Partial",
    "PartialInfo",
    "PartialSeries",
    "TooWide",
    "fresh_cell",
    "mode_of",
    "unsupported",
]

Mode = Literal["count", "amounts", "hist", "steps", "ops", "parts", "info"]
NEG_INF: Final = -math.inf

# The cell of one series, per mode: the generated partial program (``log_exporter.replay.target``)
# writes it, the merge below reads it. A ``count`` cell is a plain int and an ``amounts`` cell the
# list of amounts in order; the others are lists indexed by these positions.
HIST_COUNTS: Final = 0  # hist: the bucket counts, one per bound then +Inf
HIST_VALUES: Final = 1  # hist: the observed values in order (for the sum)
NET: Final = 0  # steps: the net change
LEAST: Final = 1  # steps: the least value the floor leaves (-inf without a floor)
BASE: Final = 0  # ops: the value of the last set (floored), None before one
CHANGES: Final = 1  # ops: the signed changes after it, in order
EVENTS: Final = 2  # steps and ops: the events that changed the series


def fresh_cell(mode: Mode, nbuckets: int) -> list[Any]:
    """A new series' cell in ``mode`` (not ``count``, ``parts`` or ``info``); ``nbuckets``: a
    histogram's bounds."""
    if mode == "amounts":
        return []
    if mode == "hist":
        return [[0] * (nbuckets + 1), []]
    if mode == "steps":
        return [0, NEG_INF, 0]
    if mode == "ops":
        return [None, [], 0]
    raise ValueError(f"mode {mode!r} has no list cell")


class TooWide(Exception):
    """More distinct series of one metric in one stretch than its cap + 1."""


def unsupported(spec: Spec) -> str | None:
    """Why this spec cannot be replayed in parallel exactly, or None when it can."""
    allowed = {
        "counter": {"inc"},
        "gauge": {"inc", "dec", "set"},
        "histogram": {"observe"},
        "info": {"info"},
    }
    for m in spec.metrics:
        ops = allowed.get(m.kind)
        if ops is None:
            return f"metric {m.name}: type {m.kind!r} has no exact merge"
        if m.partition is not None:
            # A share's changes add up to its series in event order: exact only for whole
            # numbers, which sum the same in any order.
            for r in m.rules:
                if r.op not in _PART_OPS or r.value is not None:
                    return (
                        f"metric {m.name}: op {r.op!r}"
                        f"{' with a value' if r.value is not None else ''}"
                        " of a partitioned gauge has no exact merge"
                    )
            if not _whole_floor(m.floor):
                return f"metric {m.name}: a partitioned gauge's fractional floor has no exact merge"
            continue
        for r in m.rules:
            if r.op not in ops:
                return f"metric {m.name}: op {r.op!r} has no exact merge"
    return None


_PART_OPS: Final = frozenset({"inc", "dec", "reset", "reset_all"})


def _whole_floor(floor: float | None) -> bool:
    return floor is None or (
        math.isfinite(floor) and float(floor).is_integer() and math.copysign(1.0, floor) > 0
    )


def mode_of(m: MetricSpec) -> Mode:
    """How a worker keeps the series of ``m`` (see the module's docstring)."""
    if m.kind == "info":
        return "info"
    if m.kind == "histogram":
        return "hist"
    if m.partition is not None:
        return "parts"
    valued = any(r.value is not None for r in m.rules)
    if m.kind == "counter":
        return "amounts" if valued else "count"
    if not valued and all(r.op in ("inc", "dec") for r in m.rules) and _whole_floor(m.floor):
        return "steps"
    return "ops"


class PartialSeries:
    """The partial series of one counter, gauge or histogram, keyed in first-seen order.

    A partitioned gauge (mode ``parts``) keeps its series' keys only (for their admission) and
    its shares in ``parts``, written by ``step``, ``reset`` and ``reset_all``.
    """

    __slots__ = (
        "cleared",
        "first",
        "floor",
        "last",
        "later",
        "limit",
        "mode",
        "name",
        "nbuckets",
        "parts",
        "series",
    )

    def __init__(self, m: MetricSpec, mode: Mode) -> None:
        self.name = m.name
        self.mode = mode
        self.floor = m.floor
        self.limit = m.definition.cap
        self.nbuckets = len(m.definition.buckets)
        self.series: dict[tuple[str, ...], Any] = {}
        # Partition -> [dropped by a reset, {key: [net, least]}, shares created since].
        self.parts: dict[str, list[Any]] = {}
        self.cleared = False  # a reset_all was seen
        # Partitions possibly created: before the first reset_all, the most after one, and
        # since the latest (an upper bound: one seen first may already exist in the store).
        self.first = self.later = self.last = 0

    def new(self, key: tuple[str, ...], cell: Any) -> Any:
        """Start the series ``key`` with ``cell`` (the generated code's call on a new key)."""
        if len(self.series) > self.limit:
            raise TooWide(self.name)
        self.series[key] = cell
        return cell

    def step(self, part: str, key: tuple[str, ...], d: int) -> None:
        """Partition ``part``'s share of series ``key`` goes up (1) or down (-1), floored."""
        if key not in self.series:
            self.new(key, None)
        entry = self.parts.get(part)
        if entry is None or not entry[2]:
            if entry is None:
                if len(self.parts) > self.limit:
                    raise TooWide(self.name)
                entry = self.parts[part] = [False, {}, False]
            entry[2] = True  # the store creates the partition here (or finds it)
            self.last += 1
            if self.cleared:
                self.later = max(self.later, self.last)
            else:
                self.first = self.last
        cell = entry[1].get(key)
        if cell is None:
            cell = entry[1][key] = [0, NEG_INF]
        cell[0] += d
        floor = self.floor
        if floor is not None:
            least = cell[1] + d
            cell[1] = floor if least < floor else least

    def reset(self, part: str) -> None:
        """Partition ``part`` is forgotten: its share so far no longer matters."""
        if part not in self.parts and len(self.parts) > self.limit:
            raise TooWide(self.name)
        self.parts[part] = [True, {}, False]

    def reset_all(self) -> None:
        """Every partition is forgotten: nothing before this matters for the shares."""
        self.parts.clear()
        self.cleared = True
        self.last = 0

    def take_parts(self) -> PartShares | None:
        """What the partitioned gauge gathered (None if nothing), emptied in place."""
        out = None
        if self.series or self.parts or self.cleared:
            out = PartShares(
                dict(self.series), self.cleared, dict(self.parts), self.first, self.later, self.last
            )
        self.clear()
        return out

    def clear(self) -> None:
        """Forget what was gathered; in place, since the bound program holds these objects."""
        self.series.clear()
        self.parts.clear()
        self.cleared = False
        self.first = self.later = self.last = 0


@dataclass(slots=True)
class PartShares:
    """A partitioned gauge's part of a ``Delta`` (see ``PartialSeries``); plain data."""

    keys: dict[tuple[str, ...], Any]  # series updated, in first-seen order
    cleared: bool
    parts: dict[str, list[Any]]
    first: int
    later: int
    last: int


class PartialInfo:
    """The latest label tuple of an info metric in the stretch, None when none was set."""

    __slots__ = ("current", "name")

    def __init__(self, m: MetricSpec) -> None:
        self.name = m.name
        self.current: tuple[str, ...] | None = None


@dataclass(slots=True)
class Delta:
    """What one stretch (or one part of it between replay steps) changed; plain data."""

    series: dict[str, Any]  # metric name -> its series dict, or an info metric's latest key
    counts: ReadCounts = field(default_factory=ReadCounts)
    invalid_values: dict[str, float] = field(default_factory=dict)
    label_values_too_long: dict[str, float] = field(default_factory=dict)
    exemplars_skipped: dict[str, float] = field(default_factory=dict)


class Partial:
    """A worker's partial state: what the generated partial program writes, and ``record``.

    It is a pipeline's sink (``lock``, ``record``), as a store is; ``take`` hands what was
    gathered over as a ``Delta`` and starts again, the bound program staying valid.
    """

    def __init__(self, spec: Spec) -> None:
        self.lock = threading.Lock()
        self.modes: dict[str, Mode] = {m.name: mode_of(m) for m in spec.metrics}
        self.states: dict[str, PartialSeries | PartialInfo] = {
            m.name: PartialInfo(m) if m.kind == "info" else PartialSeries(m, self.modes[m.name])
            for m in spec.metrics
        }
        self.invalid_values: dict[str, float] = dict.fromkeys(self.states, 0.0)
        self.label_values_too_long: dict[str, float] = dict.fromkeys(self.states, 0.0)
        self.exemplars_skipped: dict[str, float] = dict.fromkeys(self.states, 0.0)
        self._parsed = self._malformed = self._oversized = self._bytes = 0
        self._unstructured = self._partial = 0
        self._last: float | None = None

    def record(self, counts: ReadCounts) -> None:
        """``Store.record``'s counterpart; replay reads files, so rotations stay 0."""
        self._parsed += counts.parsed
        self._malformed += counts.malformed
        self._oversized += counts.oversized
        self._bytes += counts.bytes_read
        self._unstructured += counts.unstructured
        self._partial += counts.partial
        if counts.last_event_timestamp is not None:
            self._last = counts.last_event_timestamp

    def take(self) -> Delta:
        """What was gathered since the last ``take``, the state emptied in place."""
        series: dict[str, Any] = {}
        for name, s in self.states.items():
            if isinstance(s, PartialInfo):
                if s.current is not None:
                    series[name] = s.current
                    s.current = None
            elif s.mode == "parts":
                shares = s.take_parts()
                if shares is not None:
                    series[name] = shares
            elif s.series:
                # Copied and emptied in place: the bound program holds this very dict.
                series[name] = dict(s.series)
                s.series.clear()
        delta = Delta(
            series,
            ReadCounts(
                self._parsed,
                self._malformed,
                self._oversized,
                self._bytes,
                0,
                0,
                self._last,
                self._unstructured,
                self._partial,
            ),
            {k: v for k, v in self.invalid_values.items() if v},
            {k: v for k, v in self.label_values_too_long.items() if v},
            {k: v for k, v in self.exemplars_skipped.items() if v},
        )
        self.reset()
        return delta

    def reset(self) -> None:
        """Forget everything gathered (the stretch was given up, or taken)."""
        for s in self.states.values():
            if isinstance(s, PartialInfo):
                s.current = None
            else:
                s.clear()
        for d in (self.invalid_values, self.label_values_too_long, self.exemplars_skipped):
            for k in d:
                d[k] = 0.0
        self._parsed = self._malformed = self._oversized = self._bytes = 0
        self._unstructured = self._partial = 0
        self._last = None
