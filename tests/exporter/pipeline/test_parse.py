"""parse: one line of bytes -> an event, nothing (blank), or MALFORMED, never an exception."""

from __future__ import annotations

import pytest

from log_exporter.parse import MALFORMED, event_time, parse_line

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(
    "raw",
    [b"", b" ", b"\t \t", b"\r", b" \r", BOM, BOM + b"  \r"],
    ids=["empty", "space", "tabs", "cr", "space-cr", "bom", "bom-space-cr"],
)
def test_blank_line_is_skipped_not_malformed(raw: bytes) -> None:
    """Blank and whitespace-only lines are skipped without counting as malformed."""
    assert parse_line(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event": "a"',
        b'{"event": "\xff"}',
        b"[1, 2]",
        b'"a string"',
        b"42",
        b"null",
        b"true",
        b'{"v": NaN}',
        b'{"v": Infinity}',
        b'{"event": "a"} trailing',
        BOM + BOM + b'{"event": "a"}',
        b"\x00",
    ],
    ids=[
        "truncated",
        "invalid-utf8",
        "array",
        "string",
        "number",
        "null",
        "bool",
        "nan",
        "infinity",
        "trailing-garbage",
        "two-boms",
        "nul",
    ],
)
def test_not_a_json_object_is_malformed(raw: bytes) -> None:
    """Anything but one JSON object is MALFORMED (and never raises)."""
    assert parse_line(raw) is MALFORMED


def test_crlf_line_end_is_ignored() -> None:
    """A line written with CRLF parses like the same line with LF."""
    assert parse_line(b'{"event": "a", "n": 1}\r') == {"event": "a", "n": 1}


def test_bom_at_start_of_first_line_is_ignored() -> None:
    """A UTF-8 BOM at the start of the file does not make the first event malformed."""
    assert parse_line(BOM + b'{"event": "a"}') == {"event": "a"}


def test_bom_at_start_of_later_line_is_ignored_too() -> None:
    """A BOM at the start of any line is ignored (the tailer cannot tell where a file began)."""
    assert parse_line(BOM + b'{"event": "b"}\r') == {"event": "b"}


def test_bom_before_a_non_object_is_still_malformed() -> None:
    """Stripping a BOM does not make an array acceptable."""
    assert parse_line(BOM + b"[1]") is MALFORMED


def test_key_order_and_extra_keys_are_accepted() -> None:
    """Any key order and unknown keys parse, as the contract requires."""
    event = parse_line(b'{"zzz": {"nested": [1]}, "event": "aim.request", "a": null}')
    assert event == {"zzz": {"nested": [1]}, "event": "aim.request", "a": None}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-02-01T14:30:00.123Z", 1769956200.123),
        ("2026-02-01T14:30:00Z", 1769956200.0),
        ("2026-02-01T15:30:00.123+01:00", 1769956200.123),
        # No offset: the contract writes UTC, so it is read as UTC, not local time.
        ("2026-02-01T14:30:00.123", 1769956200.123),
    ],
)
def test_event_time_reads_rfc3339(ts: str, expected: float) -> None:
    """Replay places each event at the time its RFC 3339 timestamp says."""
    assert event_time({"timestamp": ts}) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("ts", [None, 17, "", "yesterday", "2026-13-01T00:00:00Z", ["x"]])
def test_event_time_of_unusable_timestamp_is_none(ts: object) -> None:
    """A missing or unparsable timestamp yields None instead of an error."""
    assert event_time({"timestamp": ts}) is None
    assert event_time({}) is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"event": "a", "x": 1e400}', float("inf")),
        (b'{"event": "a", "x": -1e400}', float("-inf")),
        (b'{"event": "a", "x": ' + b"9" * 400 + b"}", int("9" * 400)),
        (BOM + b'{"event": "a", "x": 1e400}', float("inf")),
    ],
    ids=["1e400", "minus-1e400", "400-digit-int", "bom-1e400"],
)
def test_number_beyond_a_double_keeps_the_event(raw: bytes, value: float) -> None:
    """A number out of double range does not make the line malformed: the event is kept, with
    the number as an infinity (or the big integer), for the metric reading it to judge."""
    event = parse_line(raw)
    assert isinstance(event, dict)
    assert event == {"event": "a", "x": value}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event": "a", "x": 1e400, "y": NaN}',
        b'{"event": "a", "x": 1e400, "y": "\\ud800"}',
        b'{"event": "a", "x": 1e400',
        b"[1e400]",
    ],
    ids=["nan-literal", "lone-surrogate", "unterminated", "not-an-object"],
)
def test_out_of_range_number_does_not_let_other_faults_through(raw: bytes) -> None:
    """What orjson refuses besides the number (NaN literals, lone surrogates, broken JSON, a
    non-object) is still malformed when the line also holds a number beyond a double."""
    assert parse_line(raw) is MALFORMED
