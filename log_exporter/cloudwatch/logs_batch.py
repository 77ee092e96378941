"""Pure CloudWatch Logs batching: one line -> one log event, events -> PutLogEvents batches.

No I/O and no clock of its own: the caller passes "now" so the service window is testable.
The limits are those of PutLogEvents today (no sequence tokens since 2023).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from log_exporter.values import Position

MAX_BATCH_EVENTS: Final = 10_000
MAX_BATCH_BYTES: Final = 1_048_576
# CloudWatch counts each event as its UTF-8 message plus this fixed overhead.
EVENT_OVERHEAD: Final = 26
# 256 KiB per event, the overhead included.
MAX_EVENT_BYTES: Final = 262_144
MAX_SPAN_MS: Final = 24 * 3600 * 1000
MAX_AGE_MS: Final = 14 * 24 * 3600 * 1000
MAX_AHEAD_MS: Final = 2 * 3600 * 1000
TRUNCATION_MARKER: Final = "...[truncated by log-exporter]"

_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line as CloudWatch will store it, plus where reading may resume after it."""

    timestamp: int
    message: str
    # UTF-8 bytes of the message plus EVENT_OVERHEAD: what counts against the batch limit.
    size: int
    # None when the tailer's batch did not allow a per-line position (rotation, skipped lines).
    position: Position | None = None
    truncated: bool = False


def make_event(raw: bytes, timestamp_ms: int, position: Position | None = None) -> LogEvent | None:
    """The log event for one line, or None for a blank line (nothing to ship).

    Invalid UTF-8 is replaced (U+FFFD), never dropped; an event over the 256 KiB limit is cut
    and ends with TRUNCATION_MARKER so a reader sees it was cut.
    """
    message = raw.decode("utf-8", "replace")
    if message.endswith("\r"):
        message = message[:-1]
    if message.startswith(_BOM):
        message = message[1:]
    if not message.strip():
        return None
    encoded = message.encode("utf-8")
    truncated = False
    if len(encoded) + EVENT_OVERHEAD > MAX_EVENT_BYTES:
        keep = MAX_EVENT_BYTES - EVENT_OVERHEAD - len(TRUNCATION_MARKER.encode("utf-8"))
        # "ignore" drops a multi-byte character cut in half at the boundary.
        message = encoded[:keep].decode("utf-8", "ignore") + TRUNCATION_MARKER
        encoded = message.encode("utf-8")
        truncated = True
    return LogEvent(timestamp_ms, message, len(encoded) + EVENT_OVERHEAD, position, truncated)


def window_reason(timestamp_ms: int, now_ms: int) -> str | None:
    """Why CloudWatch would refuse an event at this time: "too_old", "too_new", or None."""
    if timestamp_ms < now_ms - MAX_AGE_MS:
        return "too_old"
    if timestamp_ms > now_ms + MAX_AHEAD_MS:
        return "too_new"
    return None


@dataclass(slots=True)
class LogBatch:
    """Events for one PutLogEvents call, in time order, and the cursor once it is acknowledged."""

    events: list[LogEvent]
    # The last known position in *file* order: all lines before it are in this or earlier batches.
    position: Position | None
    truncated: int = 0

    @property
    def byte_size(self) -> int:
        return sum(e.size for e in self.events)


@dataclass(slots=True)
class BatchBuilder:
    """Accumulates events in file order and says when the next one no longer fits."""

    _events: list[LogEvent] = field(default_factory=list)
    _bytes: int = 0
    _min_ts: int = 0
    _max_ts: int = 0
    _position: Position | None = None

    def __len__(self) -> int:
        return len(self._events)

    @property
    def byte_size(self) -> int:
        return self._bytes

    def fits(self, event: LogEvent) -> bool:
        """True if ``event`` can join the batch without breaking a PutLogEvents limit."""
        if not self._events:
            return True
        if len(self._events) + 1 > MAX_BATCH_EVENTS:
            return False
        if self._bytes + event.size > MAX_BATCH_BYTES:
            return False
        # Cut when the span would reach 24 h: "more than 24 hours" is refused, and ending a
        # batch a millisecond early costs nothing while a refused batch costs a retry.
        low = min(self._min_ts, event.timestamp)
        high = max(self._max_ts, event.timestamp)
        return high - low < MAX_SPAN_MS

    def add(self, event: LogEvent) -> None:
        """Append ``event``; the caller checked ``fits`` (a lone event always fits)."""
        if not self._events:
            self._min_ts = self._max_ts = event.timestamp
        else:
            self._min_ts = min(self._min_ts, event.timestamp)
            self._max_ts = max(self._max_ts, event.timestamp)
        self._events.append(event)
        self._bytes += event.size
        if event.position is not None:
            self._position = event.position

    def note_position(self, position: Position | None) -> None:
        """Advance the cursor past lines that produced no event (blank lines)."""
        if position is not None:
            self._position = position

    def take(self) -> LogBatch:
        """The batch so far, sorted by time (stable, so file order breaks ties), and reset."""
        events = sorted(self._events, key=lambda e: e.timestamp)
        batch = LogBatch(events, self._position, sum(1 for e in events if e.truncated))
        self._events = []
        self._bytes = 0
        self._position = None
        return batch


def cut_batches(events: Sequence[LogEvent]) -> list[LogBatch]:
    """All of ``events`` (file order) as consecutive batches within the limits."""
    batches: list[LogBatch] = []
    builder = BatchBuilder()
    for event in events:
        if not builder.fits(event):
            batches.append(builder.take())
        builder.add(event)
    if len(builder):
        batches.append(builder.take())
    return batches


def split_window(events: Sequence[LogEvent], now_ms: int) -> tuple[list[LogEvent], dict[str, int]]:
    """The events CloudWatch accepts at ``now_ms``, and how many were left out, by reason."""
    kept: list[LogEvent] = []
    excluded: dict[str, int] = {}
    for event in events:
        reason = window_reason(event.timestamp, now_ms)
        if reason is None:
            kept.append(event)
        else:
            excluded[reason] = excluded.get(reason, 0) + 1
    return kept, excluded


def rejected_counts(info: Mapping[str, int] | None, n_events: int) -> dict[str, int]:
    """Events CloudWatch refused, by reason, from a ``rejectedLogEventsInfo`` of ``n_events``.

    AWS semantics: ``tooNewLogEventStartIndex`` is the first too-new index (inclusive);
    ``tooOldLogEventEndIndex`` and ``expiredLogEventEndIndex`` end the too-old and expired
    prefixes (exclusive). Each event is counted once; expired wins over too old.
    """
    if not info:
        return {}
    counted: set[int] = set()
    result: dict[str, int] = {}

    def count(reason: str, indices: range) -> None:
        fresh = [i for i in indices if i not in counted]
        if fresh:
            counted.update(fresh)
            result[reason] = result.get(reason, 0) + len(fresh)

    expired = info.get("expiredLogEventEndIndex")
    if expired is not None:
        count("expired", range(0, min(max(expired, 0), n_events)))
    too_old = info.get("tooOldLogEventEndIndex")
    if too_old is not None:
        count("too_old", range(0, min(max(too_old, 0), n_events)))
    too_new = info.get("tooNewLogEventStartIndex")
    if too_new is not None:
        count("too_new", range(max(too_new, 0), n_events))
    return result
