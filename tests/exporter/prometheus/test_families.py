"""An exemplar's timestamp text, taken by a shortcut for SustainBot's shape, is exactly the text
client_python writes for ``event_time``'s float, and its memo stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from log_exporter.parse import event_time
from log_exporter.prometheus import families
from log_exporter.prometheus.families import exemplar_text, stamp_text


def _expected(raw: object) -> str:
    stamp = event_time({"timestamp": raw})
    return "" if stamp is None else f" {stamp}"


_moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(tzinfo=UTC))


@given(_moments, st.integers(0, 999))
def test_a_contract_timestamp_gives_client_pythons_text(moment: datetime, ms: int) -> None:
    """Any ``YYYY-MM-DDTHH:MM:SS.mmmZ``, before 1970 and after 5138 included, gives the text of
    ``event_time``'s float (trailing zeros of the milliseconds and all)."""
    raw = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z"
    assert stamp_text(raw) == _expected(raw)


@given(_moments, st.integers(0, 23), st.characters(), st.sampled_from(range(24)))
@example(datetime(2026, 2, 1, tzinfo=UTC), 0, "6", 17)  # second 60
@example(datetime(2026, 2, 1, tzinfo=UTC), 0, "\u0664", 21)  # an Arabic-Indic digit
@example(datetime(2026, 2, 1, tzinfo=UTC), 0, " ", 10)  # another date-time separator
@example(datetime(2026, 2, 1, tzinfo=UTC), 0, "+", 20)
def test_a_timestamp_off_the_shape_gives_client_pythons_text_too(
    moment: datetime,
    _: int,  # noqa: PT019 - drawn by Hypothesis (unused here), not a fixture
    char: str,
    at: int,
) -> None:
    """A character changed anywhere (a second 60, a non-ASCII digit, another separator) gives
    what ``event_time`` makes of it, a timestamp or none."""
    raw = moment.strftime("%Y-%m-%dT%H:%M:%S.123Z")
    raw = raw[:at] + char + raw[at + 1 :]
    assert stamp_text(raw) == _expected(raw)


@given(st.one_of(st.none(), st.integers(), st.text(max_size=30)))
def test_anything_else_gives_client_pythons_text(raw: object) -> None:
    """A missing, non-string or free-form timestamp gives what ``event_time`` makes of it."""
    assert stamp_text(raw) == _expected(raw)


def test_an_exemplar_of_repeated_amounts_and_odd_values_is_composed_as_client_python_does() -> None:
    """The amount's memo never turns -0.0 into 0.0, and a value is escaped."""
    raw = "2026-02-01T14:03:00.120Z"
    assert exemplar_text("t", ('a"b', 1.0, raw)) == ' # {t="a\\"b"} 1.0 1769954580.12'
    assert exemplar_text("t", ("x", 0.0, raw)).startswith(' # {t="x"} 0.0 ')
    assert exemplar_text("t", ("x", -0.0, raw)).startswith(' # {t="x"} -0.0 ')
    assert exemplar_text("t", ("x", 1e7, None)) == ' # {t="x"} 1e+07'


def test_the_timestamp_memo_stays_bounded_however_many_seconds_the_log_holds() -> None:
    """Ten thousand distinct seconds keep at most the memo's bound of entries."""
    start = datetime(2026, 2, 1, tzinfo=UTC)
    for i in range(10_000):
        raw = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.500Z")
        assert stamp_text(raw) == _expected(raw)
        assert len(families._SECONDS) <= families._KEPT
