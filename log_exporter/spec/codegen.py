"""Python source generated from a spec, per event type: the shared generator and two targets.

``store_function`` applies an event to a ``Store`` (the hot path); ``observation_function`` gives
the CloudWatch observations of an event. Both are written by the same generator (``Generator``
and its ``Scope``: field reads, label conversion, matches, value checks, the label bound), so the
spec's meaning is written once; a third target, a replay worker's partial state, is written by
the same generator from ``log_exporter.replay.target``, which owns that state's format.
"""

from __future__ import annotations

import builtins
import functools
import math
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any, Final

from log_exporter.limits import EXEMPLAR_LABELS_MAX_CHARS, OVERFLOW
from log_exporter.native import NativeDef, fast_bounds
from log_exporter.parse import time_parser
from log_exporter.spec.cloudwatch import LabelSource, Observation
from log_exporter.spec.labels import convert_label
from log_exporter.spec.model import InputSpec, Match, MetricSpec, Rule
from log_exporter.spec.paths import Path, fast_expr, path_expr
from log_exporter.spec.regex import compile_regex
from log_exporter.store import CounterState, GaugeState, HistogramState, InfoState, Store

__all__ = [
    "Apply",
    "Cut",
    "Event",
    "Generator",
    "Observe",
    "Pairs",
    "Scope",
    "exemplar_fits",
    "observation_function",
    "scaled",
    "store_function",
    "valid_test",
]

Event = dict[str, Any]
# A store or replay function applies a dict, or a typed event when bound with ``fields``.
Apply = Callable[[Any], None]
Observe = Callable[[Event], list[Observation]]
# The (metric, rule) pairs an event type feeds, in spec order.
Pairs = tuple[tuple[MetricSpec, Rule], ...]

_FMAX: Final = 1.7976931348623157e308  # sys.float_info.max: beyond it an int is not a double.

# Each event type gets one function per target, generated from the spec as Python source when
# the program is bound (or, for CloudWatch, first asked). For speed: a field read by several
# metrics is read and converted once, the rules run without a call each, and closed sets are
# plain set lookups. Label values are pure functions of the event, so computing them before a
# value check (or once for several rules) changes nothing; those of a rule behind a ``match`` are
# computed behind it, only when it matches.
#
# An open label's value longer than the metric's ``label_value_max_bytes`` becomes ``__overflow__``
# (docs/spec.md, "Label value length"). The test sits where the value is used (the key of an
# update, the dimensions of an observation), so the store counts each value cut once per update
# it would have made: a ``len`` of the text, compared with the bound over 4 (no UTF-8 character
# is longer than 4 bytes), and only a longer text is encoded, in ``Cut``.

_TOP: Final = "    "  # the indentation of the generated function's body
# The ops CloudWatch publishes and the kind of their observations; dec, set and info are not
# published (so of a gauge only its inc rules are, as sums).
_KINDS: Final = {"inc": "sum", "observe": "distribution"}


