"""The spec's third target: a replay worker's partial state (``log_exporter.replay.partial``).

The same rules as the store target (fields, labels, matches, value checks, the bound), written by
the spec's shared generator (``log_exporter.spec.codegen``), but each op keeps what the exact
merge needs instead of a running value, in the cells ``partial`` defines (``fresh_cell`` and the
positions beside it). Replay owns this target; the spec package knows nothing of it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from log_exporter.replay.partial import (
    BASE,
    CHANGES,
    EVENTS,
    HIST_COUNTS,
    HIST_VALUES,
    LEAST,
    NET,
    Partial,
    PartialInfo,
    fresh_cell,
)
from log_exporter.spec import Program
from log_exporter.spec.codegen import (
    Apply,
    Cut,
    Generator,
    Pairs,
    Scope,
    exemplar_fits,
    scaled,
    valid_test,
)
from log_exporter.spec.model import MetricSpec, Rule

__all__ = ["bind_partial", "partial_function"]


def bind_partial(program: Program, partial: Partial, *, typed: bool = False) -> dict[str, Apply]:
    """Event type -> one function that applies such an event to ``partial``, for an exact merge
    into a store later; ``typed=True``: ``program.typed``'s events (the pipeline's), not dicts."""
    fields = program.typed.fields if typed else None
    return {
        et: partial_function(et, pairs, partial, fields)
        for et, pairs in program.rules_by_event.items()
    }


def partial_function(
    event_type: str, pairs: Pairs, partial: Partial, fields: Mapping[str, str] | None = None
) -> Apply:
    """The function applying an event of ``event_type`` to a replay worker's partial state
    (a typed event with attributes ``fields``, or a dict)."""
    gen = Generator(fields=fields)
    gen.rules(pairs, lambda scope, m, r: _partial_rule(scope, m, r, partial))
    fn: Apply = gen.function("apply", [], "return", f"<spec partial program for {event_type!r}>")
    return fn


# One branch per metric kind of the code the partial target generates, side by
# side with the store target's in spec.codegen.
def _partial_rule(scope: Scope, m: MetricSpec, r: Rule, partial: Partial) -> None:  # noqa: C901
    gen = scope.gen
    state = partial.states[m.name]
    cut = gen.const(Cut(m.label_value_max_bytes, partial.label_values_too_long, m.name), "cut")
    key = scope.key(m, cut)
    if isinstance(state, PartialInfo):
        scope.emit(f"{gen.const(state, 'info')}.current = {key}")
        return
    mode = state.mode
    if mode == "parts":
        # A partitioned gauge: the worker's shares (``PartialSeries.step``); no rule has a value.
        if r.op == "reset_all":
            scope.emit(f"{gen.const(state.reset_all, 'reset_all')}()")
            return
        assert m.partition is not None
        pcut = gen.const(Cut(m.label_value_max_bytes, None, m.name), "cut")
        part = scope.bounded(m.partition, pcut, m.label_value_max_bytes)
        if r.op == "reset":
            scope.emit(f"{gen.const(state.reset, 'reset_part')}({part})")
        else:
            d = "-1" if r.op == "dec" else "1"
            scope.emit(f"{gen.const(state.step, 'step')}({part}, {key}, {d})")
        return
    series = gen.const(state.series, "series")
    new = gen.const(state.new, "new")
    body = scope
    amount = "1.0"
    if r.value is not None:
        raw = scope.raw(r.value_path)
        nonnegative = m.kind != "gauge"
        body = scope.nested(f"if {valid_test(raw, nonnegative, r.scale)}:")
        v = amount = scaled(body, r.scale, raw)
        if m.kind == "gauge":
            body.emit(f"amount = float({v})")
            amount = "amount"
    body.emit(f"k = {key}")
    if mode == "count":
        body.nested("try:").emit(f"{series}[k] += 1")
        body.nested("except KeyError:").emit(f"{new}(k, 1)")
    else:
        body.emit(f"c = {series}.get(k)")
        fresh = gen.const(functools.partial(fresh_cell, mode, len(m.definition.buckets)), "fresh")
        body.emit("if c is None:")
        body.emit(f"    c = {new}(k, {fresh}())")
        if mode == "amounts":
            body.emit(f"c.append({amount})")
        elif mode == "hist":
            bounds = gen.const(m.definition.buckets, "bounds")
            body.emit(f"c[{HIST_COUNTS}][bisect_left({bounds}, {amount})] += 1")
            body.emit(f"c[{HIST_VALUES}].append({amount})")
        elif mode == "steps":
            d = "-1" if r.op == "dec" else "1"
            body.emit(f"c[{NET}] += {d}")
            body.emit(f"c[{EVENTS}] += 1")
            if m.floor is not None:
                floor = gen.const(m.floor, "floor")
                body.emit(f"least = c[{LEAST}] + {d}")
                body.emit(f"c[{LEAST}] = {floor} if least < {floor} else least")
        else:
            body.emit(f"c[{EVENTS}] += 1")
            if r.op == "set":
                if m.floor is None:
                    body.emit(f"c[{BASE}] = {amount}")
                else:
                    floor = gen.const(m.floor, "floor")
                    body.emit(f"c[{BASE}] = {floor} if {amount} < {floor} else {amount}")
                body.emit(f"c[{CHANGES}].clear()")
            else:
                sign = -1.0 if r.op == "dec" else 1.0
                body.emit(f"c[{CHANGES}].append({sign!r} * {amount})")
    if m.exemplar is not None and m.kind != "gauge":
        # Replay writes no exemplars but counts, as the store does, the updates that keep none.
        skipped = gen.const(partial.exemplars_skipped, "exemplars_skipped")
        body.nested(f"if not ({exemplar_fits(body, m)}):").emit(f"{skipped}[{m.name!r}] += 1.0")
    if r.value is not None:
        invalid = f"{gen.const(partial.invalid_values, 'invalid')}[{m.name!r}] += 1.0"
        scope.nested("else:").emit(invalid)
