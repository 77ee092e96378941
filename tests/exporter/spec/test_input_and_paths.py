"""spec: another application's log shape — ``[input]`` (event field, timestamp field and format),
field paths, ``events`` left out, ``value`` scales and the ``match`` operators; what they derive,
and how check-spec refuses them when broken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from log_exporter.cli import main
from log_exporter.parse import time_value
from log_exporter.pipeline import Pipeline, Steps
from log_exporter.prometheus.families import stamp_text
from log_exporter.spec import SpecError, compile_spec, load_spec
from log_exporter.spec.paths import parse_path, path_text, read_path
from log_exporter.store import Store
from log_exporter.values import Batch

# A flat spec reading every kind of field: labels (open and closed), a match, a value, an
# exemplar, a partition; ``{p}`` is the path prefix the nested version puts before each field.
SPEC = """
{input}
[metrics.hits_total]
type = "counter"
help = "Hits."
labels = [
  {{ name = "who", field = '{p}who' }},
  {{ name = "kind", field = '{p}kind', values = ["a", "b"] }},
]
events = ["hit"]
exemplar = {{ name = "trace_id", field = '{p}trace' }}

[metrics.paid_total]
type = "counter"
help = "Amounts paid."
labels = [{{ name = "who", field = '{p}who' }}]
events = ["pay"]
match = {{ '{p}kind' = "a" }}
value = '{p}amount'

[metrics.latency_seconds]
type = "histogram"
help = "Latency."
buckets = [0.1, 1, 10]
labels = [{{ name = "kind", field = '{p}kind' }}]
events = ["hit", "pay"]
value = '{p}amount'

