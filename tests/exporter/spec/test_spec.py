"""spec: the TOML mapping, its validation messages, the built-in SustainBot spec, what events
derive (on the reference model, which the property tests hold both compiled targets to) and the
CloudWatch observations the compiled program generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from log_exporter.spec import (
    Program,
    SpecError,
    compile_spec,
    default_spec_text,
    load_default_spec,
    load_spec,
)
from log_exporter.spec.cloudwatch import Observation
from log_exporter.store import GaugeState, Store
from tests.support.spec_model import SpecModel

DRAG = ("draft", "research", "analysis", "grunt", "execute")
OUTCOME = ("success", "failure", "rejected")

# The event contract's metric table, transcribed: name -> (type, labels).
CONTRACT_METRICS = {
    "sustainbot_app_info": ("info", ("version", "phase", "compliance_spec")),
    "sustainbot_aim_requests_total": ("counter", ("drag_mode", "actor_role", "workflow_name")),
    "sustainbot_aim_validation_failures_total": ("counter", ("failure_reason", "drag_mode")),
    "sustainbot_governed_workflow_duration_seconds": (
        "histogram",
        ("workflow_name", "outcome", "drag_mode"),
    ),
    "sustainbot_workflow_executions_total": ("counter", ("workflow_name", "outcome")),
    "sustainbot_workflow_execution_errors_total": ("counter", ("workflow_name", "error_type")),
    "sustainbot_audit_log_entries_total": ("counter", ("outcome", "drag_mode")),
    "sustainbot_prescriptive_language_detections_total": ("counter", ("drag_mode", "phrase_type")),
    "sustainbot_jwt_validations_total": ("counter", ("outcome",)),
    "sustainbot_authentication_failures_total": ("counter", ("failure_type",)),
    "sustainbot_active_requests": ("gauge", ()),
    "sustainbot_http_requests_total": ("counter", ("method", "endpoint", "status_code")),
    "sustainbot_http_request_duration_seconds": ("histogram", ("method", "endpoint")),
}


def test_builtin_spec_derives_exactly_the_contract_metrics() -> None:
    """The default spec exposes the contract's metrics with its names, types and labels."""
    spec = load_default_spec()
    got = {m.name: (m.kind, m.definition.labels) for m in spec.metrics}
    assert got == CONTRACT_METRICS


