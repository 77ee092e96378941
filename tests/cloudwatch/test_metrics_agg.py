"""Aggregation of derived values into CloudWatch datums and EMF documents, within API limits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from log_exporter.cloudwatch import emf
from log_exporter.cloudwatch.derive import ObservationDeriver
from log_exporter.cloudwatch.metrics_agg import (
    MAX_DATUMS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    MAX_VALUES_PER_DATUM,
    Aggregator,
    Datum,
    chunk_datums,
)
from log_exporter.spec import Program, compile_spec, load_default_spec, load_spec
from log_exporter.spec.cloudwatch import Observation

DIMS = (("WorkflowName", "report"), ("Outcome", "success"), ("DRAGMode", "draft"))
SCHEMA = json.loads((Path(__file__).parent / "emf_schema.json").read_text())


def _count(value: float = 1.0, dims: tuple[tuple[str, str], ...] = DIMS) -> Observation:
    return Observation("WorkflowExecutions", dims, value, "Count", "sum")


def _duration(value: float) -> Observation:
    return Observation("WorkflowDuration", DIMS, value, "Seconds", "distribution")


def test_counters_summed_per_interval_by_event_time() -> None:
    """Counts in one interval become one sum, stamped with the interval start by event time."""
    agg = Aggregator(60)
    for t in (120.0, 150.5, 179.9):
        agg.add(_count(), t)
    agg.add(_count(), 180.0)
    datums = agg.drain()
    assert [(d.timestamp, d.value) for d in datums] == [(120, 3.0), (180, 1.0)]
    assert len(agg) == 0


def test_durations_as_values_and_counts() -> None:
    """Durations are sent as distinct Values with their Counts, so percentiles work."""
    agg = Aggregator(60)
    for v in (0.5, 0.5, 2.0, 0.5):
        agg.add(_duration(v), 10.0)
    (datum,) = agg.drain()
    assert datum.value is None
    assert dict(zip(datum.values, datum.counts, strict=True)) == {0.5: 3.0, 2.0: 1.0}
    api = datum.to_api()
    assert api["Unit"] == "Seconds" and "Value" not in api


def test_distribution_split_at_150_values_per_datum() -> None:
    """More than 150 distinct values are split over several datums; nothing is lost."""
    agg = Aggregator(60)
    for i in range(400):
        agg.add(_duration(i / 10), 0.0)
    datums = agg.drain()
    assert [len(d.values) for d in datums] == [150, 150, 100]
    assert all(len(d.values) <= MAX_VALUES_PER_DATUM for d in datums)
    assert sum(sum(d.counts) for d in datums) == 400


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e200])
def test_non_finite_values_never_sent(bad: float) -> None:
    """NaN, infinities and out-of-range magnitudes are counted as invalid and never sent."""
    agg = Aggregator(60)
    assert not agg.add(_duration(bad), 0.0)
    agg.add(_duration(1.0), 0.0)
    (datum,) = agg.drain()
    assert datum.values == (1.0,)
    assert agg.invalid_values == 1


def test_sum_overflowing_to_infinity_not_sent() -> None:
    """A per-interval sum that overflows is dropped and counted rather than sent as Inf."""
    agg = Aggregator(60)
    agg.add(_count(1e108), 0.0)
    for _ in range(10):
        agg.add(_count(1e108), 0.0)
    assert agg.drain() == []
    assert agg.invalid_values == 1


def test_chunked_to_1000_datums_per_request() -> None:
    """2,500 datums go out in requests of at most 1,000."""
    datums = [Datum("M", (("D", str(i)),), 0, "Count", value=1.0) for i in range(2_500)]
    requests = chunk_datums(datums)
    assert [len(r) for r in requests] == [1_000, 1_000, 500]


def test_chunked_under_1mb_per_request() -> None:
    """Datums with long dimension values are split so no request exceeds the 1 MB budget."""
    dims = tuple((f"D{j}", "v" * 1024) for j in range(30))
    datums = [Datum("M", dims, 0, "Count", value=float(i)) for i in range(200)]
    requests = chunk_datums(datums)
    assert len(requests) > 1
    assert sum(len(r) for r in requests) == 200
    assert all(sum(d.estimated_bytes() for d in r) <= MAX_REQUEST_BYTES for r in requests)
    assert all(len(r) <= MAX_DATUMS_PER_REQUEST for r in requests)


def test_pending_intervals_survive_dump_and_load() -> None:
    """Unsent intervals saved in the state file come back identical after a restart."""
    agg = Aggregator(60)
    agg.add(_count(2.0), 61.0)
    agg.add(_duration(0.25), 61.0)
    agg.add(_duration(0.25), 62.0)
    restored = Aggregator(60)
    assert restored.load(json.loads(json.dumps(agg.dump()))) == 0
    assert restored.drain() == agg.drain()


def test_spec_declarations_drive_dimensions_and_units() -> None:
    """Dimensions and units come from the spec's cloudwatch tables, values from the event."""
    derive = ObservationDeriver(compile_spec(load_default_spec()))
    obs = derive(
        {
            "event": "workflow.completed",
            "workflow_name": "report",
            "outcome": "success",
            "drag_mode": "draft",
            "duration_seconds": 1.5,
        }
    )
    by_name = {o.metric: o for o in obs}
    assert by_name["WorkflowDuration"].unit == "Seconds"
    assert by_name["WorkflowDuration"].kind == "distribution"
    assert by_name["WorkflowExecutions"].kind == "sum"
    assert dict(by_name["WorkflowExecutions"].dimensions) == {
        "WorkflowName": "report",
        "Outcome": "success",
        "DRAGMode": "draft",
    }
    person = derive(
        {"event": "audit.entry", "outcome": "success", "drag_mode": "draft", "actor": "Jane Doe"}
    )
    assert all("Jane Doe" not in v for o in person for _, v in o.dimensions)