class Scope:
    """The generated statements of one block, and the values already computed on its path."""

    def __init__(self, gen: Generator, indent: str, known: dict[tuple[Any, ...], str]) -> None:
        self.gen = gen
        self.indent = indent
        self.known = dict(known)  # what this block's path has computed: key -> variable

    def emit(self, line: str) -> None:
        self.gen.lines.append(self.indent + line)

    def nested(self, header: str) -> Scope:
        self.emit(header)
        return Scope(self.gen, self.indent + "    ", self.known)

    def value(self, key: tuple[Any, ...], make: Callable[[str], str]) -> str:
        var = self.known.get(key)
        if var is None:
            var = self.known[key] = self.gen.name("v")
            self.emit(f"{var} = {make(var)}")
        return var

    def raw(self, fld: Path) -> str:
        """The variable holding the value at path ``fld`` (None when missing)."""
        if self.indent == _TOP:
            # Read in the function's prelude (see ``Generator.function``), not here.
            var = self.known.get(("raw", fld))
            if var is None:
                var = self.known[("raw", fld)] = self.gen.name("v")
                self.gen.prelude.append((var, fld))
            return var
        tmp = self.gen.name("t") if len(fld) > 1 else ""  # a walrus target, for a path only
        return self.value(("raw", fld), lambda _: path_expr(fld, "ev", tmp, self.gen.fields))

    def text(self, fld: Path) -> str:
        """The field as label text (``convert_label``), as for an open label or a match."""
        r = self.raw(fld)
        return self.value(("text", fld), lambda _: f"{r} if type({r}) is str else convert({r})")

    def label(self, fld: Path, values: tuple[str, ...] | None) -> str:
        """The field as the text of a label (or dimension) with the closed set ``values``."""
        if values is None:
            return self.text(fld)
        r = self.raw(fld)
        # The set's own string for a value in it (interned): the label tuple built from it then
        # matches a series key by identity, not by comparing the event's fresh string byte by
        # byte; one dict lookup in C does both the test and the swap.
        canonical = self.gen.const({v: v for v in values}.get, "closed")
        return self.value(
            ("closed", fld, values),
            lambda _: (
                f"{canonical}({r}, 'other') if type({r}) is str else "
                f"'unknown' if {r} is None else {canonical}(convert({r}), 'other')"
            ),
        )

    def bounded(self, lb: LabelSource, cut: str, max_bytes: int) -> str:
        """The expression of ``lb``'s value, an open one bounded by ``cut`` (a ``Cut``)."""
        v = self.label(lb.path, lb.values)
        if lb.values is not None:
            return v  # a closed set's values are the spec's own
        return f"({v} if len({v}) <= {max_bytes // 4} else {cut}({v}))"

    def key(self, m: MetricSpec, cut: str) -> str:
        """The expression of the label tuple of ``m``, its open values bounded by ``cut``."""
        return _tuple([self.bounded(lb, cut, m.label_value_max_bytes) for lb in m.labels])


class Cut:
    """The slow path of the bound: ``text`` itself if short enough in UTF-8, else ``OVERFLOW``,
    counted in ``counts[metric]`` when the store target gives ``counts``."""

    __slots__ = ("counts", "max_bytes", "metric")

    def __init__(self, max_bytes: int, counts: dict[str, float] | None, metric: str) -> None:
        self.max_bytes = max_bytes
        self.counts = counts
        self.metric = metric

    def __call__(self, text: str) -> str:
        # "surrogatepass": a lone surrogate (only Python callers can give one) still has a size.
        if len(text) <= self.max_bytes and len(text.encode("utf-8", "surrogatepass")) <= (
            self.max_bytes
        ):
            return text
        if self.counts is not None:
            self.counts[self.metric] += 1.0
        return OVERFLOW


def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def valid_test(v: str, nonnegative: bool, scale: float = 1.0) -> str:
    """The test that ``v`` holds a usable number (docs/spec.md, "Invalid values"), one that
    stays a double once multiplied by ``scale``."""
    high = _FMAX if scale <= 1.0 else _FMAX / scale
    low = "0" if nonnegative else repr(-high)
    return f"(type({v}) is float or type({v}) is int) and {low} <= {v} <= {high!r}"


def scaled(scope: Scope, scale: float, v: str) -> str:
    """The amount of the valid raw value ``v``: itself, or times the rule's ``scale``."""
    if scale == 1.0:
        return v
    return scope.value(("scaled", v, scale), lambda _: f"{v} * {scale!r}")


