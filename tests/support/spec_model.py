"""The spec's meaning, interpreted one change at a time: the reference for both compiled targets.

The compiled program generates Python source for speed (store updates, CloudWatch observations).
This model reads the same ``Spec`` and applies docs/spec.md directly and slowly (event types,
matches on converted values, labels and closed sets, the label value bound, value validity), so
that the property tests can hold both generated targets to it. It leaves out the series cap: the
tests stay below it.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from log_exporter.limits import OVERFLOW
from log_exporter.spec import MetricSpec, Op, Rule, Spec, convert_label
from log_exporter.spec.cloudwatch import LabelSource, Observation
from log_exporter.spec.model import Match
from log_exporter.spec.paths import read_path
from log_exporter.store import Snapshot

Event = dict[str, Any]
Key = tuple[str, ...]

_FMAX = sys.float_info.max
# The kind of CloudWatch observation each op gives; the other ops are not published.
_KINDS = {"inc": "sum", "observe": "distribution"}


@dataclass(frozen=True, slots=True)
class Derived:
    """One metric change an event causes."""

    metric: MetricSpec
    labels: Key
    # "inc" and "dec" add/subtract ``value``; "set" sets it; "observe" records an observation;
    # "info" replaces the info series (``value`` is 1); "reset" forgets ``partition``'s shares,
    # "reset_all" every share (every series becomes 0).
    op: Op
    value: float
    # CloudWatch dimension name -> value; empty when the metric has no CloudWatch declaration.
    dimensions: tuple[tuple[str, str], ...]
    # How many of ``labels`` were over the metric's label_value_max_bytes (now __overflow__).
    too_long: int = 0
    # A partitioned gauge's partition (bounded like an open label, not counted); else None.
    partition: str | None = None


@dataclass
class Expected:
    """What a store should hold: metric name -> series (as in a snapshot), invalid values and
    label values too long."""

    series: dict[str, dict[Key, Any]]
    invalid: dict[str, float] = field(default_factory=dict)
    too_long: dict[str, float] = field(default_factory=dict)
    # Partitioned gauges: metric -> partition -> series -> that partition's share. A snapshot
    # holds no shares, so the model starts with none (the tests start from empty stores).
    parts: dict[str, dict[str, dict[Key, float]]] = field(default_factory=dict)


def converted(source: LabelSource, event: Event) -> str:
    """A label's (or dimension's) value: the contract's conversion, then the closed set."""
    v = read_path(event, source.path)
    if v is None:
        return "unknown"
    out = convert_label(v)
    if source.values is not None and out not in source.values:
        return "other"
    return out


def too_long(source: LabelSource, event: Event, max_bytes: int) -> bool:
    """True when an open label's value is longer than ``max_bytes`` in UTF-8."""
    value = converted(source, event).encode("utf-8", "surrogatepass")
    return source.values is None and len(value) > max_bytes


def text(source: LabelSource, event: Event, max_bytes: int) -> str:
    """The value as exposed: ``converted``, or __overflow__ when ``too_long``."""
    return OVERFLOW if too_long(source, event, max_bytes) else converted(source, event)


def number(v: Any, nonnegative: bool) -> float | None:
    """A usable value: an int or float within a double's range, not negative if so required."""
    if type(v) not in (int, float) or not -_FMAX <= v <= _FMAX:
        return None
    if nonnegative and v < 0:
        return None
    return float(v)


