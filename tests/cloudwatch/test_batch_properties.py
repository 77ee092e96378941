"""Properties of PutLogEvents batching over arbitrary event sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from log_exporter.cloudwatch.logs_batch import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_SPAN_MS,
    TRUNCATION_MARKER,
    LogEvent,
    cut_batches,
    make_event,
)

HOUR = 3_600_000

events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=72 * HOUR),
        st.sampled_from([1, 100, 60_000, MAX_EVENT_BYTES - EVENT_OVERHEAD]),
    ),
    max_size=60,
).map(lambda items: [LogEvent(ts, "m" * size, size + EVENT_OVERHEAD) for ts, size in items])


@settings(max_examples=200, deadline=None)
@given(events)
def test_batches_obey_every_limit_and_lose_nothing(evs: list[LogEvent]) -> None:
    """Whatever the sizes and times, batches obey the limits, are sorted, and keep every event."""
    batches = cut_batches(evs)
    for batch in batches:
        assert 1 <= len(batch.events) <= MAX_BATCH_EVENTS
        assert sum(e.size for e in batch.events) <= MAX_BATCH_BYTES
        stamps = [e.timestamp for e in batch.events]
        assert stamps == sorted(stamps)
        assert stamps[-1] - stamps[0] < MAX_SPAN_MS
    # Consecutive runs of the file: sorting within each batch only reorders inside it.
    order = {id(e): i for i, e in enumerate(evs)}
    flattened = [id(e) for b in batches for e in sorted(b.events, key=lambda e: order[id(e)])]
    assert flattened == [id(e) for e in evs]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300_000))
def test_any_line_becomes_a_valid_event_or_nothing(raw: bytes) -> None:
    """Any bytes become one event within the size limit (valid UTF-8) or, if blank, nothing."""
    event = make_event(raw, 0)
    text = raw.decode("utf-8", "replace")
    if event is None:
        assert not text.replace("\ufeff", "").strip()
        return
    encoded = event.message.encode("utf-8")
    assert event.size == len(encoded) + EVENT_OVERHEAD <= MAX_EVENT_BYTES
    if event.truncated:
        assert event.message.endswith(TRUNCATION_MARKER)
        # Cut at the limit, give or take a multi-byte character split at the boundary.
        assert event.size > MAX_EVENT_BYTES - 4
    else:
        assert event.message in text
