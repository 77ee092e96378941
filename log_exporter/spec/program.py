"""A compiled spec: ``Program`` binds one generated function per event type to a store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from log_exporter.cloudwatch.schema import Source
from log_exporter.spec.codegen import Apply, Event, store_function
from log_exporter.spec.labels import convert_label
from log_exporter.spec.model import LabelSpec, MetricSpec, Op, Rule, Spec
from log_exporter.store import Store

__all__ = ["Derived", "Program", "compile_spec"]

_FMAX: Final = 1.7976931348623157e308  # sys.float_info.max: beyond it an int is not a double.


def _extractor(label: Source) -> Callable[[Event], str]:
    """A function event -> label text, with the closed set looked up in a prebuilt dict."""
    fld = label.field
    if label.values is None:

        def open_value(ev: Event) -> str:
            v = ev.get(fld)
            return v if type(v) is str else convert_label(v)

        return open_value

    closed_get = {v: v for v in label.values}.get

    def closed_value(ev: Event) -> str:
        v = ev.get(fld)
        if type(v) is str:
            return closed_get(v, "other")
        if v is None:
            return "unknown"
        return closed_get(convert_label(v), "other")

    return closed_value


def _key_function(labels: tuple[LabelSpec, ...]) -> Callable[[Event], tuple[str, ...]]:
    """A function event -> label tuple, unrolled for the common widths to save calls."""
    exs = [_extractor(lb) for lb in labels]
    if not exs:
        return lambda ev: ()
    if len(exs) == 1:
        (e0,) = exs
        return lambda ev: (e0(ev),)
    if len(exs) == 2:
        e0, e1 = exs
        return lambda ev: (e0(ev), e1(ev))
    if len(exs) == 3:
        e0, e1, e2 = exs
        return lambda ev: (e0(ev), e1(ev), e2(ev))
    return lambda ev: tuple([e(ev) for e in exs])


def _matcher(match: tuple[tuple[str, tuple[str, ...]], ...]) -> Callable[[Event], bool]:
    pairs = tuple((f, frozenset(vs)) for f, vs in match)

    def matches(ev: Event) -> bool:
        for fld, accepted in pairs:
            v = ev.get(fld)
            if (v if type(v) is str else convert_label(v)) not in accepted:
                return False
        return True

    return matches


def _number(v: Any, nonnegative: bool) -> float | None:
    """A usable numeric value, or None when it is missing, not a number, or not finite."""
    t = type(v)
    if (t is float or t is int) and -_FMAX <= v <= _FMAX and (v >= 0 or not nonnegative):
        return float(v)
    return None


@dataclass(frozen=True, slots=True)
class Derived:
    """One metric change an event causes, for consumers other than the store (CloudWatch)."""

    metric: MetricSpec
    labels: tuple[str, ...]
    # "inc" and "dec" add/subtract ``value``; "set" sets it; "observe" records an observation;
    # "info" replaces the info series (``value`` is 1).
    op: Op
    value: float
    # CloudWatch dimension name -> value; empty when the metric has no CloudWatch declaration.
    dimensions: tuple[tuple[str, str], ...]


class Program:
    """A compiled spec: ``bind`` builds the hot path against a store; ``derive`` is general."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        by_event: dict[str, list[tuple[MetricSpec, Rule]]] = {}
        for m in spec.metrics:
            for r in m.rules:
                for et in r.events:
                    by_event.setdefault(et, []).append((m, r))
        self._by_event = {et: tuple(pairs) for et, pairs in by_event.items()}
        self._keys = {m.name: _key_function(m.labels) for m in spec.metrics}
        self._matchers = {
            r: _matcher(r.match) for m in spec.metrics for r in m.rules if r.match
        }  # fmt: skip
        self._dims = {
            m.name: tuple((d.name, _extractor(d.source)) for d in m.cloudwatch.dimensions)
            for m in spec.metrics
            if m.cloudwatch is not None
        }

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._by_event)

    def bind(self, store: Store) -> dict[str, Apply]:
        """Event type -> one function that applies such an event to ``store``'s metric state.

        The functions hold the store's state objects: after ``store.reconfigure`` bind again.
        Raises ValueError if the store does not hold this spec's metrics.
        """
        for m in self.spec.metrics:
            state = store.states.get(m.name)
            if state is None or not state.definition.same_shape(m.definition):
                raise ValueError(f"store has no metric {m.name!r} of this shape; reconfigure it")
        return {et: store_function(et, pairs, store) for et, pairs in self._by_event.items()}

    def derive(self, event: Event) -> list[Derived]:
        """Every metric change ``event`` causes, without touching any store.

        Invalid values (see the contract) derive nothing, as in the store; they are not counted.
        """
        et = event.get("event")
        pairs = self._by_event.get(et) if type(et) is str else None
        if not pairs:
            return []
        out: list[Derived] = []
        for m, r in pairs:
            if r.match and not self._matchers[r](event):
                continue
            amount = 1.0
            if r.value is not None:
                n = _number(event.get(r.value), nonnegative=m.kind != "gauge")
                if n is None:
                    continue
                amount = n
            dims = self._dims.get(m.name, ())
            out.append(
                Derived(
                    m,
                    self._keys[m.name](event),
                    r.op,
                    amount,
                    tuple((dn, ex(event)) for dn, ex in dims),
                )
            )
        return out


def compile_spec(spec: Spec) -> Program:
    """Compile a validated spec into a ``Program``."""
    return Program(spec)