class SpecModel:
    """The changes a spec derives from an event, interpreted from the ``Spec`` itself."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def _fed(self, event: Event) -> Iterator[tuple[MetricSpec, Rule]]:
        """Each (metric, rule) the event feeds, its match passed, in spec order."""
        et = read_path(event, self.spec.input.event_field)
        for m in self.spec.metrics:
            for r in m.rules:
                if r.events is not None and (type(et) is not str or et not in r.events):
                    continue
                if all(_passes(t, event) for t in r.match):
                    yield m, r

    def _value(self, m: MetricSpec, r: Rule, event: Event) -> float | None:
        if r.value is None:
            return 1.0
        v = number(read_path(event, r.value_path), nonnegative=m.kind != "gauge")
        if v is None or r.scale == 1.0:
            return v
        return v * r.scale if abs(v) <= _FMAX / r.scale else None

    def derive(self, event: Event) -> list[Derived]:
        """Every metric change ``event`` causes; an invalid value derives nothing."""
        out: list[Derived] = []
        for m, r in self._fed(event):
            value = self._value(m, r, event)
            if value is None:
                continue
            dims = () if m.cloudwatch is None else m.cloudwatch.dimensions
            bound = m.label_value_max_bytes
            out.append(
                Derived(
                    m,
                    tuple(text(lb, event, bound) for lb in m.labels),
                    r.op,
                    value,
                    tuple((d.name, text(d.source, event, bound)) for d in dims),
                    sum(too_long(lb, event, bound) for lb in m.labels),
                    None if m.partition is None else text(m.partition, event, bound),
                )
            )
        return out

    def invalid(self, event: Event) -> list[str]:
        """The metrics whose update ``event`` skips for an invalid value, once per rule."""
        return [m.name for m, r in self._fed(event) if self._value(m, r, event) is None]

    def observations(self, event: Event) -> list[Observation]:
        """What the CloudWatch shipper gets from ``event`` before its dimension cap."""
        out: list[Observation] = []
        for d in self.derive(event):
            cw = d.metric.cloudwatch
            kind: Any = _KINDS.get(d.op)
            if cw is not None and kind is not None:
                out.append(Observation(cw.name, d.dimensions, d.value, cw.unit, kind))
        return out

    def expected(self, before: Snapshot, events: Iterable[Event]) -> Expected:
        """The store's metrics after ``events``, from its snapshot ``before`` them."""
        series = {
            s.definition.name: {k: (v[:] if type(v) is list else v) for k, v in s.series.items()}
            for s in before.metrics
        }
        out = Expected(series, dict(before.invalid_values), dict(before.label_values_too_long))
        for event in events:
            for d in self.derive(event):
                _apply(out.series[d.metric.name], d, out.parts.setdefault(d.metric.name, {}))
                out.too_long[d.metric.name] += d.too_long
            for name in self.invalid(event):
                out.invalid[name] += 1.0
        return out


def _passes(t: Match, event: Event) -> bool:
    """docs/spec.md's "match" operators, applied directly."""
    v = read_path(event, t.path)
    label = convert_label(v)
    if t.op == "in":
        return label in t.values
    if t.op == "not":
        return label not in t.values
    if t.op == "prefix":
        return any(label.startswith(p) for p in t.values)
    if t.op == "regex":
        import re

        return re.search(t.values[0], label) is not None
    if type(v) not in (int, float):
        return False
    compared: dict[str, bool] = {
        "ge": v >= t.number, "gt": v > t.number, "le": v <= t.number, "lt": v < t.number,
    }  # fmt: skip
    return compared[t.op]


def _apply(series: dict[Key, Any], d: Derived, parts: dict[str, dict[Key, float]]) -> None:
    m = d.metric
    if d.op == "reset_all":
        parts.clear()
        for k in series:
            series[k] = 0.0
    elif d.op == "reset":
        assert d.partition is not None
        for k in parts.pop(d.partition, {}):
            series[k] = sum(shares.get(k, 0.0) for shares in parts.values())
    elif d.partition is not None:
        shares = parts.setdefault(d.partition, {})
        mine = shares.get(d.labels, 0.0)
        new = d.value if d.op == "set" else mine + (-d.value if d.op == "dec" else d.value)
        if m.floor is not None and new < m.floor:
            new = m.floor
        shares[d.labels] = new
        series[d.labels] = series.get(d.labels, 0.0) + (new - mine)
    elif m.kind == "info":
        series.clear()
        series[d.labels] = 1.0
    elif m.kind == "histogram":
        bounds = m.definition.buckets
        cells = series.setdefault(d.labels, [0.0] * (len(bounds) + 2))
        cells[bisect_left(bounds, d.value)] += 1.0
        cells[-1] += d.value
    else:
        if d.op == "set":
            new = d.value
        else:
            new = series.get(d.labels, 0.0) + (-d.value if d.op == "dec" else d.value)
        series[d.labels] = new if m.floor is None or new >= m.floor else m.floor
