"""The CRI joiner: P chunks joined up to their F per stream, partials given up counted, and the
offset a reader saves never splitting a line, against a plain reference."""

from __future__ import annotations

import random
from collections.abc import Set
from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from log_exporter import settings as exporter_settings
from log_exporter.parse import MALFORMED
from log_exporter.sources.cri import (
    INPUT_FORMATS,
    PARTIAL,
    UNSTRUCTURED,
    CriFramer,
    cri_time,
    decode,
)

STREAMS = ("stdout", "stderr")


@dataclass
class Written:
    """What the runtime wrote: the file's bytes, and per stream the lines it holds whole and the
    number of partials never ended."""

    data: bytes
    whole: dict[str, list[bytes]]
    partials: dict[str, int]


def cri_file(
    lines: list[tuple[str, bytes]], split: int, seed: int, cut_last: Set[str] = frozenset()
) -> Written:
    """The file a runtime writes for ``lines`` (stream, content), each cut into ``split``-byte P
    chunks ended by an F, the streams' chunks interleaved at random (each stream in order); a
    stream in ``cut_last`` loses the F of its last line (the runtime was killed)."""
    rng = random.Random(seed)
    queues: dict[str, list[bytes]] = {s: [] for s in STREAMS}
    whole: dict[str, list[bytes]] = {s: [] for s in STREAMS}
    partials = dict.fromkeys(STREAMS, 0)
    by_stream: dict[str, list[bytes]] = {s: [] for s in STREAMS}
    for stream, content in lines:
        by_stream[stream].append(content)
    for stream, contents in by_stream.items():
        for n, content in enumerate(contents):
            pieces = [content[i : i + split] for i in range(0, len(content), split)] or [b""]
            cut = stream in cut_last and n == len(contents) - 1 and len(pieces) > 1
            for k, piece in enumerate(pieces):
                last = k == len(pieces) - 1
                if cut and last:
                    break
                tag = b"F" if last else b"P"
                queues[stream].append(b"%s %s %s" % (stream.encode(), tag, piece))
            if cut:
                partials[stream] += 1
            else:
                whole[stream].append(content)
    out = []
    t = 0
    while any(queues.values()):
        stream = rng.choice([s for s in STREAMS if queues[s]])
        t += 1
        stamp = b"2026-12-07T10:15:%02d.%09dZ" % (t // 10**6 % 60, t)
        out.append(stamp + b" " + queues[stream].pop(0) + b"\n")
    return Written(b"".join(out), whole, partials)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        out.append(data[pos : pos + cuts[i % len(cuts)]])
        pos += cuts[i % len(cuts)]
        i += 1
    return out


def per_stream(lines: list[bytes]) -> tuple[dict[str, list[bytes]], dict[str, int]]:
    """The contents handed over per stream, and the partials counted per stream."""
    whole: dict[str, list[bytes]] = {s: [] for s in STREAMS}
    partials = dict.fromkeys(STREAMS, 0)
    for raw in lines:
        _, stream, tag, *content = raw.split(b" ", 3)
        if tag == b"P":
            partials[stream.decode()] += 1
        else:
            whole[stream.decode()].append(content[0] if content else b"")
    return whole, partials


contents = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    # Content that looks like the framing itself: " P ", " F ", "stdout".
    st.text(alphabet=" PFstdou{}", max_size=40).map(str.encode),
)
written_lines = st.lists(st.tuples(st.sampled_from(STREAMS), contents), max_size=25)


@settings(max_examples=300)
@given(
    lines=written_lines,
    split=st.integers(1, 20),
    seed=st.integers(0, 1000),
    cuts=st.lists(st.integers(1, 50), min_size=1, max_size=8),
    cut_last=st.sets(st.sampled_from(STREAMS)),
)
def test_chunks_joined_per_stream_whatever_the_reads(
    lines: list[tuple[str, bytes]],
    split: int,
    seed: int,
    cuts: list[int],
    cut_last: set[str],
) -> None:
    """However the file is read and however stdout's and stderr's chunks interleave, each
    stream's lines come out whole, in order, and every partial never ended counts once."""
    written = cri_file(lines, split, seed, cut_last)
    framer = CriFramer(10_000)
    got: list[bytes] = []
    for chunk in chunks(written.data, cuts):
        out, oversized = framer.feed(chunk)
        assert oversized == 0
        got += out
    out, _ = framer.finish()
    got += out
    assert per_stream(got) == (written.whole, written.partials)


