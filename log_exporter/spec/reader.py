"""How every user of an event finds its type and its time: the spec's ``[input]`` settings.

The pipeline, CloudWatch, replay's file order and ``trace`` read an event's type and time only
through an ``EventReader``, so a spec reading another application's log changes them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

from log_exporter.parse import event_time, time_value
from log_exporter.spec.model import InputSpec
from log_exporter.spec.paths import Path, read_path

__all__ = ["DEFAULT_READER", "EventReader"]


def _time_at(event: dict[str, Any], path: Path, fmt: str) -> float | None:
    return time_value(read_path(event, path), fmt)


def _type_at(event: dict[str, Any], path: Path) -> Any:
    return read_path(event, path)


class EventReader:
    """An event's type (what ``events`` compares with) and its time in Unix seconds."""

    __slots__ = ("input", "key", "time_of", "type_of")

    def __init__(self, spec_input: InputSpec) -> None:
        self.input = spec_input
        path = spec_input.event_field
        # A top-level event field is read inline by the pipeline (``event.get(key)``), without
        # the call; None when it is nested.
        self.key: str | None = path[0] if len(path) == 1 else None
        self.type_of: Callable[[dict[str, Any]], Any] = functools.partial(_type_at, path=path)
        self.time_of: Callable[[dict[str, Any]], float | None]
        if spec_input.timestamp_field == ("timestamp",) and spec_input.timestamp_format == (
            "rfc3339"
        ):
            self.time_of = event_time
        else:
            self.time_of = functools.partial(
                _time_at, path=spec_input.timestamp_field, fmt=spec_input.timestamp_format
            )


DEFAULT_READER: Final = EventReader(InputSpec())