class Generator:
    """Python source for one event type's function, and the objects it refers to."""

    def __init__(
        self, spec_input: InputSpec | None = None, fields: Mapping[str, str] | None = None
    ) -> None:
        """``fields``: the function reads typed events (``log_exporter.spec.typed``), whose
        attributes these are of the top-level keys, instead of dicts."""
        self.input = InputSpec() if spec_input is None else spec_input
        self.fields = fields
        self.lines: list[str] = []
        # (variable, path) read unconditionally at the start of the function.
        self.prelude: list[tuple[str, Path]] = []
        self.namespace: dict[str, Any] = {
            "convert": convert_label,
            "bisect_left": bisect_left,
            "len": len,  # found in the namespace, before the builtins
        }
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, obj: object, prefix: str) -> str:
        name = self.name(prefix)
        self.namespace[name] = obj
        return name

    def rules(self, pairs: Pairs, rule: Callable[[Scope, MetricSpec, Rule], None]) -> None:
        """The statements of ``pairs`` in order, each (by ``rule``) behind its match if any."""
        top = Scope(self, _TOP, {})
        for m, r in pairs:
            scope = top
            if r.match:
                tests = [self.match_test(scope, t) for t in r.match]
                scope = scope.nested(f"if {' and '.join(tests)}:")
            rule(scope, m, r)

    def match_test(self, scope: Scope, t: Match) -> str:
        """The expression of one test of a rule's ``match``."""
        if t.op == "in":
            return f"{scope.text(t.path)} in {self.const(frozenset(t.values), 'accepted')}"
        if t.op == "not":
            return f"{scope.text(t.path)} not in {self.const(frozenset(t.values), 'refused')}"
        if t.op == "prefix":
            return f"{scope.text(t.path)}.startswith({self.const(t.values, 'prefixes')})"
        if t.op == "regex":
            search = self.const(compile_regex(t.values[0]), "search")
            return f"{search}({scope.text(t.path)}) is not None"
        r = scope.raw(t.path)
        cmp = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[t.op]
        return f"(type({r}) is int or type({r}) is float) and {r} {cmp} {t.number!r}"

    def event_time(self, scope: Scope) -> str:
        """The event's time as an exemplar keeps it: the raw RFC 3339 text (turned into seconds
        only when rendered), or the Unix seconds of another format (None when unreadable)."""
        spec_input = self.input
        raw = scope.raw(spec_input.timestamp_field)
        if spec_input.timestamp_format == "rfc3339":
            return raw
        fn = self.const(time_parser(spec_input.timestamp_format), "time")
        return scope.value(("time", raw), lambda _: f"{fn}({raw})")

    def function(self, name: str, head: list[str], tail: str, filename: str) -> Any:
        """The function ``name(ev)`` of the statements so far, between ``head`` and ``tail``."""
        # For speed, the fields are read with subscripts (much cheaper than calls to ``get``), and
        # all again with ``get`` in the rare event that lacks one of them.
        # A nested path is read with subscripts too, each object on the way once for all the
        # paths through it (``p1 = ev['a']``, then ``p1['b']``): a KeyError where a key is missing,
        # a TypeError where a value on the way is no object. A path with an array index is read
        # with its safe expression (a subscript would index a string too).
        # A typed event's top-level field is an attribute, always there (None when missing):
        # without a nested path there is nothing to catch.
        fields = self.fields
        prelude: list[str] = []
        if self.prelude:
            fast: list[str] = []
            objects: dict[Path, str] = {}  # a path's prefix -> the variable holding its object
            for var, fld in self.prelude:
                if fast_expr(fld, "ev") is None:
                    fast.append(f"{var} = {path_expr(fld, 'ev', self.name('t'), fields)}")
                    continue
                base = "ev"
                for i in range(1, len(fld)):
                    obj = objects.get(fld[:i])
                    if obj is None:
                        obj = objects[fld[:i]] = self.name("p")
                        fast.append(f"{obj} = {_step(base, fld[i - 1], fields)}")
                    base = obj
                fast.append(f"{var} = {_step(base, fld[-1], fields)}")
            nested = any(len(fld) > 1 for _, fld in self.prelude)
            if fields is not None and not nested:
                prelude = [_TOP + line for line in fast]
            else:
                prelude = [
                    "    try:",
                    *(f"        {line}" for line in fast),
                    "    except (KeyError, TypeError):" if nested else "    except KeyError:",
                    *(
                        f"        {var} = {path_expr(fld, 'ev', self.name('t'), fields)}"
                        for var, fld in self.prelude
                    ),
                ]
        lines = [f"def {name}(ev):", *prelude, *(_TOP + h for h in head), *self.lines, _TOP + tail]
        source = "\n".join(lines)
        code = _COMPILED.get((source, filename))
        if code is None:
            code = builtins.compile(source, filename, "exec")
            if len(_COMPILED) >= _COMPILED_KEPT:
                _COMPILED.clear()
            _COMPILED[(source, filename)] = code
        exec(code, self.namespace)
        return self.namespace[name]


