"""Python source generated from a spec: for each event type, one function applying it to a store."""

from __future__ import annotations

import builtins
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Final

from log_exporter.spec.labels import convert_label
from log_exporter.spec.model import LabelSpec, MetricSpec, Rule
from log_exporter.store import CounterState, GaugeState, HistogramState, InfoState, Store

__all__ = ["Apply", "Event", "store_function"]

Event = dict[str, Any]
Apply = Callable[[Event], None]

_FMAX: Final = 1.7976931348623157e308  # sys.float_info.max: beyond it an int is not a double.

# Each event type gets one function, generated from the spec as Python source when the program is
# bound. For speed: a field read by several metrics is read and converted once, the rules run
# without a call each, and closed sets are plain set lookups. Label values are pure functions of
# the event, so computing them before a value check (or once for several rules) changes nothing;
# those of a rule behind a ``match`` are computed behind it, only when it matches.


_TOP: Final = "    "  # the indentation of the generated function's body


class _Scope:
    """The generated statements of one block, and the values already computed on its path."""

    def __init__(self, gen: _Generator, indent: str, known: dict[tuple[Any, ...], str]) -> None:
        self.gen = gen
        self.indent = indent
        self.known = dict(known)  # what this block's path has computed: key -> variable

    def emit(self, line: str) -> None:
        self.gen.lines.append(self.indent + line)

    def nested(self, header: str) -> _Scope:
        self.emit(header)
        return _Scope(self.gen, self.indent + "    ", self.known)

    def value(self, key: tuple[Any, ...], make: Callable[[str], str]) -> str:
        var = self.known.get(key)
        if var is None:
            var = self.known[key] = self.gen.name("v")
            self.emit(f"{var} = {make(var)}")
        return var

    def raw(self, fld: str) -> str:
        if self.indent == _TOP:
            # Read in the function's prelude (see ``store_function``), not here.
            var = self.known.get(("raw", fld))
            if var is None:
                var = self.known[("raw", fld)] = self.gen.name("v")
                self.gen.prelude.append((var, fld))
            return var
        return self.value(("raw", fld), lambda _: f"ev.get({fld!r})")

    def text(self, fld: str) -> str:
        """The field as label text (``convert_label``), as for an open label or a match."""
        r = self.raw(fld)
        return self.value(("text", fld), lambda _: f"{r} if type({r}) is str else convert({r})")

    def label(self, lb: LabelSpec) -> str:
        if lb.values is None:
            return self.text(lb.field)
        r = self.raw(lb.field)
        vs = self.gen.const(frozenset(lb.values), "closed")
        return self.value(
            ("closed", lb.field, lb.values),
            lambda _: (
                f"({r} if {r} in {vs} else 'other') if type({r}) is str else "
                f"'unknown' if {r} is None else _closed(convert({r}), {vs})"
            ),
        )

    def key(self, labels: tuple[LabelSpec, ...]) -> str:
        values = [self.label(lb) for lb in labels]
        return f"({values[0]},)" if len(values) == 1 else f"({', '.join(values)})"


def _closed(text: str, values: frozenset[str]) -> str:
    return text if text in values else "other"


