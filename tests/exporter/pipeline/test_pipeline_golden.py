"""The whole data path (parse -> spec -> store -> collector) against the event contract.

``fixtures/contract.jsonl`` holds every event type and every imperfect-line case the contract
names; ``fixtures/contract.expected.prom`` is the exposition it must produce, checked by hand line
by line against the contract once. To change it deliberately (after a contract or spec change),
regenerate it with the snippet in ``test_golden_exposition_matches_contract``'s docstring, then
read the diff against the contract before committing it; the test never rewrites it itself.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.pipeline import Steps
from log_exporter.prometheus.collector import ServeCollector, ServeValues, StoreCollector
from log_exporter.values import Batch
from tests.support.pipeline import render, store_for

FIXTURES = Path(__file__).parents[1] / "fixtures"
CONTRACT = FIXTURES / "contract.jsonl"
EXPECTED = FIXTURES / "contract.expected.prom"


def _lines(data: bytes) -> list[bytes]:
    # As the tailer hands them over: whole lines without their b"\n".
    return data.split(b"\n")[:-1]


def test_golden_exposition_matches_contract() -> None:
    """Every event type and imperfect line of the contract yields exactly the reviewed exposition.

    Regenerate deliberately with:
    ``data = CONTRACT.read_bytes(); pipeline.feed(Batch(_lines(data), bytes_read=len(data)));
    EXPECTED.write_bytes(render(store))`` and review the diff against the event contract.
    """
    data = CONTRACT.read_bytes()
    pipeline, store = store_for()
    pipeline.feed(Batch(_lines(data), bytes_read=len(data)))
    assert render(store).decode() == EXPECTED.read_text()


def test_line_by_line_batches_give_the_same_exposition() -> None:
    """How the tailer happens to cut batches does not change any metric."""
    data = CONTRACT.read_bytes()
    pipeline, store = store_for()
    for line in _lines(data):
        pipeline.feed(Batch([line], bytes_read=len(line) + 1))
    assert render(store).decode() == EXPECTED.read_text()


def test_replay_path_in_steps_matches_feed() -> None:
    """Replay's path in steps (feed_steps, end_file) derives the same metrics and self-counters
    as serve's feed."""
    data = CONTRACT.read_bytes()
    fed_pipeline, fed = store_for()
    fed_pipeline.feed(Batch(_lines(data), bytes_read=len(data)))
    replay_pipeline, replayed = store_for()
    steps = Steps(lambda t: t)
    for line in _lines(data):
        replay_pipeline.feed_steps(Batch([line], bytes_read=len(line) + 1), steps)
    replay_pipeline.end_file(steps)
    assert render(replayed) == render(fed)


def test_a_step_boundary_sees_exactly_the_lines_before_the_crossing_event() -> None:
    """When an event stamped after the boundary arrives, the store holds every line before it
    (blank and malformed ones included, oversized ones of the batch too) and not that event,
    except that the last-event time is already the crossing event's."""
    lines = [
        b'{"event":"auth.failed","failure_type":"a","timestamp":"2026-02-01T14:30:00.000Z"}',
        b"not json",
        b"",
        b'{"event":"auth.failed","failure_type":"a"}',
        b'{"event":"auth.failed","failure_type":"b","timestamp":"2026-02-01T14:31:00.500Z"}',
    ]
    pipeline, store = store_for()
    seen: list[tuple[float, dict[str, float], float, float | None]] = []

    def cross(t: float) -> float:
        snap = store.snapshot_unlocked()
        seen.append((t, dict(snap.lines), snap.bytes_read, snap.last_event_timestamp))
        return 1769956260.0  # 14:31:00, the next boundary after the first event

    steps = Steps(cross)
    pipeline.feed_steps(Batch(lines, oversized=1, bytes_read=500), steps)
    first, second = seen
    assert first == (1769956200.0, {"parsed": 0, "malformed": 0, "oversized": 1}, 0, 1769956200.0)
    before = sum(len(line) + 1 for line in lines[:4])
    assert second == (
        1769956260.5,
        {"parsed": 2, "malformed": 1, "oversized": 1},
        before,
        1769956260.5,
    )
    assert (steps.now, steps.untimed, steps.late) == (1769956260.5, 1, 0)
    assert store.lines["parsed"] == 3
    assert store.bytes_read == before + len(lines[4]) + 1
    pipeline.end_file(steps)
    assert store.bytes_read == 500


def test_golden_exposition_passes_promtool() -> None:
    """The page Prometheus scrapes passes `promtool check metrics` (names, HELP/TYPE, counters)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    data = CONTRACT.read_bytes()
    pipeline, store = store_for()
    pipeline.feed(Batch(_lines(data), bytes_read=len(data)))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(registry),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_oversized_lines_reported_by_tailer_are_counted() -> None:
    """Lines the tailer dropped as oversized show in lines_total{result="oversized"}."""
    pipeline, store = store_for()
    pipeline.feed(Batch([b'{"event": "auth.failed", "failure_type": "x"}'], oversized=3))
    pipeline.feed(Batch([], oversized=2, rotations=1, truncations=1, bytes_read=7))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    get = registry.get_sample_value
    assert get("log_exporter_lines_total", {"result": "oversized"}) == 5
    assert get("log_exporter_lines_total", {"result": "parsed"}) == 1
    assert get("log_exporter_file_rotations_total") == 1
    assert get("log_exporter_file_truncations_total") == 1
    assert get("log_exporter_bytes_read_total") == 7


TINY_CAP_SPEC = """
[metrics.requests_total]
type = "counter"
help = "Requests by user agent."
events = ["req"]
labels = ["agent"]
series_cap = 2

