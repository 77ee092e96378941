"""Properties of the data path over arbitrary input: nothing in a line can raise out of it, and
both targets the spec compiles to (store updates, CloudWatch observations) agree with the model."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.parse import MALFORMED, parse_line
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.spec import (
    Program,
    compile_spec,
    convert_label,
    default_spec_text,
    load_default_spec,
    load_spec,
)
from log_exporter.spec.cloudwatch import Observation
from log_exporter.store import Store
from log_exporter.values import Batch
from tests.support.spec_model import SpecModel

SPEC = load_default_spec()
PROGRAM = compile_spec(SPEC)
MODEL = SpecModel(SPEC)
# The same spec with the lowest label value bound, which the strategies' texts (20 characters at
# most) cross, in ASCII and beyond it, so the model comparisons cover the bound too.
SHORT = load_spec("label_value_max_bytes = 16\n" + default_spec_text(), "short.toml")
SHORT_PROGRAM = compile_spec(SHORT)
TARGETS = {
    "default": (SPEC, PROGRAM, MODEL),
    "short": (SHORT, SHORT_PROGRAM, SpecModel(SHORT)),
}
EVENT_TYPES = sorted(PROGRAM.event_types)
# The event types feeding a metric that CloudWatch publishes.
PUBLISHED = sorted(PROGRAM.observers())
FIELDS = sorted(
    {lb.field for m in SPEC.metrics for lb in m.labels}
    | {r.value for m in SPEC.metrics for r in m.rules if r.value}
    | {m.partition.field for m in SPEC.metrics if m.partition is not None}
    | {"outcome", "timestamp"}
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# Python values no JSON parser produces here, reaching the program directly.
python_values = (
    json_values | st.floats() | st.integers() | st.binary(max_size=8) | st.tuples(st.integers())
)


# Values where the spec's rules turn: signs, a double's range, non-numbers, members of the closed
# sets and of the matches, the texts that conversion produces.
edge_values = st.sampled_from(
    [
        None, True, False, 0, -0.0, 1, -1, 2.5, -2.5, 1e308, -1e308, 2**1024, -(2**1024),
        math.inf, -math.inf, math.nan, "", "unknown", "other", "invalid", "true", "500",
        *sorted(
            {v for m in SPEC.metrics for lb in m.labels if lb.values for v in lb.values}
            | {v for m in SPEC.metrics for r in m.rules for t in r.match for v in t.values}
        ),
    ]
)  # fmt: skip


def _events(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"event": st.sampled_from(EVENT_TYPES) | values},
        optional={f: values for f in FIELDS},
    )


def _typed_events(types: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Events of these types whose fields are mostly edge values, for the model comparisons."""
    values = edge_values | python_values
    return st.fixed_dictionaries(
        {"event": st.sampled_from(types)}, optional={f: values for f in FIELDS}
    )


def _fresh() -> tuple[Pipeline, Store]:
    store = Store(SPEC.definitions)
    return Pipeline(PROGRAM, store), store


def _observations(event: dict[str, Any], program: Program = PROGRAM) -> list[Observation]:
    """The observation target's output for ``event``, looked up as the CloudWatch shipper does."""
    et = event.get("event")
    observe = program.observers().get(et) if type(et) is str else None
    return [] if observe is None else observe(event)


def _apply(dispatch: Mapping[str, Callable[[dict[str, Any]], None]], event: dict[str, Any]) -> None:
    """Run a bound spec program (``Program.bind``) on one event as the pipeline does after
    parsing it; binding generates every event type's function, so it is done once per store."""
    et = event.get("event")
    if type(et) is str:
        fn = dispatch.get(et)
        if fn is not None:
            fn(event)


@given(st.binary(max_size=300))
def test_parse_line_never_raises_on_any_bytes(raw: bytes) -> None:
    """Any bytes at all give an event, None or MALFORMED, never an exception."""
    result = parse_line(raw)
    assert result is None or result is MALFORMED or type(result) is dict


@given(st.lists(st.binary(max_size=120), max_size=20))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_feed_counts_every_line_once_whatever_the_bytes(lines: list[bytes]) -> None:
    """Arbitrary bytes never raise out of feed, and each line is parsed, malformed or blank."""
    pipeline, store = _fresh()
    pipeline.feed(Batch(lines))
    blank = sum(1 for raw in lines if parse_line(raw) is None)
    assert store.lines["parsed"] + store.lines["malformed"] + blank == len(lines)


