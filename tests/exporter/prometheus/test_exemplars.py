"""Exemplars (docs/spec.md, "Exemplars"): the latest event field value per series (per bucket),
served in OpenMetrics only, bounded, never saved, and never beyond OpenMetrics' 128 characters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from log_exporter.cli import main
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import Registry, StoreCollector
from log_exporter.prometheus.negotiate import select_encoder
from log_exporter.spec import SpecError, compile_spec, load_default_spec, load_spec
from log_exporter.store import CounterState, HistogramState, Store
from log_exporter.values import Batch
from tests.support.pipeline import feed, store_for

FIXTURES = Path(__file__).parents[1] / "fixtures"
CONTRACT = FIXTURES / "contract.jsonl"
EXPECTED_OM = FIXTURES / "contract.expected.om"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
SKIPPED = "log_exporter_exemplars_skipped"

APP_SPEC = """
series_cap = 2

[metrics.hits_total]
type = "counter"
help = "Requests, by endpoint."
events = ["request"]
labels = ["endpoint"]
exemplar = "trace_id"

[metrics.bytes_total]
type = "counter"
help = "Bytes sent."
events = ["request"]
value = "bytes"
exemplar = { name = "trace_id", field = "request_id" }

[metrics.latency_seconds]
type = "histogram"
help = "Request latency."
events = ["request"]
value = "seconds"
buckets = [0.1, 1]
exemplar = "trace_id"

[metrics.plain_total]
type = "counter"
help = "No exemplar setting."
events = ["request"]
"""
TS = "2026-02-01T14:30:00.250Z"
TS_SECONDS = 1769956200.25


def _openmetrics(store: Store) -> str:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    encoder, _ = select_encoder(OPENMETRICS)
    return encoder(registry).decode()


def _exemplars(
    page: str,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float, float]]:
    """Every exemplar on a page, read back by client_python's strict OpenMetrics parser."""
    out = {}
    for family in text_string_to_metric_families(page):  # type: ignore[no-untyped-call]
        for s in family.samples:
            if s.exemplar is not None:
                (trace,) = s.exemplar.labels.values()
                key = (s.name, tuple(sorted(s.labels.items())))
                out[key] = (trace, s.exemplar.value, float(s.exemplar.timestamp))
    return out


def _request(trace: object, **fields: object) -> dict[str, object]:
    event = {"event": "request", "timestamp": TS, "endpoint": "/a", "bytes": 10, "seconds": 0.5}
    event.update(fields)
    if trace is not ...:
        event["trace_id"] = event["request_id"] = trace
    return event


def _hits(store: Store) -> CounterState:
    state = store.states["hits_total"]
    assert isinstance(state, CounterState)
    return state


def _skipped(store: Store) -> dict[str, float]:
    return {k: v for k, v in store.exemplars_skipped.items() if v}


# -- the spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'type = "gauge"\nop = "inc"\nexemplar = "trace_id"',
            "{table} field 'exemplar': only a counter or a histogram has exemplars "
            "(this is a gauge)",
        ),
        ('type = "counter"\nexemplar = 7', "{table} field 'exemplar': must be a field name"),
        (
            'type = "counter"\nexemplar = { name = "trace_id", fild = "t" }',
            "{table} field 'exemplar.fild': unknown key",
        ),
        (
            'type = "counter"\nexemplar = "trace-id"',
            "{table} field 'exemplar.name': 'trace-id' is not a valid label name",
        ),
        (
            f'type = "counter"\nexemplar = "{"t" * 65}"',
            "{table} field 'exemplar.name': at most 64 characters",
        ),
        (
            'type = "counter"\nexemplar = { name = "trace_id", field = "" }',
            "{table} field 'exemplar.field': must be a non-empty string",
        ),
    ],
)
def test_a_bad_exemplar_setting_is_an_error_naming_file_table_and_field(
    body: str, message: str
) -> None:
    """check-spec's loader rejects an exemplar on a gauge, of the wrong type, with an unknown key
    or an unusable label name, naming the file, the metric's table and the field."""
    table = "[metrics.m_total]" if '"counter"' in body else "[metrics.m]"
    with pytest.raises(SpecError) as caught:
        load_spec(f'{table}\nhelp = "h."\nevents = ["e"]\n{body}\n', "bad.toml")
    expected = "bad.toml: " + message.format(table=table)
    assert any(e.startswith(expected) for e in caught.value.errors), caught.value.errors