[metrics.latency_seconds]
type = "histogram"
help = "Latency by agent."
events = ["req"]
value = "seconds"
buckets = [1, 2]
labels = ["agent"]
series_cap = 1
"""


def test_series_cap_overflow_keeps_totals_exact() -> None:
    """Past a series cap, new series go to one __overflow__ series and totals stay exact."""
    pipeline, store = store_for(TINY_CAP_SPEC)
    agents = ["a", "b", "c", "a", "d", "c", "b"]
    lines = [f'{{"event": "req", "agent": "{a}", "seconds": 1.5}}'.encode() for a in agents]
    pipeline.feed(Batch(lines))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    get = registry.get_sample_value
    assert get("requests_total", {"agent": "a"}) == 2
    assert get("requests_total", {"agent": "b"}) == 2
    # c, d, c arrived after the cap of 2 was reached.
    assert get("requests_total", {"agent": "__overflow__"}) == 3
    assert get("requests_total", {"agent": "c"}) is None
    assert get("log_exporter_series_overflow_total", {"metric": "requests_total"}) == 3
    assert get("log_exporter_series", {"metric": "requests_total"}) == 3
    assert get("latency_seconds_count", {"agent": "a"}) == 2
    assert get("latency_seconds_count", {"agent": "__overflow__"}) == 5
    assert get("log_exporter_series_overflow_total", {"metric": "latency_seconds"}) == 5
    total = sum(get("requests_total", {"agent": a}) or 0.0 for a in ["a", "b", "__overflow__"])
    assert total == len(agents)


def test_build_info_names_version_revision_and_python() -> None:
    """/metrics says which log-exporter, built from which commit, on which Python produced it."""
    import platform

    from log_exporter import __version__, buildinfo

    _, store = store_for()
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    labels = {
        "version": __version__,
        "revision": buildinfo.revision(),
        "python_version": platform.python_version(),
    }
    assert registry.get_sample_value("log_exporter_build_info", labels) == 1


def test_serve_families_appear_on_the_same_page() -> None:
    """Numbers only serve knows (lag, I/O errors, reloads) appear beside the store's metrics."""
    _, store = store_for()
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    values = ServeValues(lag_bytes=42.0, io_errors=0.0, spec_reloads={"success": 1.0})
    registry.register(ServeCollector(lambda: values))
    assert registry.get_sample_value("log_exporter_lag_bytes") == 42
    assert registry.get_sample_value("log_exporter_spec_reloads_total", {"result": "success"}) == 1


def test_last_event_timestamp_absent_until_an_event_has_one() -> None:
    """The last-event gauge is absent, not a misleading 0, before any timestamped event."""
    pipeline, store = store_for()
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    pipeline.feed(Batch([b'{"event": "auth.failed"}']))
    assert registry.get_sample_value("log_exporter_last_event_timestamp_seconds") is None
    pipeline.feed(Batch([b'{"event": "auth.failed", "timestamp": "2026-02-01T14:30:00.500Z"}']))
    got = registry.get_sample_value("log_exporter_last_event_timestamp_seconds")
    assert got == 1769956200.5
    # A later batch whose last event has no usable timestamp keeps the previous value.
    pipeline.feed(Batch([b'{"event": "auth.failed", "timestamp": "yesterday"}']))
    assert registry.get_sample_value("log_exporter_last_event_timestamp_seconds") == got


@pytest.mark.parametrize("split", [1, 2, 3])
def test_last_event_without_timestamp_keeps_the_latest_timed_one(split: int) -> None:
    """The last-event gauge shows the latest timed event, however the lines fall into batches."""
    lines = [
        b'{"event":"auth.failed","failure_type":"expired","timestamp":"2026-02-01T14:30:00.000Z"}',
        b'{"event":"auth.failed","failure_type":"expired","timestamp":"2026-02-01T14:30:05.500Z"}',
        b'{"event":"auth.failed","failure_type":"expired"}',
        b"not json",
    ]
    pipeline, store = store_for()
    for start in range(0, len(lines), split):
        pipeline.feed(Batch(lines=lines[start : start + split]))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    expected = 1769956205.5  # 2026-02-01T14:30:05.500Z
    assert registry.get_sample_value("log_exporter_last_event_timestamp_seconds") == expected


def test_number_beyond_a_double_is_an_invalid_value_not_a_malformed_line() -> None:
    """A duration of 1e400 is counted as an invalid value of the metric that reads it, and a
    400-digit number in a field no metric reads costs nothing: both events are still applied."""
    pipeline, store = store_for()
    pipeline.feed(
        Batch(
            [
                b'{"event": "workflow.completed", "workflow_name": "generate_report",'
                b' "drag_mode": "draft", "outcome": "success", "duration_seconds": 1e400}',
                b'{"event": "auth.failed", "failure_type": "expired", "note": ' + b"7" * 400 + b"}",
            ]
        )
    )
    assert store.lines["parsed"] == 2
    assert store.lines["malformed"] == 0
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    metric = "sustainbot_governed_workflow_duration_seconds"
    assert registry.get_sample_value("log_exporter_invalid_values_total", {"metric": metric}) == 1
    assert (
        registry.get_sample_value(
            "sustainbot_authentication_failures_total", {"failure_type": "expired"}
        )
        == 1
    )
