"""store: snapshots, dump/restore for the state file, spec reloads, consistency under scrapes."""

from __future__ import annotations

import json
import threading
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.spec import compile_spec, load_default_spec, load_spec
from log_exporter.store import Store, StoreError
from log_exporter.values import Batch
from tests.support.pipeline import feed, render, store_for

SPEC = """
[metrics.req_total]
type = "counter"
help = "Requests."
events = ["req"]
labels = ["agent"]
series_cap = 2

[metrics.bytes_total]
type = "counter"
help = "Bytes sent."
events = ["req"]
value = "bytes"

[metrics.latency_seconds]
type = "histogram"
help = "Latency."
events = ["req"]
value = "seconds"
buckets = [0.1, 1]
labels = ["agent"]

[metrics.inflight]
type = "gauge"
help = "In flight."
floor = 0
rules = [{ events = ["start"], op = "inc" }, { events = ["req"], op = "dec" }]

[metrics.level]
type = "gauge"
help = "Last level."
events = ["level"]
op = "set"
value = "v"

[metrics.build_info]
type = "info"
help = "Build."
events = ["boot"]
labels = ["version"]
"""

EVENTS: list[dict[str, object]] = [
    {"event": "boot", "version": "1"},
    {"event": "start"},
    {"event": "start"},
    {"event": "req", "agent": "a", "seconds": 0.05, "bytes": 100},
    {"event": "req", "agent": "b", "seconds": 3, "bytes": 20.5},
    {"event": "req", "agent": "c", "seconds": 0.5, "bytes": "lots"},
    {"event": "level", "v": -3.5},
]


def _setup(text: str = SPEC) -> tuple[Pipeline, Store]:
    return store_for(text, "t.toml")


def _feed(pipeline: Pipeline, events: list[dict[str, object]]) -> None:
    feed(pipeline, events, bytes_read=123)


def _render(store: Store) -> str:
    return render(store).decode()


def test_dump_and_load_through_json_restore_every_value() -> None:
    """After a restart from the state file, /metrics shows exactly what it showed before."""
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    before = _render(store)
    # The state file is JSON: the dump must survive strict JSON both ways.
    text = json.dumps(store.dump(), allow_nan=False)
    _, fresh = _setup()
    restored = Store.load(fresh.definitions, json.loads(text))
    assert _render(restored) == before
    assert "__overflow__" in before


def test_restored_store_keeps_counting_into_the_same_series() -> None:
    """Events after a restore add to the restored values (caps and overflow included)."""
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    pipeline2, store2 = _setup()
    with store2.lock:
        store2.restore(store.dump())
    _feed(pipeline2, [{"event": "req", "agent": "a", "seconds": 0.05, "bytes": 1}])
    _feed(pipeline2, [{"event": "req", "agent": "z", "seconds": 0.05, "bytes": 1}])
    registry = CollectorRegistry()
    registry.register(StoreCollector(store2))
    get = registry.get_sample_value
    assert get("req_total", {"agent": "a"}) == 2
    # The cap of 2 was already reached before the restart: z goes to overflow.
    assert get("req_total", {"agent": "z"}) is None
    assert get("req_total", {"agent": "__overflow__"}) == 2
    assert get("bytes_total") == 122.5
    assert get("log_exporter_invalid_values_total", {"metric": "bytes_total"}) == 1


def test_non_finite_sums_survive_strict_json() -> None:
    """A sum that overflowed to infinity is stored without breaking strict JSON."""
    pipeline, store = _setup()
    _feed(pipeline, [{"event": "req", "agent": "a", "seconds": 1e308, "bytes": 1e308}] * 2)
    text = json.dumps(store.dump(), allow_nan=False)
    restored = Store.load(store.definitions, json.loads(text))
    assert _render(restored) == _render(store)
    assert "+Inf" in _render(store)