def test_dimension_sets_capped_with_overflow() -> None:
    """Past the cap, new dimension sets are published as __overflow__ so cost stays bounded."""
    derive = ObservationDeriver(compile_spec(load_default_spec()), cap=2)
    names = [f"wf{i}" for i in range(5)]
    obs = [
        derive(
            {"event": "aim.request", "drag_mode": "draft", "actor_role": "r", "workflow_name": n}
        )[0]
        for n in names
    ]
    assert {dict(o.dimensions)["WorkflowName"] for o in obs} == {"wf0", "wf1", "__overflow__"}
    assert sum(o.value for o in obs) == 5


def test_deriver_follows_a_reloaded_program() -> None:
    """Given the serving pipeline's current program, the deriver publishes what a reloaded spec
    declares from the next event on."""
    current: list[Program] = [compile_spec(load_default_spec())]
    derive = ObservationDeriver(lambda: current[0])
    event = {"event": "auth.failed", "failure_type": "expired_token"}
    assert derive(event) == []
    reloaded = """
[metrics.auth_failures_total]
type = "counter"
help = "Failed authentications."
events = ["auth.failed"]
labels = ["failure_type"]

[metrics.auth_failures_total.cloudwatch]
name = "AuthFailures"
unit = "Count"
dimensions = { FailureType = "failure_type" }
"""
    current[0] = compile_spec(load_spec(reloaded, "reloaded.toml"))
    assert derive(event) == [
        Observation("AuthFailures", (("FailureType", "expired_token"),), 1.0, "Count", "sum")
    ]


def _check_emf(doc: dict[str, object]) -> None:
    jsonschema.validate(doc, SCHEMA)
    aws = doc["_aws"]
    assert isinstance(aws, dict)
    # What a JSON Schema cannot say: every referenced dimension and metric is a root member.
    for directive in aws["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(doc[name], str)
        for metric in directive["Metrics"]:
            assert metric["Name"] in doc


def test_emf_documents_valid_against_specification() -> None:
    """EMF documents for sums and distributions validate against the EMF schema."""
    agg = Aggregator(60)
    agg.add(_count(), 60.0)
    for i in range(250):
        agg.add(_duration(0.001 * i), 60.0)
    docs = list(emf.documents(agg.drain(), "AIWF/SustainBot"))
    assert docs
    for ts_ms, doc in docs:
        _check_emf(doc)
        assert ts_ms == 60_000 == doc["_aws"]["Timestamp"]
        json.loads(emf.encode(doc))


def test_emf_repeats_values_by_count_100_per_document() -> None:
    """EMF has no counts: a value seen 250 times is sent 250 times, at most 100 per document."""
    agg = Aggregator(60)
    for _ in range(250):
        agg.add(_duration(0.5), 0.0)
    docs = [doc for _, doc in emf.documents(agg.drain(), "NS")]
    sizes = [len(doc["WorkflowDuration"]) for doc in docs]
    assert sizes == [100, 100, 50]


def test_emf_schema_rejects_invalid_document() -> None:
    """The schema used above does reject a document breaking the specification."""
    bad = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "M"}]}
            ],
        },
        "M": [1.0] * 101,
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_emf_parts_put_back_restore_exactly_the_unsent_values() -> None:
    """The datum parts of the EMF documents not acknowledged, put back, are exactly what those
    documents carried: a distribution split over two batches is neither lost nor doubled."""
    agg = Aggregator(60)
    agg.add(_count(3.0), 0.0)
    for i in range(250):
        agg.add(_duration(float(i % 7)), 0.0)
    parts = list(emf.parts(agg.drain(), "NS"))
    assert len(parts) == 4  # the sum, then 100 + 100 + 50 values
    unacknowledged = [part for part, _, _ in parts[2:]]
    agg.put_back(unacknowledged)
    resent = [doc for _, doc in emf.documents(agg.drain(), "NS")]
    assert "WorkflowExecutions" not in resent[0]
    values = sorted(v for doc in resent for v in doc["WorkflowDuration"])
    expected = sorted(v for _, _, doc in parts[2:] for v in doc["WorkflowDuration"])
    assert values == expected and len(values) == 150


def test_dump_with_unsent_datums_saves_them_beside_the_pending_intervals() -> None:
    """The state saved mid-flush holds the pending intervals plus the datums not yet
    acknowledged, and leaves the aggregator itself untouched."""
    agg = Aggregator(60)
    agg.add(_count(2.0), 0.0)
    unsent = agg.drain()
    agg.add(_count(5.0), 0.0)
    saved = agg.dump_with(unsent)
    assert [entry[-1] for entry in saved["sums"]] == [7.0]
    assert [entry[-1] for entry in agg.dump()["sums"]] == [5.0]