@settings(max_examples=300)
@given(
    lines=written_lines,
    split=st.integers(1, 20),
    seed=st.integers(0, 1000),
    cuts=st.lists(st.integers(1, 50), min_size=1, max_size=8),
    stop=st.integers(0, 10_000),
    limit=st.sampled_from([10_000, 200, 60]),
)
# A partial given up in the read that stops: what it held back is handed over in that read.
@example(
    lines=[("stdout", b""), ("stderr", b"\x00\x00")], split=1, seed=115, cuts=[6], stop=14, limit=60
)
def test_restart_at_the_saved_offset_reads_every_line_once(
    lines: list[tuple[str, bytes]], split: int, seed: int, cuts: list[int], stop: int, limit: int
) -> None:
    """A reader stopped after any read and started again at the offset it saved (bytes read
    minus ``pending``) hands over what one reader from the start does, each line once: the
    offset never splits a partial from the chunk that ends it."""
    written = cri_file(lines, split, seed)
    one = CriFramer(limit)
    alone = [line for chunk in chunks(written.data, cuts) for line in one.feed(chunk)[0]]
    alone += one.finish()[0]
    framer = CriFramer(limit)
    got: list[bytes] = []
    read = 0
    for n, chunk in enumerate(chunks(written.data, cuts)):
        if n == stop % (len(written.data) + 1):
            break
        got += framer.feed(chunk)[0]
        read += len(chunk)
    offset = read - framer.pending
    again = CriFramer(limit)
    again.start_after(written.data[:offset], at_file_start=True)
    for chunk in chunks(written.data[offset:], cuts):
        got += again.feed(chunk)[0]
    got += again.finish()[0]
    assert per_stream(got) == per_stream(alone)
    if limit == 10_000:
        assert per_stream(got) == (written.whole, written.partials)


@settings(max_examples=200)
@given(
    lines=st.lists(st.tuples(st.sampled_from(STREAMS), contents), min_size=1, max_size=25),
    split=st.integers(1, 20),
    seed=st.integers(0, 1000),
    limit=st.integers(1, 80),
)
def test_lines_over_the_limit_are_counted_and_the_rest_kept(
    lines: list[tuple[str, bytes]], split: int, seed: int, limit: int
) -> None:
    """A joined line over the limit counts as oversized and is dropped; every other line still
    comes out whole, or, when the lines it held back outgrew the limit, its partial is given up
    and counted: no line is lost uncounted, none is glued to another."""
    written = cri_file(lines, split, seed)
    framer = CriFramer(limit)
    got: list[bytes] = []
    oversized = 0
    for chunk in chunks(written.data, [7]):
        out, n = framer.feed(chunk)
        got += out
        oversized += n
    out, n = framer.finish()
    got += out
    oversized += n
    whole, partials = per_stream(got)
    for stream in STREAMS:
        # Lines handed over are the stream's own, in order.
        expected = iter(written.whole[stream])
        assert all(any(c == e for e in expected) for c in whole[stream])
    total = sum(len(v) for v in written.whole.values())
    handed = sum(len(v) for v in whole.values()) + sum(partials.values()) + oversized
    assert handed == total
    assert all(len(c) <= limit for v in whole.values() for c in v)


def test_partial_given_up_at_the_end_of_the_file_is_counted_not_glued() -> None:
    """A P left without its F at the end of a file (the container killed mid-line) counts as
    one partial line; the next file's first line is not glued to it."""
    framer = CriFramer(1 << 20)
    first = b'2026-12-07T10:15:00.1Z stdout P {"event": "a", "x": "' + b"y" * 10 + b"\n"
    out, _ = framer.feed(first)
    assert out == []
    out, _ = framer.finish()
    assert decode(out) == [PARTIAL]
    out, _ = framer.feed(b'2026-12-07T10:15:01.1Z stdout F {"event": "b"}\n')
    assert decode(out) == [{"event": "b"}]


def test_content_that_is_no_json_object_is_unstructured_and_a_non_cri_line_malformed() -> None:
    """A plain print or a traceback on stderr is UNSTRUCTURED, a line that is not CRI at all is
    MALFORMED, empty content is blank, and an event keeps its own fields."""
    lines = [
        b'2026-12-07T10:15:00.123456789Z stdout F {"event": "chat.request"}',
        b"2026-12-07T10:15:00.2Z stderr F Traceback (most recent call last):",
        b"2026-12-07T10:15:00.3Z stdout F [1, 2]",
        b"2026-12-07T10:15:00.4Z stdout F ",
        b'{"event": "chat.request"}',
        b"2026-12-07T10:15:00.5Z stdout X {}",
    ]
    framer = CriFramer(1 << 20)
    out, _ = framer.feed(b"".join(x + b"\n" for x in lines))
    assert decode(out) == [
        {"event": "chat.request"},
        UNSTRUCTURED,
        UNSTRUCTURED,
        None,
        MALFORMED,
        MALFORMED,
    ]
    assert cri_time(lines[0]) == 1796638500.123456
    assert cri_time(lines[4]) is None


def test_input_format_flag_offers_the_formats_the_sources_read() -> None:
    """--input-format's choices, written out in the settings table, are the formats read."""
    assert exporter_settings.INPUT_FORMAT.choices == INPUT_FORMATS