def _step(base: str, key: str, fields: Mapping[str, str] | None) -> str:
    """The fast read of ``key`` in the object in ``base``: a subscript, or a typed event's
    attribute."""
    if base == "ev" and fields is not None:
        return f"ev.{fields[key]}"
    return f"{base}[{key!r}]"


# Compiled sources: a node's exporter binds the same program to a store per label set, and the
# source, whose names are the generator's and not the store's, is the same each time; compiling
# it was most of a binding's 8 ms. Bounded, as spec reloads bring new sources.
_COMPILED_KEPT = 256
_COMPILED: dict[tuple[str, str], Any] = {}


def store_function(
    event_type: str,
    pairs: Pairs,
    store: Store,
    *,
    exemplars: bool = True,
    spec_input: InputSpec | None = None,
    fields: Mapping[str, str] | None = None,
) -> Apply:
    """The function applying an event of ``event_type`` to ``store``'s state of each metric.

    ``exemplars=False`` (replay, which writes none) keeps no exemplar and only counts, as the
    store would, the updates whose exemplar could not be kept. ``spec_input`` says where the
    event's time is (for exemplars). ``fields``: the function applies typed events
    (``log_exporter.spec.typed``) with these attributes, not dicts.
    """
    gen = Generator(spec_input, fields)
    gen.rules(pairs, lambda scope, m, r: _store_rule(scope, m, r, store, exemplars))
    fn: Apply = gen.function("apply", [], "return", f"<spec program for {event_type!r}>")
    return fn


def observation_function(event_type: str, pairs: Pairs) -> Observe | None:
    """The function giving an event of ``event_type``'s CloudWatch observations, in spec order.

    None when no rule of the event type is published (no ``cloudwatch`` table, or an op that
    CloudWatch does not publish). An invalid value gives no observation, and is not counted.
    """
    published = tuple((m, r) for m, r in pairs if m.cloudwatch is not None and r.op in _KINDS)
    if not published:
        return None
    gen = Generator()
    gen.namespace["Observation"] = Observation
    gen.rules(published, _observation_rule)
    fn: Observe = gen.function(
        "observe", ["out = []"], "return out", f"<spec observations for {event_type!r}>"
    )
    return fn


def _store_rule(scope: Scope, m: MetricSpec, r: Rule, store: Store, exemplars: bool) -> None:
    """The statements applying one rule of metric ``m`` to its state in ``store``."""
    state = store.states[m.name]
    cut = scope.gen.const(Cut(m.label_value_max_bytes, store.label_values_too_long, m.name), "cut")
    key = scope.key(m, cut)
    if isinstance(state, InfoState):
        scope.emit(f"{scope.gen.const(state, 'info')}.current = {key}")
        return
    invalid = f"{scope.gen.const(store.invalid_values, 'invalid')}[{m.name!r}] += 1.0"
    then = None
    if m.exemplar is not None and not isinstance(state, GaugeState):
        if exemplars:
            _exemplar_shared(scope, m, r)
            then = functools.partial(_exemplar_fragment, m=m, state=state, store=store)
        else:
            exemplar_fits(scope, m)  # once per path, shared by the metrics after it
            then = functools.partial(_exemplar_skip_count, m=m, store=store)
    if isinstance(state, HistogramState):
        _histogram_rule(scope, r, state, key, invalid, then)
    elif isinstance(state, GaugeState):
        _gauge_rule(scope, m, r, state, key, invalid)
    else:
        _counter_rule(scope, r, state, key, invalid, then)


# What to emit right after an update, in its scope, given the amount's expression and whether
# ``k`` is known to be stored (exemplars).
_Then = Callable[[Scope, str, bool], None] | None
# After a histogram's update with a ``_Then``: the variable holding the index of the bucket the
# value went into.
_BUCKET: Final = "bucket"


