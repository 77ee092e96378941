"""One line of bytes -> one event (a dict), nothing (a blank line), or MALFORMED.

Knows JSON, the byte order mark and CRLF line ends; nothing about metrics. ``parse_line`` never
raises, whatever the bytes.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, final

import orjson

__all__ = [
    "MALFORMED",
    "TIME_FORMATS",
    "Malformed",
    "event_time",
    "parse_line",
    "time_parser",
    "time_value",
]

_BOM: Final = b"\xef\xbb\xbf"
# How orjson says a number does not fit a double; such a line is parsed by the standard library.
_OUT_OF_RANGE: Final = "number is infinity when parsed as double"


@final
class Malformed:
    """The type of ``MALFORMED``: a line that is not a JSON object."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MALFORMED"


MALFORMED: Final = Malformed()


def parse_line(raw: bytes) -> dict[str, Any] | Malformed | None:
    """Parse one line (without its b"\\n"): the event, None for a blank line, or MALFORMED.

    A trailing b"\\r" is ignored (orjson treats it as JSON whitespace). A UTF-8 byte order mark
    is ignored at the start of *any* line, not only the first of a file: the tailer hands over
    whole lines without knowing where a file began, and an editor or a concatenation of files can
    leave a BOM mid-stream, where it is as harmless as at the start.
    """
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # The rare path: a BOM, a blank line, a number beyond a double, or a malformed line.
        return _parse_slow(raw, exc)
    return event if type(event) is dict else MALFORMED


def _parse_slow(raw: bytes, error: orjson.JSONDecodeError) -> dict[str, Any] | Malformed | None:
    if raw.startswith(_BOM):
        raw = raw[3:]
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = exc
        else:
            return event if type(event) is dict else MALFORMED
    if str(error).startswith(_OUT_OF_RANGE):
        return _parse_out_of_range(raw)
    # bytes.strip() removes ASCII whitespace, \r included: whitespace-only means blank.
    return None if not raw.strip() else MALFORMED


def _parse_out_of_range(raw: bytes) -> dict[str, Any] | Malformed:
    """A line that is valid JSON but has a number beyond a double (``1e400``, 400 digits).

    orjson refuses the whole line; the standard parser takes it, the number becoming an infinity
    (or a big int), which a metric reading that field counts as an invalid value like any other.
    A field no metric reads costs nothing. What orjson refuses for other reasons stays refused:
    ``NaN``/``Infinity`` literals are rejected here too, and so are lone surrogates, which no
    exposition could carry.
    """
    try:
        event = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        if type(event) is not dict:
            return MALFORMED
        json.dumps(event, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):
        # ValueError covers JSONDecodeError and the rejected constants.
        return MALFORMED
    return event


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def event_time(event: dict[str, Any]) -> float | None:
    """The event's ``timestamp`` as Unix seconds, or None when it is missing or not RFC 3339.

    A timestamp without a UTC offset is taken as UTC, which is what the contract writes.
    """
    return _rfc3339(event.get("timestamp"))


def _rfc3339(ts: Any) -> float | None:
    if type(ts) is not str:
        return None
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        # Years near the datetime limits cannot become a Unix time on every platform.
        return None


# The time formats of a spec's ``[input]`` timestamp: Unix times by their unit's divisor.
_UNIX: Final = {"unix": 1, "unix_ms": 10**3, "unix_us": 10**6, "unix_ns": 10**9}
TIME_FORMATS: Final = ("rfc3339", *_UNIX)
_NUMERIC: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]{1,3})?")


def time_value(v: Any, fmt: str) -> float | None:
    """An event's time value in format ``fmt`` (one of ``TIME_FORMATS``) as Unix seconds, or
    None when it does not read as one (the event is then untimed, never malformed).

    ``rfc3339`` reads as ``event_time`` does (a space for the ``T``, and no zone as UTC). The
    Unix formats take a JSON number or a numeric string; an integer or a string is divided
    exactly, so the same instant written in any format gives the same float.
    """
    if fmt == "rfc3339":
        return _rfc3339(v)
    div = _UNIX[fmt]
    t = type(v)
    try:
        if t is int:
            seconds = v / div
        elif t is float:
            seconds = v if div == 1 else v / div
        elif t is str and len(v) <= 64 and _NUMERIC.fullmatch(v):
            # Imported here: fractions brings decimal, memory a log of numbers never needs.
            from fractions import Fraction

            seconds = float(Fraction(v) / div)
        else:
            return None
    except (OverflowError, ValueError, ZeroDivisionError):
        return None
    return seconds if math.isfinite(seconds) else None


def time_parser(fmt: str) -> Callable[[Any], float | None]:
    """``time_value`` of one format, as a function of the value only."""
    if fmt == "rfc3339":
        return _rfc3339
    return functools.partial(time_value, fmt=fmt)