[metrics.busy]
type = "gauge"
help = "Busy per pid."
partition = '{p}pid'
rules = [{{ events = ["hit"], op = "inc" }}, {{ events = ["pay"], op = "dec" }}]
"""

keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=6)
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "b", "c", "x"])
flat_events = st.fixed_dictionaries(
    {"event": st.sampled_from(["hit", "pay", "other"])},
    optional={
        "who": scalars,
        "kind": scalars,
        "amount": st.floats(-1, 20, allow_nan=False) | st.integers(-2, 20) | st.text(max_size=2),
        "trace": st.sampled_from(["t1", "t2", ""]) | st.integers(0, 3),
        "pid": st.integers(1, 3),
        "timestamp": st.sampled_from(["2026-01-01T00:00:01Z", "x"]),
    },
)


def snapshot_values(spec_text: str, lines: list[bytes]) -> Any:
    """The series values (and exemplars, and the counts of invalid values) after ``lines``."""
    spec = load_spec(spec_text, "t.toml")
    store = Store(spec.definitions)
    Pipeline(compile_spec(spec), store).feed(Batch(lines, bytes_read=sum(map(len, lines))))
    snap = store.snapshot()
    return (
        {m.definition.name: (m.series, m.exemplars) for m in snap.metrics},
        snap.invalid_values,
        snap.exemplars_skipped,
        snap.last_event_timestamp,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(flat_events, max_size=12),
    prefix=st.lists(keys, max_size=3),
    event_in_prefix=st.booleans(),
)
def test_events_nested_under_any_keys_give_the_flat_events_series(
    events: list[dict[str, Any]], prefix: list[str], event_in_prefix: bool
) -> None:
    """Events wrapped at a random depth under random keys (dots and quotes in them too), read by
    the spec with paths, give the same series, exemplars and counts as the flat events under
    the flat spec; the event type and the timestamp may be nested too."""
    assume(not prefix or event_in_prefix or prefix[0] not in ("event", "timestamp"))
    p = path_text(tuple(prefix)) + "." if prefix else ""
    inner = [k for k in ("event", "timestamp") if event_in_prefix]
    flat_input = ""
    nested_input = ""
    if inner and prefix:
        nested_input = (
            f"[input]\nevent_field = '{p}event'\ntimestamp = {{ field = '{p}timestamp' }}\n"
        )

    def wrap(event: dict[str, Any]) -> dict[str, Any]:
        if not prefix:
            return event
        outer = {k: v for k, v in event.items() if k in ("event", "timestamp") and not inner}
        body: Any = {k: v for k, v in event.items() if k not in outer}
        for key in reversed(prefix):
            body = {key: body}
        return {**outer, **body}

    flat = [orjson.dumps(e) for e in events]
    nested = [orjson.dumps(wrap(e)) for e in events]
    # TOML literal strings cannot hold a single quote or a control character: such a prefix is
    # left to the path tests below.
    if any("'" in k or any(ord(c) < 32 or ord(c) == 127 for c in k) for k in prefix):
        return
    assert snapshot_values(SPEC.format(input=nested_input, p=p), nested) == snapshot_values(
        SPEC.format(input=flat_input, p=""), flat
    )


# -- timestamps -------------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def written(micros: int) -> dict[str, Any]:
    """One instant (whole microseconds) written in every format, in a form each reads."""
    when = EPOCH + timedelta(microseconds=micros)
    iso = when.isoformat()
    return {
        "rfc3339": iso.replace("+00:00", "Z"),
        "rfc3339 ": iso.replace("+00:00", "").replace("T", " "),  # space, no zone: UTC
        "unix": micros / 10**6,
        "unix_ms": f"{micros // 1000}.{micros % 1000:03d}",
        "unix_us": micros,
        "unix_ns": str(micros * 1000),
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4 * 10**15), min_size=1, max_size=6))
def test_the_same_instants_in_every_format_give_the_same_times(instants: list[int]) -> None:
    """The same instants written in each format give the same step crossings, last-event time
    and exemplar timestamps."""
    results = []
    for fmt_key in written(0):
        fmt = fmt_key.strip()
        spec = load_spec(
            f'[input]\nevent_field = "msg"\ntimestamp = {{ field = "ts", format = "{fmt}" }}\n'
            '[metrics.n_total]\ntype = "counter"\nhelp = "n"\nexemplar = "trace_id"\n',
            "t.toml",
        )
        lines = [
            orjson.dumps({"msg": "x", "ts": written(us)[fmt_key], "trace_id": f"t{i}"})
            for i, us in enumerate(instants)
        ]
        store = Store(spec.definitions)
        pipeline = Pipeline(compile_spec(spec), store)
        crossed: list[float] = []

        def cross(t: float, crossed: list[float] = crossed) -> float:
            crossed.append(t)
            return t + 0.5

        pipeline.feed_steps(Batch(lines, bytes_read=1), Steps(cross))
        pipeline.feed(Batch(lines, bytes_read=1))
        (kept,) = store.snapshot().metrics[0].exemplars.values()
        results.append((crossed, store.last_event_timestamp, stamp_text(kept[2])))
    assert all(r == results[0] for r in results), results


@pytest.mark.parametrize(
    ("value", "fmt", "seconds"),
    [
        ("2026-12-07T15:45:33.123Z", "rfc3339", 1796658333.123),
        ("2026-12-07 15:45:33.123", "rfc3339", 1796658333.123),
        ("2026-12-07T16:45:33.123+01:00", "rfc3339", 1796658333.123),
        (1796658333.123, "unix", 1796658333.123),
        ("1796658333.123", "unix", 1796658333.123),
        (1796658333123, "unix_ms", 1796658333.123),
        ("1796658333123", "unix_ms", 1796658333.123),
        (1796658333123000, "unix_us", 1796658333.123),
        (1796658333123000000, "unix_ns", 1796658333.123),
        ("1.796658333123e18", "unix_ns", 1796658333.123),
    ],
)
def test_each_format_reads_its_documented_forms(value: Any, fmt: str, seconds: float) -> None:
    """Each timestamp format reads a number or a numeric string (RFC 3339: with a T or a space,
    with or without a zone) as the Unix seconds of the same instant."""
    assert time_value(value, fmt) == seconds


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        ("yesterday", "rfc3339"),
        (1796658333, "rfc3339"),
        ("1_796_658_333", "unix"),
        ("nan", "unix"),
        ("1e999", "unix"),
        (True, "unix"),
        (None, "unix_ms"),
        ([1], "unix_ns"),
        ({"s": 1}, "unix"),
    ],
)
def test_a_time_that_does_not_read_leaves_the_event_untimed(value: Any, fmt: str) -> None:
    """A value a format does not read gives no time, so the event counts as untimed, not as
    malformed."""
    assert time_value(value, fmt) is None
    spec = load_spec(
        f'[input]\ntimestamp = {{ field = "ts", format = "{fmt}" }}\n'
        '[metrics.n_total]\ntype = "counter"\nhelp = "n"\n',
        "t.toml",
    )
    store = Store(spec.definitions)
    steps = Steps(lambda t: t)
    line = orjson.dumps({"ts": value})
    Pipeline(compile_spec(spec), store).feed_steps(Batch([line], bytes_read=1), steps)
    snap = store.snapshot()
    assert (steps.untimed, snap.lines["parsed"], snap.lines["malformed"]) == (1, 1.0, 0.0)
    assert snap.metrics[0].series == {(): 1.0}


# -- paths ------------------------------------------------------------------------------------

EVENT = {
    "request": {"method": "GET", "headers": {"User-Agent": ["curl/7.88.1", "x"]}},
    "labels": {"app.kubernetes.io/name": "web", 'say "hi"': 1},
    "list": [{"a": 1}],
    "s": "text",
    "0": "zero",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("request.method", "GET"),
        ("request.headers.User-Agent.0", "curl/7.88.1"),
        ("request.headers.User-Agent.1", "x"),
        ("request.headers.User-Agent.2", None),  # past the end
        ('labels."app.kubernetes.io/name"', "web"),
        ('labels."say \\"hi\\""', 1),
        ("list.0.a", 1),
        ("0", "zero"),  # digits on an object: the key
        ("s.0", None),  # a string is not an array
        ("request.method.x", None),  # through a non-object
        ("request.nope.x", None),  # through a missing key
    ],
)
def test_paths_read_nested_fields_and_missing_ones_as_missing(path: str, expected: Any) -> None:
    """A path descends objects, indexes arrays by digits, reads quoted segments as one key, and
    reads as missing through a missing key, a non-object or past an array's end; the generated
    code reads it as the reference does."""
    assert read_path(EVENT, parse_path(path)) == expected
    spec = load_spec(
        '[metrics.n_total]\ntype = "counter"\nhelp = "n"\n'
        f'labels = [{{ name = "v", field = {orjson.dumps(path).decode()} }}]\n',
        "t.toml",
    )
    store = Store(spec.definitions)
    Pipeline(compile_spec(spec), store).feed(Batch([orjson.dumps(EVENT)], bytes_read=1))
    label = {None: "unknown", 1: "1"}.get(expected, expected)
    assert store.snapshot().metrics[0].series == {(label,): 1.0}


@given(st.lists(keys, min_size=1, max_size=4))
def test_a_written_path_reads_back_as_its_segments(segments: list[str]) -> None:
    """Any keys, dots and quotes in them included, survive ``path_text`` then ``parse_path``."""
    assert parse_path(path_text(tuple(segments))) == tuple(segments)


# -- events, match, scale -------------------------------------------------------------------------

ZAP = """
[input]
event_field = "msg"
timestamp = { field = "ts", format = "unix" }