def _histogram_rule(
    scope: Scope, r: Rule, state: HistogramState, key: str, invalid: str, then: _Then
) -> None:
    gen = scope.gen
    assert r.value is not None  # the loader requires it
    raw = scope.raw(r.value_path)
    ok = scope.nested(f"if {valid_test(raw, nonnegative=True, scale=r.scale)}:")
    v = scaled(ok, r.scale, raw)
    ok.emit(f"k = {key}")
    if state.native_def is None:
        ok.emit(f"cells = {gen.const(state.series.get, 'series_get')}(k)")
        ok.emit("if cells is None:")
        ok.emit(f"    cells = {gen.const(state.new_series, 'new_series')}(k)")
    else:
        # One lookup for both forms: the native buckets hold their series' classic cells.
        ok.emit(f"nb = {gen.const(state.native.get, 'native_get')}(k)")
        ok.emit("if nb is None:")
        ok.emit(f"    nb = {gen.const(state.new_native, 'new_native')}(k)")
        ok.emit("cells = nb.cells")
    if state.bounds:
        where = f"bisect_left({gen.const(state.bounds, 'bounds')}, {v})"
        if then is None:
            ok.emit(f"cells[{where}] += 1.0")
        else:
            # The exemplar's slot is the bucket's: found once for both (``_BUCKET``).
            ok.emit(f"{_BUCKET} = {where}")
            ok.emit(f"cells[{_BUCKET}] += 1.0")
    elif then is not None:
        # Native buckets only: one exemplar slot, the +Inf bucket's, and the count is kept in
        # the native buckets (``HistogramState``).
        ok.emit(f"{_BUCKET} = 0")
    ok.emit(f"cells[-1] += {v}")
    if state.native_def is not None:
        _native_observe(ok, state.native_def, v)
    if then is not None:
        then(ok, v, False)
    scope.nested("else:").emit(invalid)


def _native_observe(scope: Scope, native: NativeDef, v: str) -> None:
    """The statements counting ``v`` in the native buckets ``nb``, as ``NativeBuckets.observe``
    does. For speed, a value in the wide range of ``fast_bounds`` finds its place in the table
    by a guess from its logarithm, confirmed by the table (else by a search), into an existing
    bucket of a series still at the spec's schema (``nb.fast``); everything else (the zero
    bucket, a value outside the range, a new bucket, a series whose resolution was halved)
    misses there, or fails the logarithm (0) or the table (far above), and calls ``observe``."""
    gen = scope.gen
    table, keys, scale, shift = fast_bounds(native)
    settings = gen.const(native, "native")
    bounds = gen.const(table, "native_bounds")
    placed = scope.nested("try:")
    placed.emit(f"place = int({gen.const(math.log2, 'log2')}({v}) * {scale!r} + {shift!r})")
    placed.nested(f"if not {bounds}[place - 1] < {v} <= {bounds}[place]:").emit(
        f"place = bisect_left({bounds}, {v})"
    )
    placed.emit(f"nb.fast[{gen.const(keys, 'native_keys')}[place]] += 1")
    scope.nested("except (KeyError, IndexError, ValueError):").emit(f"nb.observe({v}, {settings})")


def _gauge_rule(
    scope: Scope, m: MetricSpec, r: Rule, state: GaugeState, key: str, invalid: str
) -> None:
    gen = scope.gen
    if r.op == "reset_all":
        scope.emit(f"{gen.const(state.reset_all, 'reset_all')}()")
        return
    part = None
    if m.partition is not None:
        cut = gen.const(Cut(m.label_value_max_bytes, None, m.name), "cut")
        part = scope.bounded(m.partition, cut, m.label_value_max_bytes)
    if r.op == "reset":
        assert part is not None  # the loader requires a partition
        scope.emit(f"{gen.const(state.reset_part, 'reset_part')}({part})")
        return
    series = gen.const(state.series, "series")
    amount = "1.0"
    body = scope
    if r.value is not None:
        raw = scope.raw(r.value_path)
        body = scope.nested(f"if {valid_test(raw, nonnegative=False, scale=r.scale)}:")
        amount = "amount"
        body.emit(f"amount = float({scaled(body, r.scale, raw)})")
    body.emit(f"k = {key}")
    body.emit(f"current = {series}.get(k)")
    body.emit("if current is None:")
    body.emit(f"    k = {gen.const(state.admit, 'admit')}(k)")
    body.emit(f"    current = {series}.get(k, 0.0)")
    sign = -1.0 if r.op == "dec" else 1.0
    if part is not None:
        # The rule changes the event's partition's share; the series gets the share's change.
        parts_get = gen.const(state.parts.get, "parts_get")
        body.emit(f"shares = {parts_get}({part})")
        body.emit("if shares is None:")
        body.emit(f"    shares = {gen.const(state.new_part, 'new_part')}({part})")
        body.emit("mine = shares.get(k, 0.0)")
        body.emit(f"new = {amount}" if r.op == "set" else f"new = mine + {sign!r} * {amount}")
        if m.floor is not None:
            floor = gen.const(m.floor, "floor")
            body.emit(f"new = {floor} if new < {floor} else new")
        body.emit("shares[k] = new")
        body.emit(f"{series}[k] = current + (new - mine)")
    else:
        body.emit(f"new = {amount}" if r.op == "set" else f"new = current + {sign!r} * {amount}")
        if m.floor is None:
            body.emit(f"{series}[k] = new")
        else:
            floor = gen.const(m.floor, "floor")
            body.emit(f"{series}[k] = {floor} if new < {floor} else new")
    if r.value is not None:
        scope.nested("else:").emit(invalid)


