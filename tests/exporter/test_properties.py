"""Properties of the data path over arbitrary input: nothing in a line can raise out of it."""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.collector import StoreCollector
from log_exporter.parse import MALFORMED, parse_line
from log_exporter.pipeline import Pipeline
from log_exporter.spec import compile, convert_label, load_default_spec
from log_exporter.store import Store
from log_exporter.values import Batch

SPEC = load_default_spec()
PROGRAM = compile(SPEC)
EVENT_TYPES = sorted(PROGRAM.event_types)
FIELDS = sorted(
    {lb.field for m in SPEC.metrics for lb in m.labels}
    | {r.value for m in SPEC.metrics for r in m.rules if r.value}
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


def _events(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"event": st.sampled_from(EVENT_TYPES) | values},
        optional={f: values for f in FIELDS},
    )


def _fresh() -> tuple[Pipeline, Store]:
    store = Store(SPEC.definitions)
    return Pipeline(PROGRAM, store), store


def _apply(store: Store, event: dict[str, Any]) -> None:
    """Run the spec program on one event as the pipeline does after parsing it."""
    et = event.get("event")
    if type(et) is str:
        fn = PROGRAM.bind(store).get(et)
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
def test_apply_and_derive_never_raise_on_any_python_values(event: dict[str, Any]) -> None:
    """The program and derive() survive field values of any type, even ones JSON cannot carry."""
    _, store = _fresh()
    _apply(store, event)
    for d in PROGRAM.derive(event):
        assert math.isfinite(d.value)
        assert all(type(v) is str for v in d.labels)


@given(_events(json_values))
def test_derive_agrees_with_the_store(event: dict[str, Any]) -> None:
    """The CloudWatch view (derive) and the Prometheus view (store) count the same changes."""
    _, store = _fresh()
    _apply(store, event)
    derived = PROGRAM.derive(event)
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


@given(python_values)
def test_label_conversion_follows_contract(value: Any) -> None:
    """string as is, int as decimal, bools as true/false, null as unknown, others invalid."""
    text = convert_label(value)
    if type(value) is str:
        assert text == value
    elif value is None:
        assert text == "unknown"
    elif type(value) is bool:
        assert text == ("true" if value else "false")
    elif type(value) is int:
        assert int(text) == value
    else:
        assert text == "invalid"
