"""Spec loader fuzz: any text, and any mutation of a valid spec, gives a Spec or clear errors.

A clear error is a ``SpecError`` whose every message names the file; never another exception,
which ``check-spec`` would show as a traceback. A spec that loads must also compile and run, and
its CloudWatch observations must be those of the reference model.
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log_exporter.pipeline import Pipeline
from log_exporter.spec import SpecError, compile_spec, default_spec_text, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch
from tests.support.spec_model import SpecModel

SOURCE = "fuzz.toml"
BUILTIN: dict[str, Any] = tomllib.loads(default_spec_text())

# Keys the loader knows, so that mutations reach its checks instead of stopping at "unknown key".
KEYS = sorted(
    {
        "version", "series_cap", "sets", "metrics", "type", "help", "events", "match", "labels",
        "value", "buckets", "op", "floor", "rules", "cloudwatch", "name", "field", "values",
        "unit", "dimensions",
    }
)  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["counter", "gauge", "histogram", "info", "inc", "dec", "set", "x_total"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _toml(v: Any) -> str:
    """``v`` as a TOML value (inline tables and arrays); None is dropped by the caller."""
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is int:
        return str(v)
    if type(v) is float:
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if type(v) is str:
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if type(v) is list:
        return "[" + ", ".join(_toml(x) for x in v if x is not None) + "]"
    assert type(v) is dict
    items = [f"{json.dumps(k)} = {_toml(x)}" for k, x in v.items() if x is not None]
    return "{" + ", ".join(items) + "}"


def _document(doc: dict[str, Any]) -> str:
    return "\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items() if v is not None)


def _paths(v: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if type(v) is dict:
        for k, x in v.items():
            out += _paths(x, (*prefix, k))
    elif type(v) is list:
        for i, x in enumerate(v):
            out += _paths(x, (*prefix, i))
    return out


@st.composite
def mutated_builtin(draw: st.DrawFn) -> dict[str, Any]:
    """The built-in spec with a few values replaced, removed or added anywhere in it."""
    doc: dict[str, Any] = orjson.loads(orjson.dumps(BUILTIN))  # deep copy
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove":
            del node[last]
        elif action == "add" and type(node[last]) is dict:
            node[last][draw(st.sampled_from(KEYS))] = draw(values)
        else:
            node[last] = draw(values)
    return doc


def _check(text: str) -> None:
    try:
        spec = load_spec(text, SOURCE)
    except SpecError as exc:
        # A checker of any text, which may or may not raise: pytest.raises cannot say that.
        assert exc.errors, "a SpecError must say what is wrong"  # noqa: PT017
        for message in exc.errors:
            assert message.startswith(f"{SOURCE}: "), message
        return
    # Accepted: the generated program must build and survive events of every type it names.
    store = Store(spec.definitions)
    pipeline = Pipeline(compile_spec(spec), store)
    events = sorted(pipeline.program.event_types)
    lines = [orjson.dumps({"event": et}) for et in events]
    lines += [orjson.dumps({"event": et, "x": 1, "value": -1, "drag_mode": 2.5}) for et in events]
    pipeline.feed(Batch(lines))
    assert store.lines["parsed"] == len(lines)
    model = SpecModel(spec)
    observers = pipeline.program.observers()
    for line in lines:
        event = orjson.loads(line)
        observe = observers.get(event["event"])
        assert (observe(event) if observe else []) == model.observations(event)


@given(st.text(max_size=400))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_text_gives_a_spec_or_named_errors(text: str) -> None:
    """Arbitrary text never raises anything but a SpecError naming the file."""
    _check(text)


@given(mutated_builtin())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_builtin_spec_gives_a_spec_or_named_errors(doc: dict[str, Any]) -> None:
    """Any value of a valid spec replaced, removed or added gives a working spec or clear errors."""
    _check(_document(doc))


@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_documents_give_a_spec_or_named_errors(doc: dict[str, Any]) -> None:
    """Documents of any shape built from the spec's own keys never raise anything else."""
    _check(_document(doc))


def test_the_emitter_round_trips_the_builtin_spec() -> None:
    """The fuzz's TOML writer is faithful, so mutations reach the loader as intended."""
    assert tomllib.loads(_document(BUILTIN)) == BUILTIN
    load_spec(_document(BUILTIN), SOURCE)


def _nest(v: Any, depth: int, key: str) -> Any:
    for i in range(depth):
        v = [v] if i % 2 else {key: v}
    return v


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3),
    st.integers(0, 40),
    st.sampled_from(KEYS),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_metric_tables_of_any_structure_and_depth_give_a_spec_or_named_errors(
    metrics: dict[str, Any], depth: int, key: str
) -> None:
    """Metric tables of any shape, nested up to past the loader's bound in tables and arrays,
    give a spec or SpecErrors naming the file, never another exception."""
    doc = {"version": 1, "metrics": {name: _nest(v, depth, key) for name, v in metrics.items()}}
    _check(_document(doc))