def _counter_rule(
    scope: Scope, r: Rule, state: CounterState, key: str, invalid: str, then: _Then
) -> None:
    gen = scope.gen
    series = gen.const(state.series, "series")
    add_new = gen.const(state.add_new, "add_new")
    body, amount = scope, "1.0"
    if r.value is not None:
        raw = scope.raw(r.value_path)
        body = scope.nested(f"if {valid_test(raw, nonnegative=True, scale=r.scale)}:")
        amount = scaled(body, r.scale, raw)
    body.emit(f"k = {key}")
    added = body.nested("try:")
    added.emit(f"{series}[k] += {amount}")
    if then is not None:
        then(added, amount, True)
    new = body.nested("except KeyError:")
    new.emit(f"{add_new}(k, {'1.0' if r.value is None else f'float({amount})'})")
    if then is not None:
        then(new, amount, False)
    if r.value is not None:
        scope.nested("else:").emit(invalid)


# -- exemplars: emitted only for a metric with an ``exemplar`` setting, after its update ----------
#
# In the scope that just updated series ``k`` by ``amount``: if the exemplar field's value is a
# string that fits OpenMetrics' limit with the label name, it replaces the series' (the bucket's)
# latest exemplar, with the amount and the event's raw ``timestamp`` (turned into seconds only
# when rendered, not once per event); anything else is counted as skipped. The key is the series'
# own: a new key the cap turned away stores under the overflow key, so the exemplars never
# outnumber the series. For speed, the test and a counter's entry are computed once per path of
# the function and shared by the metrics that follow on it (most of an event's metrics take the
# same trace id), and a counter's try branch, where ``k`` is known to be stored, keeps it as is.
# Where no test is known yet, a counter's entry is None when the value cannot be kept, and
# ``entry is not None`` is the test from then on (one variable and one conditional fewer).
# A metric without the setting gets none of this code.


def _exemplar_fits_key(scope: Scope, m: MetricSpec) -> tuple[str, tuple[Any, ...]]:
    """The exemplar field's variable, and the key under which its test is known on a path."""
    assert m.exemplar is not None
    t = scope.raw(m.exemplar.path)
    return t, ("exemplar fits", t, EXEMPLAR_LABELS_MAX_CHARS - len(m.exemplar.name))


def exemplar_fits(scope: Scope, m: MetricSpec) -> str:
    """The test that the exemplar field's value can be kept (computed once per path)."""
    t, key = _exemplar_fits_key(scope, m)
    return scope.value(key, lambda _: _fits_test(t, key[2]))


def _fits_test(t: str, longest: int) -> str:
    """The expression testing that variable ``t`` holds a value an exemplar can carry."""
    return f"type({t}) is str and 0 < len({t}) <= {longest}"


