"""How every user of an event finds its type and its time: the spec's ``[input]`` settings.

The pipeline, CloudWatch, replay's file order and ``trace`` read an event's type and time only
through an ``EventReader``, so a spec reading another application's log changes them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any, Final

from log_exporter.parse import event_time, time_parser
from log_exporter.spec.model import InputSpec
from log_exporter.spec.paths import Path, path_expr, path_text

__all__ = ["DEFAULT_READER", "EventReader"]


def _reader(
    path: Path,
    convert: Callable[[Any], Any] | None = None,
    fields: Mapping[str, str] | None = None,
) -> Callable[..., Any]:
    """``lambda ev: convert(VALUE AT path)``, compiled: the path read with inline look-ups, as
    the generated program reads it (a call and a loop per event would cost more than it)."""
    if fields is not None and convert is None and len(path) == 1:
        return attrgetter(fields[path[0]])  # a typed event's attribute: one call in C
    namespace: dict[str, Any] = {"convert": convert}
    expr = path_expr(path, "ev", "t", fields)
    source = f"lambda ev: {expr if convert is None else f'convert({expr})'}"
    return eval(compile(source, f"<read {path_text(path)}>", "eval"), namespace)  # type: ignore[no-any-return]


class EventReader:
    """An event's type (what ``events`` compares with) and its time in Unix seconds."""

    __slots__ = ("input", "key", "time_of", "type_of")

    def __init__(self, spec_input: InputSpec, fields: Mapping[str, str] | None = None) -> None:
        """``fields``: read typed events (``log_exporter.spec.typed``) with these attributes of
        the top-level keys, instead of dicts."""
        self.input = spec_input
        path = spec_input.event_field
        # A top-level event field of a dict is read inline by the pipeline (``event.get(key)``),
        # without the call; None when it is nested, or the events are typed.
        self.key: str | None = path[0] if len(path) == 1 and fields is None else None
        self.type_of: Callable[[Any], Any] = _reader(path, fields=fields)
        self.time_of: Callable[[Any], float | None]
        if (
            spec_input.timestamp_field == ("timestamp",)
            and spec_input.timestamp_format == "rfc3339"
            and fields is None
        ):
            self.time_of = event_time
        else:
            convert = time_parser(spec_input.timestamp_format)
            self.time_of = _reader(spec_input.timestamp_field, convert, fields)


DEFAULT_READER: Final = EventReader(InputSpec())
