"""The shared code path of ``serve`` and ``replay``: lines -> parse -> spec program -> store."""

from __future__ import annotations

from typing import Any

import orjson

from log_exporter.parse import MALFORMED, event_time, parse_line
from log_exporter.spec import Program
from log_exporter.store import Store
from log_exporter.values import Batch

__all__ = ["Pipeline"]


class Pipeline:
    """Applies lines to a store with a compiled program. Nothing in a line can raise out of it."""

    def __init__(self, program: Program, store: Store) -> None:
        self.program = program
        self.store = store
        self._dispatch = program.bind(store)

    def reload(self, program: Program) -> None:
        """Switch to a reloaded spec, keeping the values of unchanged metrics (see Store)."""
        with self.store.lock:
            self.store.reconfigure(program.spec.definitions)
            self._dispatch = program.bind(self.store)
            self.program = program

    def feed(self, batch: Batch) -> None:
        """Apply a whole batch under one acquisition of the store's lock.

        ``log_exporter_last_event_timestamp_seconds`` takes the timestamp of the batch's last
        event that has a valid one (the gauge shows the latest anyway), so where a batch splits
        never changes the value.
        """
        store = self.store
        dispatch_get = self._dispatch.get
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        parsed = 0
        malformed = 0
        last: dict[str, Any] | None = None
        with store.lock:
            try:
                for raw in batch.lines:
                    # Inline fast path of parse_line: almost every line is a plain JSON object.
                    try:
                        event = loads(raw)
                    except decode_error:
                        event = parse_line(raw)
                        if event is None:
                            continue
                        if event is MALFORMED:
                            malformed += 1
                            continue
                    if type(event) is not dict:
                        malformed += 1
                        continue
                    parsed += 1
                    last = event
                    et = event.get("event")
                    if type(et) is str:
                        fn = dispatch_get(et)
                        if fn is not None:
                            fn(event)
            finally:
                lines = store.lines
                lines["parsed"] += parsed
                lines["malformed"] += malformed
                lines["oversized"] += batch.oversized
                store.bytes_read += batch.bytes_read
                store.rotations += batch.rotations
                store.truncations += batch.truncations
                if last is not None:
                    ts = event_time(last)
                    if ts is None:
                        # Rare: parse again from the end only to find the latest timed event.
                        ts = _latest_event_time(batch.lines)
                    if ts is not None:
                        store.last_event_timestamp = ts

    def accept(self, raw: bytes) -> dict[str, Any] | None:
        """Parse and count one line; the event to ``apply``, or None when there is none.

        Does not take the lock, count bytes or set the last-event timestamp: the caller (replay)
        holds the lock if anyone reads concurrently, and sets ``store.last_event_timestamp``
        from ``parse.event_time``, which it needs for its own stepping anyway.
        """
        lines = self.store.lines
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            event = parse_line(raw)
            if event is None:
                return None
        if type(event) is not dict:
            lines["malformed"] += 1
            return None
        lines["parsed"] += 1
        return event

    def apply(self, event: dict[str, Any]) -> None:
        """Derive an accepted event's metrics into the store (caller holds the lock if needed)."""
        et = event.get("event")
        if type(et) is str:
            fn = self._dispatch.get(et)
            if fn is not None:
                fn(event)


def _latest_event_time(lines: list[bytes]) -> float | None:
    for raw in reversed(lines):
        event = parse_line(raw)
        if type(event) is dict:
            ts = event_time(event)
            if ts is not None:
                return ts
    return None