def test_builtin_spec_closed_sets_and_buckets_follow_contract() -> None:
    """drag_mode and outcome (workflow, audit) are closed sets; buckets are the contract's."""
    spec = {m.name: m for m in load_default_spec().metrics}
    for m in spec.values():
        for label in m.labels:
            if label.name == "drag_mode":
                assert label.values == DRAG, m.name
    for name in (
        "sustainbot_governed_workflow_duration_seconds",
        "sustainbot_workflow_executions_total",
        "sustainbot_audit_log_entries_total",
    ):
        outcome = next(lb for lb in spec[name].labels if lb.name == "outcome")
        assert outcome.values == OUTCOME
    workflow = spec["sustainbot_governed_workflow_duration_seconds"].definition.buckets
    assert workflow == (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
    http = spec["sustainbot_http_request_duration_seconds"].definition.buckets
    assert http == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    assert all(m.definition.cap == 1000 for m in spec.values())


def test_no_person_name_in_any_label_or_dimension() -> None:
    """The actor (a person's name) never becomes a metric label or CloudWatch dimension."""
    for m in load_default_spec().metrics:
        assert all(lb.field != "actor" for lb in m.labels)
        if m.cloudwatch is not None:
            assert all(d.source.field != "actor" for d in m.cloudwatch.dimensions)


def test_builtin_cloudwatch_declarations() -> None:
    """Each CloudWatch metric of the issue has its name, unit and dimensions."""
    declared = {
        m.cloudwatch.name: (
            m.cloudwatch.unit,
            {d.name: d.source.field for d in m.cloudwatch.dimensions},
        )
        for m in load_default_spec().metrics
        if m.cloudwatch is not None
    }
    wf = {"WorkflowName": "workflow_name", "Outcome": "outcome", "DRAGMode": "drag_mode"}
    assert declared == {
        "AIMRequests": (
            "Count",
            {"DRAGMode": "drag_mode", "ActorRole": "actor_role", "WorkflowName": "workflow_name"},
        ),
        "AIMValidationFailures": (
            "Count",
            {"FailureReason": "failure_reason", "DRAGMode": "drag_mode"},
        ),
        "WorkflowExecutions": ("Count", wf),
        "WorkflowDuration": ("Seconds", wf),
        "AuditLogEntries": ("Count", {"Outcome": "outcome", "DRAGMode": "drag_mode"}),
        "PrescriptiveLanguageDetections": (
            "Count",
            {"DRAGMode": "drag_mode", "PhraseType": "phrase_type"},
        ),
    }


def test_workflow_completed_failure_feeds_three_metrics() -> None:
    """One failed workflow derives a histogram observation and two counter increments."""
    model = SpecModel(load_default_spec())
    event = {
        "event": "workflow.completed",
        "workflow_name": "esg",
        "outcome": "failure",
        "drag_mode": "grunt",
        "duration_seconds": 2.0,
        "error_type": "Timeout",
    }
    derived = {d.metric.name: d for d in model.derive(event)}
    assert set(derived) == {
        "sustainbot_governed_workflow_duration_seconds",
        "sustainbot_workflow_executions_total",
        "sustainbot_workflow_execution_errors_total",
    }
    assert derived["sustainbot_governed_workflow_duration_seconds"].op == "observe"
    assert derived["sustainbot_governed_workflow_duration_seconds"].value == 2.0
    assert derived["sustainbot_workflow_execution_errors_total"].labels == ("esg", "Timeout")
    # CloudWatch splits executions by DRAG mode although the Prometheus counter does not.
    executions = derived["sustainbot_workflow_executions_total"]
    assert executions.labels == ("esg", "failure")
    assert dict(executions.dimensions) == {
        "WorkflowName": "esg",
        "Outcome": "failure",
        "DRAGMode": "grunt",
    }


def test_success_does_not_feed_the_errors_counter() -> None:
    """The errors counter matches only outcome = failure."""
    model = SpecModel(load_default_spec())
    event = {"event": "workflow.completed", "outcome": "success", "duration_seconds": 1}
    names = {d.metric.name for d in model.derive(event)}
    assert "sustainbot_workflow_execution_errors_total" not in names
    assert "sustainbot_workflow_executions_total" in names


def test_derive_applies_closed_sets_to_field_dimensions() -> None:
    """A CloudWatch dimension read from an event field follows the same closed-set rules."""
    model = SpecModel(load_default_spec())
    event = {"event": "workflow.completed", "outcome": "odd", "drag_mode": "turbo"}
    executions = next(
        d for d in model.derive(event) if d.metric.name == "sustainbot_workflow_executions_total"
    )
    assert dict(executions.dimensions) == {
        "WorkflowName": "unknown",
        "Outcome": "other",
        "DRAGMode": "other",
    }


def test_derive_skips_invalid_histogram_value_only() -> None:
    """An invalid duration drops the observation while the counters of the event still derive."""
    model = SpecModel(load_default_spec())
    event = {"event": "workflow.completed", "outcome": "failure", "duration_seconds": "slow"}
    names = {d.metric.name for d in model.derive(event)}
    assert names == {
        "sustainbot_workflow_executions_total",
        "sustainbot_workflow_execution_errors_total",
    }


def test_match_compares_converted_values() -> None:
    """A match on an integer field compares its decimal text, like labels do."""
    spec = load_spec(
        """
[metrics.server_errors_total]
type = "counter"
help = "5xx responses."
events = ["http.request"]
match = { status_code = ["500", "503"] }
""",
        "t.toml",
    )
    model = SpecModel(spec)
    assert model.derive({"event": "http.request", "status_code": 503})
    assert not model.derive({"event": "http.request", "status_code": 200})
    assert not model.derive({"event": "http.request"})


def _observe(program: Program, event: dict[str, Any]) -> list[Observation]:
    return program.observers()[event["event"]](event)


def test_observations_of_a_failed_workflow() -> None:
    """A failed workflow gives CloudWatch a duration distribution and an execution count, both
    split by workflow, outcome and DRAG mode, in the spec's order."""
    program = compile_spec(load_default_spec())
    event = {
        "event": "workflow.completed",
        "workflow_name": "esg",
        "outcome": "failure",
        "drag_mode": "grunt",
        "duration_seconds": 2,
        "error_type": "Timeout",
    }
    dims = (("WorkflowName", "esg"), ("Outcome", "failure"), ("DRAGMode", "grunt"))
    assert _observe(program, event) == [
        Observation("WorkflowDuration", dims, 2.0, "Seconds", "distribution"),
        Observation("WorkflowExecutions", dims, 1.0, "Count", "sum"),
    ]


def test_observation_dimensions_follow_closed_sets_and_skip_invalid_values() -> None:
    """A dimension read from an event field is converted and closed like a label, and an invalid
    duration drops only the distribution."""
    program = compile_spec(load_default_spec())
    event = {
        "event": "workflow.completed",
        "outcome": "odd",
        "drag_mode": "turbo",
        "duration_seconds": "slow",
    }
    dims = (("WorkflowName", "unknown"), ("Outcome", "other"), ("DRAGMode", "other"))
    assert _observe(program, event) == [
        Observation("WorkflowExecutions", dims, 1.0, "Count", "sum")
    ]


def test_only_event_types_feeding_a_published_metric_have_observers() -> None:
    """Event types feeding no metric with a cloudwatch table get no observation function, and
    the functions are generated once per program."""
    program = compile_spec(load_default_spec())
    observers = program.observers()
    assert set(observers) == {
        "aim.request",
        "aim.validation_failed",
        "audit.entry",
        "prescriptive_language.detected",
        "workflow.completed",
    }
    assert program.observers() is observers


def test_a_gauge_publishes_only_its_inc_rules_as_sums() -> None:
    """Of a gauge with a cloudwatch table only the inc rules are published, as sums of any
    finite value (a negative one too); its dec and set rules are not."""
    spec = load_spec(
        """
[metrics.queue_depth]
type = "gauge"
help = "Queued jobs."
rules = [
    { events = ["queued"], op = "inc", value = "n" },
    { events = ["done"], op = "dec" },
    { events = ["reset"], op = "set", value = "n" },
]

[metrics.queue_depth.cloudwatch]
name = "QueueDepth"
unit = "Count"
""",
        "t.toml",
    )
    program = compile_spec(spec)
    assert set(program.observers()) == {"queued"}
    assert _observe(program, {"event": "queued", "n": -2}) == [
        Observation("QueueDepth", (), -2.0, "Count", "sum")
    ]


MINIMAL = """
[metrics.x_total]
type = "counter"
help = "h"
events = ["e"]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + 'colour = "red"\n', "t.toml: [metrics.x_total] field 'colour': unknown key"),
        ("", "t.toml: (top level) field 'metrics': must be a table"),
        (
            MINIMAL + "[metrics.x_total.cloudwatch]\nname='X'\nunit='Counts'\n",
            "field 'cloudwatch.unit'",
        ),
        (
            # Not a string: once a traceback (a list cannot be looked up in the set of units).
            MINIMAL + "[metrics.x_total.cloudwatch]\nname='X'\nunit=['Count']\n",
            "field 'cloudwatch.unit': not a CloudWatch unit",
        ),
        (
            MINIMAL.replace("x_total", "x"),
            "[metrics.x] field 'type': a counter's name must end in _total",
        ),
        (
            MINIMAL.replace('"counter"', '"summary"'),
            "[metrics.x_total] field 'type': must be counter",
        ),
        (
            MINIMAL.replace('help = "h"', "help = 3"),
            "[metrics.x_total] field 'help': must be a non-empty",
        ),
        (MINIMAL.replace('["e"]', "[]"), "[metrics.x_total] field 'events'"),
        (MINIMAL + 'labels = ["le"]\n', "field 'labels[0].name': 'le' is reserved"),
        (MINIMAL + 'labels = ["quantile"]\n', "field 'labels[0].name': 'quantile' is reserved"),
        (MINIMAL + 'labels = ["a", "a"]\n', "field 'labels[1].name': duplicate label 'a'"),
        (MINIMAL + 'labels = ["bad-name"]\n', "field 'labels[0].name': 'bad-name' is not a valid"),
        (
            MINIMAL + 'labels = [{ name = "a", values = "nope" }]\n',
            "field 'labels[0].values': unknown set 'nope'",
        ),
        (
            MINIMAL + 'labels = [{ name = "a", colour = 1 }]\n',
            "field 'labels[0].colour': unknown key",
        ),
        (MINIMAL + "series_cap = 0\n", "field 'series_cap': must be a positive integer"),
        (MINIMAL + 'op = "inc"\n', "field 'op': only a gauge has an op"),
        (MINIMAL + "buckets = [1]\n", "field 'buckets': only a histogram has buckets"),
        (MINIMAL + "floor = 0\n", "field 'floor': only a gauge has a floor"),
        (MINIMAL + 'partition = "pid"\n', "field 'partition': only a gauge is kept per"),
        (
            '[metrics.g]\ntype = "gauge"\nhelp = "h"\nrules = [{ events = ["e"], op = "reset" }]\n',
            "[metrics.g] field 'rules[0].op': op 'reset' forgets one partition: give 'partition'",
        ),
        (
            '[metrics.g]\ntype = "gauge"\nhelp = "h"\npartition = "pid"\n'
            'rules = [{ events = ["e"], op = "reset_all", value = "v" }]\n',
            "[metrics.g] field 'rules[0].value': op 'reset_all' takes no value",
        ),
        (
            '[metrics.g]\ntype = "gauge"\nhelp = "h"\npartition = 3\nevents = ["e"]\nop = "inc"\n',
            "[metrics.g] field 'partition': must be a non-empty string",
        ),
        (
            '[metrics.h_seconds]\ntype = "histogram"\nhelp = "h"\nevents = ["e"]\nvalue = "v"\n'
            "buckets = [1, 0.5]\n",
            "t.toml: [metrics.h_seconds] field 'buckets': must be strictly increasing",
        ),
        (
            '[metrics.h_seconds]\ntype = "histogram"\nhelp = "h"\nevents = ["e"]\nbuckets = [1]\n',
            "[metrics.h_seconds] field 'value': a histogram needs the field it observes",
        ),
        (
            '[metrics.g]\ntype = "gauge"\nhelp = "h"\nevents = ["e"]\nop = "set"\n',
            "[metrics.g] field 'value': op 'set' needs the field",
        ),
        (
            '[metrics.g]\ntype = "gauge"\nhelp = "h"\nrules = [{ events = ["e"], op = "up" }]\n',
            "[metrics.g] field 'rules[0].op': must be inc, dec, set, reset or reset_all",
        ),
        (
            '[metrics.g]\ntype = "gauge"\nhelp = "h"\nevents = ["e"]\nop = "inc"\n'
            'rules = [{ events = ["e"], op = "inc" }]\n',
            "[metrics.g] field 'events': give it inside each of 'rules'",
        ),
        (
            '[metrics.a_info]\ntype = "info"\nhelp = "h"\nevents = ["e"]\n'
            "[metrics.a_info.cloudwatch]\nname = 'A'\nunit = 'Count'\n",
            "[metrics.a_info] field 'cloudwatch': an info metric has no value",
        ),
        (
            MINIMAL + "[metrics.x_total.cloudwatch]\nname = 'X'\nunit = 'Count'\n"
            "dimensions = { D = 'not_a_label' }\n",
            "field 'cloudwatch.dimensions.D': 'not_a_label' is not a label",
        ),
        (
            MINIMAL + '[metrics.h]\ntype = "histogram"\nhelp = "h"\nevents = ["e"]\nvalue = "v"\n'
            'buckets = [1]\n[metrics.h_count]\ntype = "gauge"\nhelp = "h"\nevents = ["e"]\n'
            'op = "inc"\n',
            "[metrics.h_count] field 'name': its series 'h_count' clash with those of [metrics.h]",
        ),
        (MINIMAL.replace("x_total", "log_exporter_x_total"), "field 'name': names starting with"),
        ("version = 2\n" + MINIMAL, "(top level) field 'version': must be 1"),
        (
            "label_value_max_bytes = 15\n" + MINIMAL,
            "(top level) field 'label_value_max_bytes': must be an integer from 16 to 4096",
        ),
        (
            'label_value_max_bytes = "256"\n' + MINIMAL,
            "(top level) field 'label_value_max_bytes': must be an integer from 16 to 4096",
        ),
        (
            MINIMAL + "label_value_max_bytes = 4097\n",
            "[metrics.x_total] field 'label_value_max_bytes': must be an integer from 16 to 4096",
        ),
        (
            MINIMAL + "label_value_max_bytes = true\n",
            "[metrics.x_total] field 'label_value_max_bytes': must be an integer from 16",
        ),
    ],
)
def test_spec_error_names_file_table_and_field(text: str, expected: str) -> None:
    """Each invalid spec is rejected with a message naming the file, the table and the field."""
    with pytest.raises(SpecError) as info:
        load_spec(text, "t.toml")
    assert any(expected in e for e in info.value.errors), info.value.errors
    assert all(e.startswith("t.toml: ") for e in info.value.errors)


def test_every_error_is_reported_not_only_the_first() -> None:
    """A spec with several mistakes gets one message per mistake."""
    text = MINIMAL + 'colour = 1\nlabels = ["le"]\nseries_cap = -1\n'
    with pytest.raises(SpecError) as info:
        load_spec(text, "t.toml")
    assert len(info.value.errors) == 3


def test_toml_syntax_error_names_file_and_line() -> None:
    """A TOML syntax error says which file and which line."""
    with pytest.raises(SpecError) as info:
        load_spec('[metrics.x_total]\ntype = "counter"\nhelp = \n', "my.toml")
    assert str(info.value).startswith("my.toml: line 3, column 8: TOML syntax error")


def _check_spec(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "log_exporter", "check-spec", path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_spec_accepts_builtin_spec(tmp_path: Path) -> None:
    """`log-exporter check-spec` on a good spec prints OK with the metric count and exits 0."""
    path = tmp_path / "spec.toml"
    path.write_text(default_spec_text())
    result = _check_spec(str(path))
    assert (result.returncode, result.stdout) == (0, f"OK: {len(CONTRACT_METRICS)} metrics\n")


def test_check_spec_lists_errors_and_exits_1(tmp_path: Path) -> None:
    """A bad spec gets each error on its own line, exit 1, and no traceback."""
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL + 'colour = 1\nlabels = ["le"]\n')
    result = _check_spec(str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: [metrics.x_total] field ") for line in lines)
    assert "Traceback" not in result.stderr


def test_check_spec_unreadable_file_exits_2(tmp_path: Path) -> None:
    """A missing spec file is reported by name with exit 2, not a traceback."""
    missing = tmp_path / "missing.toml"
    result = _check_spec(str(missing))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{missing}: cannot read")
    assert "Traceback" not in result.stderr


def test_check_spec_binary_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """A spec file that is not UTF-8 is reported, not a traceback."""
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00")
    result = _check_spec(str(path))
    assert result.returncode == 1
    assert "not UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


PARTITIONED = """
[metrics.busy]
type = "gauge"
help = "h"
floor = 0
partition = "worker"
labels = ["queue"]
series_cap = 3
rules = [
    { events = ["start"], op = "inc" },
    { events = ["end"], op = "dec" },
    { events = ["worker.gone"], op = "reset" },
    { events = ["all.gone"], op = "reset_all" },
]
"""


def _busy(events: list[dict[str, Any]], store: Store | None = None) -> Store:
    spec = load_spec(PARTITIONED, "p.toml")
    store = store if store is not None else Store(spec.definitions)
    apply = compile_spec(spec).bind(store)
    for ev in events:
        fn = apply.get(ev["event"])
        if fn is not None:
            fn(ev)
    return store


def _ev(kind: str, worker: object = None, queue: str = "q") -> dict[str, Any]:
    ev: dict[str, Any] = {"event": kind, "queue": queue}
    if worker is not None:
        ev["worker"] = worker
    return ev


def test_partitioned_gauge_reset_forgets_only_that_partitions_share() -> None:
    """A partition's reset takes its share out of every series and leaves the others' shares;
    reset_all makes every series 0; the floor applies to each share, not to the sum."""
    store = _busy(
        [
            _ev("start", 1),
            _ev("start", 1),
            _ev("start", 2),
            _ev("start", 2, queue="other"),
            _ev("end", 2),
            _ev("end", 2),  # below 0 for worker 2 in "q": its share stays 0
        ]
    )
    state = store.states["busy"]
    assert isinstance(state, GaugeState)
    series = state.series
    assert series == {("q",): 2.0, ("other",): 1.0}
    _busy([_ev("worker.gone", 1)], store)
    assert series == {("q",): 0.0, ("other",): 1.0}
    _busy([_ev("start", 1), _ev("all.gone")], store)
    assert series == {("q",): 0.0, ("other",): 0.0}
    assert state.parts == {}


def test_partitioned_gauge_shares_survive_a_state_file_round_trip() -> None:
    """The shares are saved and restored with the series, so a process's exit read after a
    restart still takes exactly its requests away."""
    before = _busy([_ev("start", 7), _ev("start", 7), _ev("start", 8)])
    restored = Store(load_spec(PARTITIONED, "p.toml").definitions)
    restored.restore(before.dump())
    _busy([_ev("worker.gone", 7)], restored)
    busy = restored.states["busy"]
    assert isinstance(busy, GaugeState) and busy.series == {("q",): 1.0}


def test_state_without_shares_counts_as_the_unpartitioned_share() -> None:
    """A state file from before partitions holds only the sums: they are taken as the share of
    events without the field, so the same old events' ends still bring the gauge down."""
    before = _busy([_ev("start"), _ev("start")])
    dump = before.dump()
    del dump["metrics"]["busy"]["parts"]
    restored = Store(load_spec(PARTITIONED, "p.toml").definitions)
    restored.restore(dump)
    _busy([_ev("end")], restored)
    busy = restored.states["busy"]
    assert isinstance(busy, GaugeState) and busy.series == {("q",): 1.0}


def test_partitions_past_the_cap_share_the_overflow_partition() -> None:
    """A log naming more partitions than the series cap cannot grow the state without bound:
    the extra ones share one overflow partition, counted as overflow."""
    store = _busy([_ev("start", n) for n in range(10)])
    state = store.states["busy"]
    assert isinstance(state, GaugeState)
    assert len(state.parts) == 4  # the cap (3), then __overflow__
    assert state.series == {("q",): 10.0}
    assert state.overflowed == 7
