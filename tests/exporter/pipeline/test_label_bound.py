"""The label value bound (docs/spec.md, "Label value length"): an open label's value longer than
``label_value_max_bytes`` in UTF-8 becomes ``__overflow__``, in the store and in CloudWatch alike,
and is counted in ``log_exporter_label_values_too_long_total{metric}``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.limits import DEFAULT_LABEL_VALUE_MAX_BYTES, OVERFLOW
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.spec import compile_spec, load_default_spec, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch

# What any --spec log may look like: one open label taken from a field of the application's own.
ENDPOINT_SPEC = """
[metrics.hits_total]
type = "counter"
help = "Requests, by endpoint."
events = ["request"]
labels = ["endpoint", { name = "method", values = ["GET", "POST"] }]

[metrics.hits_total.cloudwatch]
name = "Hits"
unit = "Count"
dimensions = { Endpoint = "endpoint" }

[metrics.latency_seconds]
type = "histogram"
help = "Request latency, by endpoint."
events = ["request"]
value = "seconds"
buckets = [0.1, 1]
labels = ["endpoint"]
label_value_max_bytes = 32
"""
TOO_LONG = "log_exporter_label_values_too_long_total"


def _fed(spec_text: str, events: list[dict[str, object]]) -> Store:
    spec = load_spec(spec_text, "app.toml")
    store = Store(spec.definitions)
    lines = [orjson.dumps(e) for e in events]
    Pipeline(compile_spec(spec), store).feed(Batch(lines, bytes_read=sum(map(len, lines))))
    return store


def _page(store: Store) -> bytes:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    return generate_latest(registry)


def test_twenty_kilobyte_values_become_the_overflow_value_counted_and_the_page_stays_small() -> (
    None
):
    """The issue's log: 1,200 lines with 20 KB endpoint values. Each value is replaced by
    __overflow__ (the totals stay exact), counted per metric, and /metrics stays a few KB
    instead of the 24 MB the raw values would make."""
    events: list[dict[str, object]] = [
        {
            "event": "request",
            "endpoint": f"/{i:05d}" + "x" * 20_000,
            "method": "GET",
            "seconds": 0.5,
        }
        for i in range(1200)
    ]
    store = _fed(ENDPOINT_SPEC, events)
    snap = {m.definition.name: m for m in store.snapshot().metrics}
    assert snap["hits_total"].series == {(OVERFLOW, "GET"): 1200.0}
    assert list(snap["latency_seconds"].series) == [(OVERFLOW,)]
    assert store.label_values_too_long == {"hits_total": 1200.0, "latency_seconds": 1200.0}
    page = _page(store)
    assert len(page) < 8_000
    assert f'{TOO_LONG}{{metric="hits_total"}} 1200.0'.encode() in page
    assert f'{TOO_LONG}{{metric="latency_seconds"}} 1200.0'.encode() in page


def test_the_bound_counts_utf8_bytes_and_a_metric_may_set_its_own() -> None:
    """At 256 bytes: 128 two-byte characters pass and 129 are cut, though both are far fewer
    than 256 characters; the histogram's own bound of 32 cuts what the counter keeps."""
    fits, cut = "é" * 128, "é" * 129
    ascii_40 = "a" * 40
    events: list[dict[str, object]] = [
        {"event": "request", "endpoint": v, "method": "GET", "seconds": 1}
        for v in (fits, cut, ascii_40, "a" * 256, "a" * 257)
    ]
    store = _fed(ENDPOINT_SPEC, events)
    snap = {m.definition.name: m for m in store.snapshot().metrics}
    assert DEFAULT_LABEL_VALUE_MAX_BYTES == 256
    assert set(snap["hits_total"].series) == {
        (fits, "GET"),
        (OVERFLOW, "GET"),
        (ascii_40, "GET"),
        ("a" * 256, "GET"),
    }
    assert snap["hits_total"].series[(OVERFLOW, "GET")] == 2.0
    assert snap["latency_seconds"].series[(OVERFLOW,)][-1] == 5.0
    assert store.label_values_too_long == {"hits_total": 2.0, "latency_seconds": 5.0}


