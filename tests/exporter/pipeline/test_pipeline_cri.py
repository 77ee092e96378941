"""The pipeline over CRI lines: results counted by kind, the runtime's time for events without
one, and the state file keeping the new results across a restart."""

from __future__ import annotations

from log_exporter.store import Store
from log_exporter.values import Batch
from tests.support.pipeline import store_for

NO_TIME = b'2026-12-07T10:15:00.5Z stdout F {"event": "auth.jwt_validated", "outcome": "success"}'
TIMED = (
    b'2026-12-07T10:15:09Z stdout F {"timestamp": "2026-12-07T10:14:00Z", '
    b'"event": "auth.jwt_validated", "outcome": "success"}'
)
LINES = [
    TIMED,
    b"2026-12-07T10:15:01Z stderr F Traceback (most recent call last):",
    b"2026-12-07T10:15:02Z stdout P",
    b"not a CRI line",
    NO_TIME,
]


def test_each_kind_of_line_counts_under_its_own_result() -> None:
    """Events are parsed, a traceback is unstructured, a partial given up is partial, a line
    that is not CRI is malformed; the last event's time is the runtime's when it has none."""
    pipeline, store = store_for()
    pipeline.feed(Batch(LINES, bytes_read=300, cri=True))
    assert dict(store.lines) == {
        "parsed": 2,
        "malformed": 1,
        "oversized": 0,
        "unstructured": 1,
        "partial": 1,
    }
    assert store.last_event_timestamp == 1796638500.5


def test_an_events_own_time_wins_over_the_runtimes() -> None:
    """An event with a timestamp of its own keeps it: the runtime's stands in only for a
    missing one."""
    pipeline, store = store_for()
    pipeline.feed(Batch([TIMED], bytes_read=len(TIMED) + 1, cri=True))
    assert store.last_event_timestamp == 1796638440.0


def test_new_results_survive_the_state_file_and_old_state_files_load() -> None:
    """unstructured and partial are saved and restored with the other results; a state file
    written before them loads with none counted."""
    pipeline, store = store_for()
    pipeline.feed(Batch(LINES, bytes_read=300, cri=True))
    dump = store.dump()
    definitions = [s.definition for s in store.states.values()]
    assert dict(Store.load(definitions, dump).lines) == dict(store.lines)
    old = {**dump, "lines": {k: dump["lines"][k] for k in ("parsed", "malformed", "oversized")}}
    again = Store.load(definitions, old)
    assert "unstructured" not in again.lines and again.lines["parsed"] == 2