[metrics.requests_total]
type = "counter"
help = "Requests, by status."
labels = ["status"]

[metrics.errors_total]
type = "counter"
help = "Server errors."
match = { status = { ge = 500 } }

[metrics.not_found_total]
type = "counter"
help = "404s, matched by a TOML integer."
match = { status = 404 }

[metrics.api_duration_seconds]
type = "histogram"
help = "API latency without health checks, curl only."
buckets = [0.001, 0.01]
value = { field = "duration_ms", scale = 0.001 }
match.'request.uri' = { prefix = "/api/", not = "/api/healthz" }
match.'request.headers.User-Agent.0' = { regex = "^curl/" }

[metrics.served_total]
type = "counter"
help = "Only 'request served' messages."
events = ["request served"]
"""


def zap(status: Any, uri: str, ua: str, ms: Any, msg: str = "request served") -> bytes:
    return orjson.dumps(
        {
            "level": "info",
            "ts": 1796658333.320765,
            "msg": msg,
            "request": {"uri": uri, "headers": {"User-Agent": [ua]}},
            "duration_ms": ms,
            "status": status,
        }
    )


def test_match_operators_optional_events_and_scale_on_a_zap_log() -> None:
    """Without ``events`` a metric takes every line its match admits; ``ge`` compares numbers,
    an integer matches its label text, ``prefix``/``not``/``regex`` test the text, and
    ``scale`` turns milliseconds into seconds."""
    lines = [
        zap(200, "/api/x", "curl/8", 4),
        zap(503, "/api/x", "curl/8", 9),
        zap(404, "/api/healthz", "curl/8", 1),
        zap("500", "/other", "Mozilla", 2),  # a string is not a number for ge
        zap(500, "/api/y", "Mozilla/5 curl/8", "slow"),
        zap(200, "/api/x", "curl/8", 4, msg="other message"),
    ]
    values, invalid, _, _ = snapshot_values(ZAP, lines)
    assert values["requests_total"][0] == {
        ("200",): 2.0,
        ("503",): 1.0,
        ("404",): 1.0,
        ("500",): 2.0,
    }
    assert values["errors_total"][0] == {(): 2.0}
    assert values["not_found_total"][0] == {(): 1.0}
    assert values["served_total"][0] == {(): 5.0}
    # 4 ms, 9 ms, and 4 ms again: /api/healthz, a non-curl agent are left out.
    assert values["api_duration_seconds"][0] == {(): [0.0, 3.0, 0.0, 0.017]}
    assert invalid["api_duration_seconds"] == 0.0


def test_regex_matching_stays_linear_on_a_hostile_value() -> None:
    """A pattern that makes a backtracking engine take exponential time matches at once."""
    spec = (
        '[metrics.n_total]\ntype = "counter"\nhelp = "n"\nmatch = { v = { regex = "^(a+)+$" } }\n'
    )
    lines = [orjson.dumps({"v": "a" * 5000 + "!"}), orjson.dumps({"v": "aaa"})]
    values, _, _, _ = snapshot_values(spec, lines)
    assert values["n_total"][0] == {(): 1.0}


# -- check-spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'labels = [{ name = "a", field = "x..y" }]',
            "[metrics.n_total] field 'labels[0].field': path 'x..y': an empty segment",
        ),
        (
            'labels = [{ name = "a", field = \'x."y\' }]',
            "[metrics.n_total] field 'labels[0].field': path 'x.\"y': a quoted segment is not "
            "closed",
        ),
        ('value = "x."', "[metrics.n_total] field 'value': path 'x.': ends with '.'"),
        (
            'exemplar = { name = "t", field = \'a"b\' }',
            "[metrics.n_total] field 'exemplar.field': path 'a\"b': a quote inside segment",
        ),
        (
            "match = { 'a..b' = \"x\" }",
            "[metrics.n_total] field 'match.a..b': path 'a..b': an empty segment",
        ),
        (
            'match = { a = { regex = "(a)\\\\1" } }',
            "[metrics.n_total] field 'match.a.regex': not a regular expression RE2 accepts",
        ),
        ('match = { a = { like = "x" } }', "[metrics.n_total] field 'match.a.like': unknown key"),
        (
            'match = { a = { ge = "5" } }',
            "[metrics.n_total] field 'match.a.ge': must be a finite number",
        ),
        (
            "match = { a = 1.5 }",
            "[metrics.n_total] field 'match.a': must be a string, an integer, a boolean",
        ),
        (
            'value = { field = "v", scale = -1 }',
            "[metrics.n_total] field 'value.scale': must be positive",
        ),
        (
            'value = { field = "v", factor = 2 }',
            "[metrics.n_total] field 'value.factor': unknown key",
        ),
        ("events = []", "[metrics.n_total] field 'events': must be a non-empty array"),
    ],
)
def test_check_spec_refuses_broken_paths_operators_and_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    """check-spec exits 1 and names the file, the table and the field of a broken path, match
    operator, scale or key."""
    path = tmp_path / "bad.toml"
    path.write_text(f'[metrics.n_total]\ntype = "counter"\nhelp = "n"\n{body}\n')
    assert main(["check-spec", str(path)]) == 1
    assert f"{path}: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'timestamp = { field = "ts", format = "unix_s" }',
            "[input] field 'timestamp.format': must be one of rfc3339, unix, unix_ms, unix_us, "
            "unix_ns, not str 'unix_s'",
        ),
        ('timestamp = "ts"', "[input] field 'timestamp': must be an inline table"),
        (
            'timestamp = { field = "a..b" }',
            "[input] field 'timestamp.field': path 'a..b': an empty segment",
        ),
        ('timestamp = { zone = "UTC" }', "[input] field 'timestamp.zone': unknown key"),
        ('event_field = ""', "[input] field 'event_field': must be a non-empty string"),
        ('event_field = "msg."', "[input] field 'event_field': path 'msg.': ends with '.'"),
        ('events = "msg"', "[input] field 'events': unknown key"),
    ],
)
def test_check_spec_refuses_a_broken_input_table(table: str, message: str) -> None:
    """The ``[input]`` table's errors name the field: a format, a path or an unknown key."""
    with pytest.raises(SpecError) as err:
        load_spec(f'[input]\n{table}\n[metrics.n_total]\ntype = "counter"\nhelp = "n"\n', "s.toml")
    assert any(e.startswith(f"s.toml: {message}") for e in err.value.errors), err.value.errors