def test_check_spec_names_an_exemplar_on_an_info_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``log-exporter check-spec`` exits 1 and names the file and field for an info exemplar."""
    path = tmp_path / "app.toml"
    path.write_text(
        '[metrics.app_info]\ntype = "info"\nhelp = "h."\nevents = ["e"]\nexemplar = "trace_id"\n'
    )
    assert main(["check-spec", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: [metrics.app_info] field 'exemplar': only a counter or a histogram" in err


def test_the_built_in_spec_gives_every_counter_and_histogram_a_trace_id_exemplar() -> None:
    """Every SustainBot metric with a request behind it (every counter and histogram) carries the
    request's ``trace_id``; the gauge and the info metric carry none."""
    for m in load_default_spec().metrics:
        expected = "trace_id" if m.kind in ("counter", "histogram") else None
        assert (m.exemplar and m.exemplar.field, m.definition.exemplar) == (expected, expected)


# -- the page ---------------------------------------------------------------------------------


def test_golden_openmetrics_page_carries_the_latest_trace_id_of_every_series_and_bucket() -> None:
    """The contract's events give exactly the reviewed OpenMetrics page: each counter series and
    histogram bucket shows the trace id, value and timestamp of its latest event.

    Regenerate deliberately as ``test_pipeline_golden`` says, writing ``_openmetrics(store)`` to
    ``contract.expected.om``, and review the diff against the contract.
    """
    data = CONTRACT.read_bytes()
    pipeline, store = store_for()
    pipeline.feed(Batch(data.split(b"\n")[:-1], bytes_read=len(data)))
    page = _openmetrics(store)
    assert page == EXPECTED_OM.read_text()
    exemplars = _exemplars(page)
    assert exemplars[
        (
            "sustainbot_governed_workflow_duration_seconds_bucket",
            (
                ("drag_mode", "analysis"),
                ("le", "30.0"),
                ("outcome", "failure"),
                ("workflow_name", "esg_report"),
            ),
        )
    ] == ("00000000-0000-4000-8000-000000000025", 12.5, 1769956224.888)


def test_counter_and_histogram_exemplars_read_back_by_the_strict_openmetrics_parser() -> None:
    """A counter's exemplar holds its increment, a histogram's sits on the observation's own
    bucket with the observed value, each with the event's timestamp; the latest event wins."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request("first", bytes=3), _request("second", bytes=7, seconds=0.05)])
    feed(pipeline, [_request("third", seconds=4.0)])
    assert _exemplars(_openmetrics(store)) == {
        ("hits_total", (("endpoint", "/a"),)): ("third", 1.0, TS_SECONDS),
        ("bytes_total", ()): ("third", 10.0, TS_SECONDS),
        ("latency_seconds_bucket", (("le", "0.1"),)): ("second", 0.05, TS_SECONDS),
        ("latency_seconds_bucket", (("le", "1.0"),)): ("first", 0.5, TS_SECONDS),
        ("latency_seconds_bucket", (("le", "+Inf"),)): ("third", 4.0, TS_SECONDS),
    }


def test_the_prometheus_text_format_has_no_exemplars() -> None:
    """The text format (no exemplars in it) is the same page with or without the setting."""
    with_setting, without = (
        store_for(APP_SPEC),
        store_for(APP_SPEC.replace('exemplar = "trace_id"', "")),
    )
    for pipeline, _ in (with_setting, without):
        feed(pipeline, [_request("t1"), _request("t2", seconds=3.0)])
    pages = []
    for _, store in (with_setting, without):
        registry = CollectorRegistry()
        registry.register(StoreCollector(store, build_info=False))
        pages.append(generate_latest(registry))
    assert pages[0] == pages[1]
    assert b"t1" not in pages[0] and b"#" not in pages[0].replace(b"# HELP", b"").replace(
        b"# TYPE", b""
    )


def test_an_exemplar_beyond_128_characters_is_skipped_and_counted_never_sent() -> None:
    """With the label name ``trace_id`` (8 characters), a 120-character value is sent (characters,
    not bytes: 120 two-byte ones too) and a 121-character one is not, counted per metric."""
    pipeline, store = store_for(APP_SPEC)
    fits = "é" * 120
    feed(pipeline, [_request(fits)])
    assert _exemplars(_openmetrics(store))[("hits_total", (("endpoint", "/a"),))][0] == fits
    assert _skipped(store) == {}

    too_long = "x" * 121
    feed(pipeline, [_request(too_long, endpoint="/b")])
    page = _openmetrics(store)
    assert too_long not in page
    assert ("hits_total", (("endpoint", "/b"),)) not in _exemplars(page)
    assert _skipped(store) == {"hits_total": 1.0, "bytes_total": 1.0, "latency_seconds": 1.0}
    families = {f.name: f for f in text_string_to_metric_families(page)}  # type: ignore[no-untyped-call]
    assert {s.labels["metric"]: s.value for s in families[SKIPPED].samples} == {
        "hits_total": 1.0,
        "bytes_total": 1.0,
        "latency_seconds": 1.0,
    }


@pytest.mark.parametrize("value", [..., None, "", 42, ["a"]])
def test_an_event_without_a_usable_trace_id_keeps_the_previous_exemplar_and_is_counted(
    value: object,
) -> None:
    """A missing, null, empty or non-string field is no exemplar: the series keeps its previous
    one, the value still counts, and the skip is counted (a misspelt field shows there)."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request("good")])
    feed(pipeline, [_request(value)])
    assert _hits(store).series[("/a",)] == 2.0
    assert _exemplars(_openmetrics(store))[("hits_total", (("endpoint", "/a"),))][0] == "good"
    assert _skipped(store)["hits_total"] == 1.0


