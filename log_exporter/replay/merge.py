"""The exact merge of replay workers' ``Delta``s into a ``Store``, in log order.

What each mode keeps, and why the merge of it ends where one reader would, bit for bit, is in
``log_exporter.replay.partial``; ``Merger.mergeable`` says when it cannot (the stretch is then
replayed in order instead).
"""

from __future__ import annotations

from functools import reduce
from operator import add
from typing import Any, Final

from log_exporter.replay.partial import (
    BASE,
    CHANGES,
    EVENTS,
    HIST_COUNTS,
    HIST_VALUES,
    LEAST,
    NET,
    Delta,
    Mode,
    PartShares,
    mode_of,
)
from log_exporter.spec.model import Spec
from log_exporter.store import CounterState, GaugeState, HistogramState, InfoState, Store

__all__ = ["Merger"]

# Modes whose result depends on the order of the events when several keys share a series.
_ORDERED: Final = frozenset({"amounts", "hist", "ops", "parts"})


def _events(mode: Mode, cell: Any) -> int:
    """How many events a partial series cell holds (each one redirected when it overflows)."""
    if mode == "count":
        return int(cell)
    if mode == "amounts":
        return len(cell)
    if mode == "hist":
        return len(cell[HIST_VALUES])
    return int(cell[EVENTS])


class Merger:
    """Merges deltas of one spec's partial states into a store of that spec, in log order."""

    def __init__(self, spec: Spec) -> None:
        self.modes: dict[str, Mode] = {m.name: mode_of(m) for m in spec.metrics}
        self.floors: dict[str, float | None] = {m.name: m.floor for m in spec.metrics}

    def mergeable(self, store: Store, deltas: list[Delta]) -> bool:
        """Whether ``deltas``, applied in order, reproduce one reader exactly (see module doc).

        False when a metric whose result depends on the order of its events would send a new
        series to ``__overflow__``: there the events of several keys interleave; and when a
        partitioned gauge could create a partition past its cap (which would share the overflow
        partition's, in the order of the events).
        """
        for name, state in store.states.items():
            mode = self.modes[name]
            if isinstance(state, InfoState):
                continue
            if mode not in _ORDERED and not (mode == "steps" and self.floors[name] is not None):
                continue
            real = state.real
            cap = state.definition.cap
            added: set[tuple[str, ...]] = set()
            if mode == "parts":
                assert isinstance(state, GaugeState)
                if not _parts_fit(state, name, deltas):
                    return False
            for d in deltas:
                data = d.series.get(name, ())
                for k in data.keys if isinstance(data, PartShares) else data:
                    if k in state.series or k in added:
                        continue
                    if real >= cap:
                        return False
                    real += 1
                    added.add(k)
        return True

    def apply(self, store: Store, delta: Delta) -> None:
        """Add ``delta`` to ``store`` as one reader would have (after ``mergeable``)."""
        states = store.states
        for name, data in delta.series.items():
            state = states[name]
            if isinstance(state, InfoState):
                state.current = data
                continue
            if isinstance(data, PartShares):
                assert isinstance(state, GaugeState)
                _apply_parts(state, data)
                continue
            assert isinstance(state, CounterState | GaugeState | HistogramState)
            _apply_series(state, self.modes[name], self.floors[name], data)
        store.record(delta.counts)
        for name, v in delta.invalid_values.items():
            store.invalid_values[name] += v
        for name, v in delta.label_values_too_long.items():
            store.label_values_too_long[name] += v
        for name, v in delta.exemplars_skipped.items():
            store.exemplars_skipped[name] += v


def _parts_fit(state: GaugeState, name: str, deltas: list[Delta]) -> bool:
    """Whether no partition the deltas create can meet the cap (see ``mergeable``)."""
    cap = state.definition.cap
    held = len(state.parts)  # at most this many partitions when a delta starts
    for d in deltas:
        data = d.series.get(name)
        if data is None:
            continue
        assert isinstance(data, PartShares)
        # The j-th partition created finds at most held + j - 1 others: below the cap.
        if held + data.first > cap or data.later > cap:
            return False
        held = data.last if data.cleared else held + data.first
    return True


def _apply_parts(state: GaugeState, data: PartShares) -> None:
    """A partitioned gauge's shares, as the store's program and resets would have left them.

    Exact because ``mergeable`` held: no key or partition meets a cap, and every value is a
    whole number, so each series stays the sum of its shares however the changes are added.
    """
    series = state.series
    for key in data.keys:
        if key not in series:
            state.real += 1
            series[key] = 0.0
    if data.cleared:
        state.reset_all()
    parts = state.parts
    for name, (dropped, cells, _) in data.parts.items():
        if dropped:
            state.reset_part(name)
        if not cells:
            continue
        shares = parts.get(name)
        if shares is None:
            shares = parts[name] = {}
        for key, (net, least) in cells.items():
            mine = shares.get(key, 0.0)
            value = mine + net
            new = float(least) if value < least else value
            shares[key] = new
            series[key] = series.get(key, 0.0) + (new - mine)


# One branch per metric kind and merge mode: the whole merge rule of a series
# read in one place.
def _apply_series(  # noqa: C901
    state: CounterState | GaugeState | HistogramState,
    mode: Mode,
    floor: float | None,
    data: dict[tuple[str, ...], Any],
) -> None:
    series: dict[tuple[str, ...], Any] = state.series
    cap = state.definition.cap
    for key, cell in data.items():
        target = key
        if key not in series:
            # The admission of a new series, as ``admit`` does on its first event.
            if state.real < cap:
                state.real += 1
            else:
                target = state.overflow_key
                state.overflowed += _events(mode, cell)
        if mode == "hist":
            assert isinstance(state, HistogramState)
            cells = series.get(target)
            if cells is None:
                cells = series[target] = state.empty()
            counts, values = cell[HIST_COUNTS], cell[HIST_VALUES]
            if state.bounds:  # else the native buckets count them (``HistogramState``)
                for i, n in enumerate(counts):
                    if n:
                        cells[i] += n
            cells[-1] = reduce(add, values, cells[-1])
            if state.native_def is not None:
                # Where the bucket limit halves the resolution depends on the order of the
                # values: observed one by one, in order, as one reader would.
                for v in values:
                    state.observe_native(target, v)
            continue
        current = series.get(target, 0.0)
        if mode == "count":
            series[target] = current + cell
        elif mode == "amounts":
            series[target] = reduce(add, cell, current)
        elif mode == "steps":
            net, least = cell[NET], cell[LEAST]
            value = current + net
            series[target] = float(least) if value < least else value
        else:
            base, changes = cell[BASE], cell[CHANGES]
            value = current if base is None else base
            if floor is None:
                value = reduce(add, changes, value)
            else:
                for change in changes:
                    value = value + change
                    if value < floor:
                        value = floor
            series[target] = value
