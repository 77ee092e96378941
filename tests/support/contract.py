"""Events of the contract (docs/events.md) for tests to write: the common fields filled in as
SustainBot writes them, the event's own fields given by the test."""

from __future__ import annotations

import json
from typing import Any

TIMESTAMP = "2026-02-01T14:30:00.123Z"
# What SustainBot writes for an ordinary event; the schema allows DEBUG to CRITICAL.
LEVEL = "INFO"
LOGGER = "sustainbot.test"
TRACE_ID = "0" * 32


def contract_event(
    event: str,
    timestamp: str | None = TIMESTAMP,
    *,
    level: str = LEVEL,
    logger: str = LOGGER,
    trace_id: str = TRACE_ID,
    **fields: Any,
) -> dict[str, Any]:
    """One event as a dict, the common fields first in the contract's order, then ``fields``
    (which may also replace a common one); ``timestamp=None`` leaves the field out."""
    record: dict[str, Any] = {} if timestamp is None else {"timestamp": timestamp}
    record.update(
        level=level,
        logger=logger,
        message=event,
        event=event,
        trace_id=trace_id,
        schema_version=1,
    )
    record.update(fields)
    return record


def contract_line(
    event: str,
    timestamp: str | None = TIMESTAMP,
    *,
    level: str = LEVEL,
    logger: str = LOGGER,
    trace_id: str = TRACE_ID,
    **fields: Any,
) -> bytes:
    """:func:`contract_event` as one JSONL line, with its newline."""
    record = contract_event(
        event, timestamp, level=level, logger=logger, trace_id=trace_id, **fields
    )
    return json.dumps(record).encode() + b"\n"