def test_an_event_without_a_timestamp_gives_an_exemplar_without_one() -> None:
    """The exemplar's timestamp is the event's own: none when the event has no usable one."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request("t", timestamp="yesterday")])
    page = _openmetrics(store)
    line = next(x for x in page.splitlines() if x.startswith("hits_total{"))
    assert line.endswith('# {trace_id="t"} 1.0')


def test_exemplars_stay_within_the_series_cap_under_a_flood_of_new_series() -> None:
    """10,000 distinct endpoints with a cap of 2 keep 3 exemplars (2 series and the overflow one),
    the overflow series showing the latest trace id it took."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request(f"t{i}", endpoint=f"/{i}") for i in range(10_000)])
    state = _hits(store)
    assert len(state.exemplars) == len(state.series) == 3
    exemplars = _exemplars(_openmetrics(store))
    overflow = ("hits_total", (("endpoint", "__overflow__"),))
    assert exemplars[overflow][0] == "t9999"


def test_exemplars_are_not_saved_and_a_restored_store_collects_them_again() -> None:
    """The state file keeps the values and the skip count, not the exemplars: after a restore the
    page has none until new events bring them."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request("before"), _request(None)])
    dump = store.dump()
    assert b"before" not in orjson.dumps(dump)

    spec = load_spec(APP_SPEC, "app.toml")
    restored = Store.load(spec.definitions, dump)
    assert _exemplars(_openmetrics(restored)) == {}
    assert (
        _skipped(restored)
        == _skipped(store)
        == {
            "hits_total": 1.0,
            "bytes_total": 1.0,
            "latency_seconds": 1.0,
        }
    )
    feed(Pipeline(compile_spec(spec), restored), [_request("after")])
    assert {v[0] for v in _exemplars(_openmetrics(restored)).values()} == {"after"}


def test_a_reload_without_the_setting_drops_the_exemplars_it_had() -> None:
    """A SIGHUP reload that removes a metric's exemplar setting keeps its values but shows none of
    its old exemplars (they would claim a field the spec no longer names)."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request("old")])
    pipeline.reload(compile_spec(load_spec(APP_SPEC.replace("exemplar =", "# "), "app.toml")))
    assert _exemplars(_openmetrics(store)) == {}
    assert _hits(store).series[("/a",)] == 1.0


def test_replay_openmetrics_carries_no_exemplars(tmp_path: Path) -> None:
    """``replay --format openmetrics`` leaves exemplars out (docs/backfill.md): promtool's backfill
    parses them but its blocks cannot hold any, so they would only make the file larger."""
    out = tmp_path / "out.om"
    assert (
        main(["replay", "--quiet", "--format", "openmetrics", "-o", str(out), str(CONTRACT)]) == 0
    )
    text = out.read_text()
    assert "sustainbot_aim_requests_total{" in text
    assert " # {" not in text and "trace_id" not in text