def _exemplar_entry(scope: Scope, m: MetricSpec, amount: str) -> tuple[str, str]:
    """A counter's exemplar entry, (value, amount, raw timestamp), and the test that it can be
    kept; both computed once per path."""
    t, fits_key = _exemplar_fits_key(scope, m)
    ts = scope.gen.event_time(scope)
    fits = scope.known.get(fits_key)
    if fits is not None:
        return scope.value(
            ("exemplar entry", fits_key, amount), lambda _: f"({t}, {amount}, {ts})"
        ), fits
    test = _fits_test(t, fits_key[2])
    entry = scope.value(
        ("exemplar entry", fits_key, amount), lambda _: f"({t}, {amount}, {ts}) if {test} else None"
    )
    fits = scope.known[fits_key] = f"{entry} is not None"
    return entry, fits


def _exemplar_shared(scope: Scope, m: MetricSpec, r: Rule) -> None:
    """Before a rule's update, in its scope: what the metrics after it on this path can share."""
    if m.kind == "counter" and r.value is None:
        _exemplar_entry(scope, m, "1.0")
    else:
        exemplar_fits(scope, m)
        scope.gen.event_time(scope)


def _exemplar_fragment(
    scope: Scope,
    amount: str,
    stored: bool,
    *,
    m: MetricSpec,
    state: CounterState | HistogramState,
    store: Store,
) -> None:
    """``stored``: ``k`` is known to be a key of the series (else it may have gone to overflow)."""
    gen = scope.gen
    assert m.exemplar is not None
    if isinstance(state, HistogramState):
        t, ts = scope.raw(m.exemplar.path), scope.gen.event_time(scope)
        keep = scope.nested(f"if {exemplar_fits(scope, m)}:")
        keep.emit(f"x = {gen.const(state.exemplars.get, 'exemplars_get')}(k)")
        keep.emit("if x is None:")
        keep.emit(f"    x = {gen.const(state.new_exemplar_slots, 'new_slots')}(k)")
        keep.emit(f"x[{_BUCKET}] = ({t}, {amount}, {ts})")
    else:
        slots = gen.const(state.exemplars, "exemplars")
        entry, fits = _exemplar_entry(scope, m, amount)
        keep = scope.nested(f"if {fits}:")
        if stored:
            keep.emit(f"{slots}[k] = {entry}")
        else:
            series = gen.const(state.series, "series")
            overflow_key = gen.const(state.overflow_key, "overflow_key")
            keep.emit(f"{slots}[k if k in {series} else {overflow_key}] = {entry}")
    skipped = gen.const(store.exemplars_skipped, "exemplars_skipped")
    scope.nested("else:").emit(f"{skipped}[{m.name!r}] += 1.0")


def _exemplar_skip_count(
    scope: Scope, amount: str, stored: bool, *, m: MetricSpec, store: Store
) -> None:
    """Where ``_exemplar_fragment`` would keep an exemplar: only count the update if it keeps
    none, so a replay that writes no exemplars spends nothing on keeping them."""
    skipped = scope.gen.const(store.exemplars_skipped, "exemplars_skipped")
    scope.nested(f"if not ({exemplar_fits(scope, m)}):").emit(f"{skipped}[{m.name!r}] += 1.0")


def _observation_rule(scope: Scope, m: MetricSpec, r: Rule) -> None:
    """The statements adding the observation of one rule of metric ``m`` to ``out``."""
    cw = m.cloudwatch
    assert cw is not None  # only published rules get here
    # Not counted here: the store target counts the values it cuts, this one gives them only.
    cut = scope.gen.const(Cut(m.label_value_max_bytes, None, m.name), "cut")
    dims = [
        f"({d.name!r}, {scope.bounded(d.source, cut, m.label_value_max_bytes)})"
        for d in cw.dimensions
    ]
    body = scope
    amount = "1.0"
    if r.value is not None:
        raw = scope.raw(r.value_path)
        nonnegative = m.kind != "gauge"
        body = scope.nested(f"if {valid_test(raw, nonnegative, r.scale)}:")
        amount = f"float({scaled(body, r.scale, raw)})"
    kind = _KINDS[r.op]
    body.emit(
        f"out.append(Observation({cw.name!r}, {_tuple(dims)}, {amount}, {cw.unit!r}, {kind!r}))"
    )