class _Generator:
    """Python source for one event type's function, and the objects it refers to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        # (variable, field) read unconditionally at the start of the function.
        self.prelude: list[tuple[str, str]] = []
        self.namespace: dict[str, Any] = {
            "convert": convert_label,
            "_closed": _closed,
            "bisect_left": bisect_left,
        }
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, obj: object, prefix: str) -> str:
        name = self.name(prefix)
        self.namespace[name] = obj
        return name


def store_function(
    event_type: str, pairs: tuple[tuple[MetricSpec, Rule], ...], store: Store
) -> Apply:
    """The function applying an event of ``event_type`` to ``store``: ``pairs`` in their order."""
    gen = _Generator()
    top = _Scope(gen, _TOP, {})
    for m, r in pairs:
        scope = top
        if r.match:
            tests = [
                f"{scope.text(f)} in {gen.const(frozenset(vs), 'accepted')}" for f, vs in r.match
            ]
            scope = scope.nested(f"if {' and '.join(tests)}:")
        _store_rule(scope, m, r, store)
    # For speed, the fields are read with subscripts (much cheaper than calls to ``get``), and
    # all again with ``get`` in the rare event that lacks one of them.
    prelude = []
    if gen.prelude:
        prelude = [
            "    try:",
            *(f"        {var} = ev[{fld!r}]" for var, fld in gen.prelude),
            "    except KeyError:",
            *(f"        {var} = ev.get({fld!r})" for var, fld in gen.prelude),
        ]
    source = "\n".join(["def apply(ev):", *prelude, *gen.lines, "    return"])
    exec(builtins.compile(source, f"<spec program for {event_type!r}>", "exec"), gen.namespace)
    fn: Apply = gen.namespace["apply"]
    return fn


def _store_rule(scope: _Scope, m: MetricSpec, r: Rule, store: Store) -> None:
    """The statements applying one rule of metric ``m`` to its state in ``store``."""
    gen = scope.gen
    state = store.states[m.name]
    key = scope.key(m.labels)
    if isinstance(state, InfoState):
        scope.emit(f"{gen.const(state, 'info')}.current = {key}")
        return
    invalid = f"{gen.const(store.invalid_values, 'invalid')}[{m.name!r}] += 1.0"
    if isinstance(state, HistogramState):
        assert r.value is not None  # the loader requires it
        v = scope.raw(r.value)
        series_get = gen.const(state.series.get, "series_get")
        new_series = gen.const(state.new_series, "new_series")
        bounds = gen.const(state.bounds, "bounds")
        ok = scope.nested(f"if (type({v}) is float or type({v}) is int) and 0 <= {v} <= {_FMAX!r}:")
        ok.emit(f"k = {key}")
        ok.emit(f"cells = {series_get}(k)")
        ok.emit("if cells is None:")
        ok.emit(f"    cells = {new_series}(k)")
        ok.emit(f"cells[bisect_left({bounds}, {v})] += 1.0")
        ok.emit(f"cells[-1] += {v}")
        scope.nested("else:").emit(invalid)
        return
    series = gen.const(state.series, "series")
    if isinstance(state, GaugeState):
        amount = "1.0"
        body = scope
        if r.value is not None:
            v = scope.raw(r.value)
            body = scope.nested(
                f"if (type({v}) is float or type({v}) is int) and {-_FMAX!r} <= {v} <= {_FMAX!r}:"
            )
            amount = "amount"
            body.emit(f"amount = float({v})")
        body.emit(f"k = {key}")
        body.emit(f"current = {series}.get(k)")
        body.emit("if current is None:")
        body.emit(f"    k = {gen.const(state.admit, 'admit')}(k)")
        body.emit(f"    current = {series}.get(k, 0.0)")
        sign = -1.0 if r.op == "dec" else 1.0
        body.emit(f"new = {amount}" if r.op == "set" else f"new = current + {sign!r} * {amount}")
        if m.floor is None:
            body.emit(f"{series}[k] = new")
        else:
            floor = gen.const(m.floor, "floor")
            body.emit(f"{series}[k] = {floor} if new < {floor} else new")
        if r.value is not None:
            scope.nested("else:").emit(invalid)
        return
    assert isinstance(state, CounterState)
    add_new = gen.const(state.add_new, "add_new")
    if r.value is None:
        scope.emit(f"k = {key}")
        scope.nested("try:").emit(f"{series}[k] += 1.0")
        scope.nested("except KeyError:").emit(f"{add_new}(k, 1.0)")
        return
    v = scope.raw(r.value)
    ok = scope.nested(f"if (type({v}) is float or type({v}) is int) and 0 <= {v} <= {_FMAX!r}:")
    ok.emit(f"k = {key}")
    ok.nested("try:").emit(f"{series}[k] += {v}")
    ok.nested("except KeyError:").emit(f"{add_new}(k, float({v}))")
    scope.nested("else:").emit(invalid)