@given(st.lists(_events(json_values), max_size=15))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_feed_of_any_json_objects_never_raises(events: list[dict[str, Any]]) -> None:
    """Known event types with fields of any JSON type are all parsed and never raise."""
    pipeline, store = _fresh()
    pipeline.feed(Batch([orjson.dumps(e) for e in events]))
    assert store.lines["parsed"] == len(events)
    snap = store.snapshot()
    for m in snap.metrics:
        for key in m.series:
            # Every label value is text: a conversion never leaks another type.
            assert all(type(v) is str for v in key)
    # Whatever the values, the scrape still renders.
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    assert b"log_exporter_lines_total" in generate_latest(registry)


@given(_events(python_values))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_apply_and_observe_never_raise_on_any_python_values(event: dict[str, Any]) -> None:
    """apply() and the observation target survive field values of any type, even ones JSON
    cannot carry, and so does the model they are checked against."""
    _, store = _fresh()
    _apply(PROGRAM.bind(store), event)
    for o in _observations(event):
        assert math.isfinite(o.value)
        assert all(type(v) is str for _, v in o.dimensions)
    for d in MODEL.derive(event):
        assert math.isfinite(d.value)
        assert all(type(v) is str for v in d.labels)


@given(_events(json_values))
def test_derive_agrees_with_the_store(event: dict[str, Any]) -> None:
    """The model's changes (derive) and the Prometheus view (store) count the same changes."""
    _, store = _fresh()
    _apply(PROGRAM.bind(store), event)
    derived = MODEL.derive(event)
    snap = {m.definition.name: m for m in store.snapshot().metrics}
    for d in derived:
        if d.op == "inc":
            assert snap[d.metric.name].series[d.labels] == d.value
        elif d.op == "observe":
            assert snap[d.metric.name].series[d.labels][-1] == d.value
    counters = [m for m in SPEC.metrics if m.kind == "counter"]
    touched = {d.metric.name for d in derived}
    for m in counters:
        if m.name not in touched:
            assert sum(snap[m.name].series.values()) == 0


@pytest.mark.parametrize("which", sorted(TARGETS))
@given(events=st.lists(_typed_events(EVENT_TYPES), max_size=15))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_store_target_changes_what_the_model_derives(
    which: str, events: list[dict[str, Any]]
) -> None:
    """Events applied by the generated store functions leave every series, and every count of
    invalid values and of label values too long, exactly as the reference model computes them."""
    spec, program, model = TARGETS[which]
    store = Store(spec.definitions)
    expected = model.expected(store.snapshot(), events)
    dispatch = program.bind(store)
    for event in events:
        _apply(dispatch, event)
    snap = store.snapshot()
    assert {m.definition.name: m.series for m in snap.metrics} == expected.series
    assert snap.invalid_values == expected.invalid
    assert snap.label_values_too_long == expected.too_long


@pytest.mark.parametrize("which", sorted(TARGETS))
@given(events=st.lists(_typed_events(PUBLISHED), max_size=10))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_observation_target_gives_what_the_model_derives(
    which: str, events: list[dict[str, Any]]
) -> None:
    """The generated CloudWatch observations of an event are the model's, in the same order."""
    _, program, model = TARGETS[which]
    for event in events:
        got = _observations(event, program)
        assert got == model.observations(event)
        assert all(type(o.value) is float for o in got)


@given(python_values)
def test_label_conversion_follows_contract(value: Any) -> None:
    """string as is, int in 64 bits as decimal, bools as true/false, null as unknown, others
    invalid."""
    text = convert_label(value)
    if type(value) is str:
        assert text == value
    elif value is None:
        assert text == "unknown"
    elif type(value) is bool:
        assert text == ("true" if value else "false")
    elif type(value) is int and -(2**63) <= value < 2**64:
        assert int(text) == value
    else:
        assert text == "invalid"


def _jwt_samples(store: Store) -> list[bytes]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    return [s for s in generate_latest(registry).splitlines() if s.startswith(b"sustainbot_jwt")]


def test_lines_orjson_refuses_mid_batch_leave_the_events_after_them_applied_once() -> None:
    """Blank, malformed and BOM-prefixed lines inside a batch neither drop nor repeat an event."""
    events = [
        orjson.dumps({"event": "auth.jwt_validated", "outcome": outcome})
        for outcome in ("success", "failure", "success", "failure")
    ]
    mixed = [events[0], b"", b"{not json", b"\xef\xbb\xbf" + events[1], b"  \r"]
    mixed += [events[2], b"[1]", events[3], b"{"]
    alone, interleaved = Store(SPEC.definitions), Store(SPEC.definitions)
    Pipeline(PROGRAM, alone).feed(Batch(lines=events))
    Pipeline(PROGRAM, interleaved).feed(Batch(lines=mixed))
    assert _jwt_samples(interleaved) == _jwt_samples(alone) != []
    assert dict(interleaved.lines) == {"parsed": 4, "malformed": 3, "oversized": 0}
