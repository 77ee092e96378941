"""The line framer of the tailer and replay: chunks in, whole lines and oversized counts out."""

from __future__ import annotations

from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from log_exporter.sources.framing import LineFramer


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        size = cuts[i % len(cuts)]
        chunks.append(data[pos : pos + size])
        pos, i = pos + size, i + 1
    return chunks


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n")),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=10),
    limit=st.integers(1, 25),
    count=st.sampled_from(["at_end", "when_seen"]),
)
def test_chunked_line_splitting_equals_splitting_the_whole_file(
    data: bytes, cuts: list[int], limit: int, count: Literal["at_end", "when_seen"]
) -> None:
    """However a file arrives in chunks, the lines and the oversized count are those of splitting
    the whole file at once (the last line counts without its newline), whenever oversized lines
    are counted; and the bytes fed minus ``pending`` always end at a line boundary."""
    framer = LineFramer(limit, count_oversized=count)
    lines: list[bytes] = []
    oversized = fed = 0
    for chunk in _chunks(data, cuts):
        got, n = framer.feed(chunk)
        lines += got
        oversized += n
        fed += len(chunk)
        assert framer.pending == fed - (data.rfind(b"\n", 0, fed) + 1)
    got, n = framer.finish()
    lines += got
    oversized += n
    whole = data.split(b"\n")
    if whole[-1] == b"":
        whole.pop()
    assert lines == [x for x in whole if len(x) <= limit]
    assert oversized == sum(1 for x in whole if len(x) > limit)
    assert fed == len(data) and framer.pending == 0


def test_oversized_line_across_chunks_is_counted_at_its_end_or_when_seen() -> None:
    """A line that outgrows the limit over several chunks is counted once: in the chunk that
    brings its newline by default (a position inside it still points at its start), in the
    chunk that made it too long with ``when_seen``."""
    at_end, when_seen = LineFramer(5), LineFramer(5, count_oversized="when_seen")
    for chunk, want_at_end, want_when_seen in [
        (b"ok\nabc", ([b"ok"], 0), ([b"ok"], 0)),
        (b"defg", ([], 0), ([], 1)),
        (b"hij", ([], 0), ([], 0)),
        (b"k\nnext\n", ([b"next"], 1), ([b"next"], 0)),
    ]:
        assert at_end.feed(chunk) == want_at_end
        assert when_seen.feed(chunk) == want_when_seen
    assert at_end.pending == when_seen.pending == 0


def test_oversized_last_line_without_newline_is_counted_once() -> None:
    """An oversized line the stream ends in is counted by ``finish()`` unless it was counted when
    seen; a last line within the limit is returned without its newline."""
    at_end, when_seen = LineFramer(3), LineFramer(3, count_oversized="when_seen")
    assert at_end.feed(b"a\nlong") == ([b"a"], 0)
    assert when_seen.feed(b"a\nlong") == ([b"a"], 1)
    assert at_end.pending == when_seen.pending == 4
    assert at_end.finish() == ([], 1)
    assert when_seen.finish() == ([], 0)
    assert at_end.feed(b"x\r\nyz") == ([b"x\r"], 0)
    assert at_end.finish() == ([b"yz"], 0)


def test_skip_line_drops_up_to_the_next_newline_and_counts_it_there() -> None:
    """A reader starting inside an oversized line drops it up to its newline, counting it then;
    ``pending`` covers the skipped bytes, so the offset stays where reading started."""
    framer = LineFramer(4, count_oversized="when_seen")
    framer.skip_line()
    assert framer.feed(b"xxxxxxxx") == ([], 0)
    assert framer.pending == 8
    assert framer.feed(b"x\nab\n") == ([b"ab"], 1)
    assert framer.pending == 0