def test_closed_sets_and_skipped_updates_are_not_cut() -> None:
    """A closed set's value is never long (outside the set it is 'other'), and an update skipped
    for an invalid value cuts and counts nothing."""
    store = _fed(
        ENDPOINT_SPEC,
        [
            {"event": "request", "endpoint": "/", "method": "G" * 1000, "seconds": 1},
            {"event": "request", "endpoint": "/" * 100, "method": "GET", "seconds": "slow"},
        ],
    )
    snap = {m.definition.name: m for m in store.snapshot().metrics}
    # 100 bytes: within the counter's 256, over the histogram's 32, whose update is skipped.
    assert snap["hits_total"].series == {("/", "other"): 1.0, ("/" * 100, "GET"): 1.0}
    assert snap["latency_seconds"].series == {("/",): [0.0, 1.0, 0.0, 1.0]}
    assert store.label_values_too_long == {"hits_total": 0.0, "latency_seconds": 0.0}
    assert store.invalid_values["latency_seconds"] == 1.0


def test_cloudwatch_dimensions_take_the_overflow_value_too() -> None:
    """The CloudWatch target cuts the same values, so both targets keep one meaning; it counts
    none (the store counts them once)."""
    program = compile_spec(load_spec(ENDPOINT_SPEC, "app.toml"))
    observe = program.observers()["request"]
    (got,) = observe({"event": "request", "endpoint": "x" * 20_000, "method": "GET"})
    assert got.dimensions == (("Endpoint", OVERFLOW),)
    (kept,) = observe({"event": "request", "endpoint": "/api", "method": "GET"})
    assert kept.dimensions == (("Endpoint", "/api"),)


def test_sustainbot_spec_cuts_an_open_label_and_its_page_shows_the_count() -> None:
    """The built-in spec has the default bound: SustainBot's own values never reach it, a 20 KB
    workflow name does."""
    spec = load_default_spec()
    store = Store(spec.definitions)
    line = orjson.dumps(
        {"event": "aim.request", "drag_mode": "draft", "workflow_name": "w" * 20_000}
    )
    Pipeline(compile_spec(spec), store).feed(Batch([line], bytes_read=len(line)))
    series = {m.definition.name: m.series for m in store.snapshot().metrics}
    assert series["sustainbot_aim_requests_total"] == {("draft", "unknown", OVERFLOW): 1.0}
    page = _page(store).decode()
    assert f'{TOO_LONG}{{metric="sustainbot_aim_requests_total"}} 1.0' in page
    # Only metrics that had a value cut: the others' lines would change every golden page.
    assert page.count(f"{TOO_LONG}{{") == 1


def test_the_count_survives_a_state_file_and_an_old_one_without_it_loads() -> None:
    """The count is saved and restored; a state file written before the bound loads with 0."""
    store = _fed(ENDPOINT_SPEC, [{"event": "request", "endpoint": "x" * 300, "method": "GET"}])
    dump = store.dump()
    assert dump["label_values_too_long"]["hits_total"] == 1.0
    definitions = store.definitions
    assert Store.load(definitions, dump).label_values_too_long["hits_total"] == 1.0
    del dump["label_values_too_long"]
    old = Store.load(definitions, dump)
    assert old.label_values_too_long == {"hits_total": 0.0, "latency_seconds": 0.0}
    assert old.states["hits_total"].series == store.states["hits_total"].series  # type: ignore[union-attr]


def test_check_spec_validates_the_bound(tmp_path: Path) -> None:
    """check-spec accepts a bound in range and names the file, table and field of one out of it."""
    good = tmp_path / "good.toml"
    good.write_text("label_value_max_bytes = 128\n" + ENDPOINT_SPEC)
    bad = tmp_path / "bad.toml"
    bad.write_text("label_value_max_bytes = 0\n" + ENDPOINT_SPEC.replace("= 32", "= 1e6"))
    run = [sys.executable, "-m", "log_exporter", "check-spec"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout) == (0, "OK: 2 metrics\n")
    result = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{bad}: (top level) field 'label_value_max_bytes': must be an integer from 16 to 4096, "
        "not int 0",
        f"{bad}: [metrics.latency_seconds] field 'label_value_max_bytes': must be an integer "
        "from 16 to 4096, not float 1000000.0",
    ]