def test_restore_ignores_metrics_whose_shape_changed() -> None:
    """A state file from an older spec restores unchanged metrics and starts changed ones empty."""
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    changed = SPEC.replace("buckets = [0.1, 1]", "buckets = [0.1, 1, 10]")
    _, store2 = _setup(changed)
    with store2.lock:
        store2.restore(store.dump())
    registry = CollectorRegistry()
    registry.register(StoreCollector(store2))
    get = registry.get_sample_value
    assert get("req_total", {"agent": "a"}) == 1
    assert get("latency_seconds_count", {"agent": "a"}) is None
    assert get("log_exporter_lines_total", {"result": "parsed"}) == len(EVENTS)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.update(version=99),
        lambda d: d["metrics"]["req_total"].update(series=[[["a", "extra"], 1]]),
        lambda d: d["metrics"]["latency_seconds"].update(series=[[["a"], [1]]]),
        lambda d: d.pop("lines"),
        lambda d: d["metrics"]["bytes_total"].update(series=[[[], "lots"]]),
        lambda d: d.update(metrics=[]),
    ],
    ids=["version", "label-width", "cells", "missing-key", "bad-number", "metrics-not-object"],
)
def test_bad_dump_is_rejected_and_changes_nothing(mangle: object) -> None:
    """A corrupt state dump raises StoreError and leaves the current values untouched."""
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    dump = store.dump()
    mangle(dump)  # type: ignore[operator]
    _, other = _setup()
    _feed(Pipeline(compile_spec(load_spec(SPEC, "t.toml")), other), EVENTS[:2])
    before = _render(other)
    with pytest.raises(StoreError):
        other.restore(dump)
    assert _render(other) == before


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from(["NaN", "+Inf", "-Inf", "a", "req_total"])
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _subtrees(v: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [path]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _subtrees(x, (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _subtrees(x, (*path, i))
    return out


@st.composite
def _mangled_dumps(draw: st.DrawFn) -> object:
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    dump: object = json.loads(json.dumps(store.dump()))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_subtrees(dump)))
        if not path:
            dump = draw(json_values)
            continue
        node: Any = dump
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = draw(json_values)
    return dump


@given(_mangled_dumps())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_mangled_dump_restores_or_raises_store_error_changing_nothing(dump: object) -> None:
    """Whatever a state file's store section holds, restore() takes it or raises StoreError (so
    serve starts fresh) and leaves the values untouched; never another exception at start."""
    _, store = _setup()
    before = _render(store)
    try:
        store.restore(dump)  # type: ignore[arg-type]
    except StoreError:
        assert _render(store) == before
    else:
        assert "log_exporter_lines_total" in _render(store)


def test_reload_keeps_unchanged_metrics_and_resets_changed() -> None:
    """On a spec reload, unchanged metrics keep their values and new events still count."""
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    new_text = SPEC.replace('labels = ["agent"]\nseries_cap = 2', 'labels = ["agent", "zone"]')
    new_text = new_text.replace('help = "Bytes sent."', 'help = "Bytes sent, in total."')
    pipeline.reload(compile_spec(load_spec(new_text, "t.toml")))
    _feed(pipeline, [{"event": "req", "agent": "a", "zone": "eu", "seconds": 0.05, "bytes": 1}])
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    get = registry.get_sample_value
    # Labels changed: the old series are gone, the new one counts from zero.
    assert get("req_total", {"agent": "a"}) is None
    assert get("req_total", {"agent": "a", "zone": "eu"}) == 1
    # Only the help text changed: the value carries on.
    assert get("bytes_total") == 121.5
    assert get("latency_seconds_count", {"agent": "a"}) == 2
    assert get("inflight") == 0
    assert "Bytes sent, in total." in _render(store)


def test_reload_removing_a_metric_drops_it() -> None:
    """A metric taken out of the spec disappears from /metrics after a reload."""
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    without = SPEC.split("[metrics.build_info]")[0]
    pipeline.reload(compile_spec(load_spec(without, "t.toml")))
    assert "build_info" not in _render(store)


def test_snapshot_is_not_changed_by_later_events() -> None:
    """A snapshot being rendered does not move while ingestion goes on."""
    pipeline, store = _setup()
    _feed(pipeline, EVENTS)
    snap = store.snapshot()
    _feed(pipeline, EVENTS)
    latency = next(m for m in snap.metrics if m.definition.name == "latency_seconds")
    assert latency.series[("a",)][-1] == 0.05
    assert snap.lines["parsed"] == len(EVENTS)


def test_gauge_never_goes_below_floor_and_set_may_be_negative() -> None:
    """active-requests style gauges stop at their floor; a set gauge takes any finite value."""
    pipeline, store = _setup()
    _feed(pipeline, [{"event": "req", "seconds": 1, "bytes": 1}] * 3 + [{"event": "start"}])
    _feed(pipeline, [{"event": "level", "v": -3.5}, {"event": "level", "v": "high"}])
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    assert registry.get_sample_value("inflight") == 1
    assert registry.get_sample_value("level") == -3.5
    assert registry.get_sample_value("log_exporter_invalid_values_total", {"metric": "level"}) == 1


def test_scrape_never_sees_half_a_batch() -> None:
    """A scrape during ingestion sees whole batches only: one event's metrics always agree."""
    spec = load_default_spec()
    store = Store(spec.definitions)
    pipeline = Pipeline(compile_spec(spec), store)
    line = orjson.dumps(
        {
            "event": "workflow.completed",
            "workflow_name": "w",
            "outcome": "success",
            "drag_mode": "draft",
            "duration_seconds": 0.2,
        }
    )
    batch_size, batches = 50, 400
    done = threading.Event()

    def ingest() -> None:
        for _ in range(batches):
            pipeline.feed(Batch([line] * batch_size))
        done.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    seen = 0
    try:
        while not done.is_set() or seen == 0:
            snap = store.snapshot()
            by_name = {m.definition.name: m for m in snap.metrics}
            executions = by_name["sustainbot_workflow_executions_total"].series.get(
                ("w", "success"), 0.0
            )
            cells = by_name["sustainbot_governed_workflow_duration_seconds"].series.get(
                ("w", "success", "draft")
            )
            observed = 0.0 if cells is None else sum(cells[:-1])
            assert executions == observed == snap.lines["parsed"]
            assert executions % batch_size == 0
            seen += 1
    finally:
        thread.join(timeout=120)
    assert snap.lines["parsed"] <= batch_size * batches
    assert store.snapshot().lines["parsed"] == batch_size * batches