def test_replay_pipeline_keeps_exemplars_it_would_only_throw_away() -> None:
    """A pipeline bound without exemplars (replay's) keeps none, yet counts the same skipped
    updates and the same values as serve's, so its page is unchanged but for the exemplars."""
    events = [_request("t1"), _request("x" * 121, endpoint="/b"), _request(None, seconds=2.0)]
    spec = load_spec(APP_SPEC, "app.toml")
    serve_store, replay_store = Store(spec.definitions), Store(spec.definitions)
    feed(Pipeline(compile_spec(spec), serve_store), events)
    feed(Pipeline(compile_spec(spec), replay_store, exemplars=False), events)
    assert all(not getattr(s, "exemplars", None) for s in replay_store.states.values())
    assert _hits(serve_store).exemplars  # the comparison is not between two empty stores
    assert _skipped(replay_store) == _skipped(serve_store) != {}
    text = "text/plain; version=0.0.4"

    def page(store: Store) -> bytes:
        registry = CollectorRegistry()
        registry.register(StoreCollector(store, build_info=False))
        encoder, _ = select_encoder(text)
        return encoder(registry)

    assert page(replay_store) == page(serve_store)


def test_a_metric_without_the_setting_gets_no_exemplar_code() -> None:
    """The generated function of an event type feeding only metrics without an exemplar setting
    refers to nothing of exemplars, so they cost such metrics nothing."""
    other = APP_SPEC.removesuffix('events = ["request"]\n') + 'events = ["other"]\n'
    spec = load_spec(other, "a.toml")
    store = Store(spec.definitions)
    functions = compile_spec(spec).bind(store)
    names = set(functions["other"].__code__.co_names) | set(functions["other"].__globals__)
    assert not [n for n in names if "exemplar" in n]
    assert [n for n in functions["request"].__globals__ if "exemplar" in n]


def test_a_histogram_with_exemplars_finds_the_bucket_once_per_observation() -> None:
    """A histogram that keeps exemplars finds the bucket of a value once, for its count and its
    exemplar's slot alike, so keeping exemplars does not search the bounds twice."""
    hist_only = APP_SPEC.split("[metrics.latency_seconds]")[1].split("[metrics.plain_total]")[0]
    spec = load_spec("[metrics.latency_seconds]" + hist_only, "a.toml")
    store = Store(spec.definitions)
    apply = compile_spec(spec).bind(store)["request"]
    calls: list[float] = []
    bisect = apply.__globals__["bisect_left"]

    def counting(bounds: tuple[float, ...], value: float) -> int:
        calls.append(value)
        return int(bisect(bounds, value))

    apply.__globals__["bisect_left"] = counting
    apply(_request("t1", seconds=0.5))
    apply(_request("t2", seconds=5.0))
    assert calls == [0.5, 5.0]
    state = store.states["latency_seconds"]
    assert isinstance(state, HistogramState)
    (slots,) = state.exemplars.values()
    assert slots == [None, ("t1", 0.5, TS), ("t2", 5.0, TS)]


def test_a_text_scrape_through_the_server_encoder_collects_no_exemplars() -> None:
    """The encoder the server picks for the text format collects from serve's registry without
    exemplars (they would be dropped), the OpenMetrics one with them."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request("t1")])
    registry = Registry()
    registry.register(StoreCollector(store, build_info=False))
    seen: list[int] = []
    collect = registry.collect

    def spy(exemplars: bool = True) -> Iterator[Metric]:
        for family in collect(exemplars):
            seen.extend(1 for s in family.samples if s.exemplar is not None)
            yield family

    registry.collect = spy  # type: ignore[method-assign]
    text, _ = select_encoder("text/plain")
    assert b"t1" not in text(registry) and seen == []
    om, _ = select_encoder(OPENMETRICS)
    assert b"t1" in om(registry) and len(seen) == 3


def test_a_text_scrape_of_a_plain_registry_equals_one_of_serve_s_registry() -> None:
    """A plain client_python registry, which collects exemplars only for the text encoder to drop
    them, renders the same text and OpenMetrics pages as serve's registry, which leaves them out
    of a text scrape."""
    pipeline, store = store_for(APP_SPEC)
    feed(pipeline, [_request("t1"), _request(None, endpoint="/b", seconds=2.0)])
    plain, served = CollectorRegistry(), Registry()
    for registry in (plain, served):
        registry.register(StoreCollector(store, build_info=False))
    for accept in ("text/plain", "", OPENMETRICS):
        encoder, _ = select_encoder(accept)
        assert encoder(plain) == encoder(served)
    assert b"t1" in select_encoder(OPENMETRICS)[0](served)
