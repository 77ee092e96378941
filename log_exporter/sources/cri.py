"""Container runtime (CRI) logs: the runtime's partial chunks joined into the lines the app wrote.

The kubelet's runtime (containerd, CRI-O) writes every line a container prints to stdout or
stderr as ``<RFC3339Nano time> <stdout|stderr> <P|F> <content>``, and cuts a line longer than its
buffer (16 KiB for containerd) into ``P`` chunks ended by an ``F`` one; stdout's and stderr's
chunks may interleave. ``CriFramer`` frames such a file as ``LineFramer`` frames a plain one (the
tailer and replay use either through the same calls) and hands over logical lines: a line the
runtime wrote whole as it is, a joined one as ``<time of its first chunk> <stream> F <content>``,
and a partial that never got its ``F`` (the file ended, the runtime was killed) as
``<time> <stream> P``, which ``decode`` counts as ``partial``. ``decode`` turns logical lines into
what ``parse.parse_line`` gives for a JSON line, with content that is no JSON object
(a plain print, a traceback) counted as ``UNSTRUCTURED``, not as malformed.

Exact resumption: the framer's ``pending`` reaches back to the start of the earliest partial not
yet ended, and the whole lines that end after that start are held back until it ends, so the
offset a reader saves never splits a partial from its end: a restart reads it again whole, and
nothing before the offset is read twice. The lines held are bounded by the line limit; past it
the partial is given up (counted ``partial``) and the rest of its chunks dropped.
"""

from __future__ import annotations

from typing import Any, Final, Literal, final

import orjson

from log_exporter.parse import MALFORMED, Malformed, parse_line, time_parser

__all__ = [
    "INPUT_FORMATS",
    "LOOK_BACK_BYTES",
    "PARTIAL",
    "UNSTRUCTURED",
    "CriFramer",
    "InputFormat",
    "Partial",
    "Unstructured",
    "cri_event",
    "cri_time",
    "decode",
]

INPUT_FORMATS: Final = ("json", "cri")
InputFormat = Literal["json", "cri"]

_STREAMS: Final = (b"stdout", b"stderr")
_WHOLE_HEADS: Final = frozenset((b"stdout F ", b"stderr F "))
_P_HEADS: Final = frozenset((b"stdout P ", b"stderr P "))
# A chunk without it holds no P chunk's line: its lines go out as they are. One short needle
# scans a read once (content holding it only sends the read the slow way).
_P_MARK: Final = b" P "
# How far back a reader starting inside a file looks for the streams' last chunks.
LOOK_BACK_BYTES: Final = 64 << 10
# What is kept of a physical line over the limit: enough for its time, stream and tag.
_HEAD_BYTES: Final = 64
# The timestamp's shape, checked cheaply on every line: "YYYY-MM-DDT..." at least 20 long.
_MIN_TIME_LEN: Final = 20


@final
class Unstructured:
    """The type of ``UNSTRUCTURED``: a CRI line whose content is not a JSON object."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSTRUCTURED"


@final
class Partial:
    """The type of ``PARTIAL``: a partial line that never got the chunk ending it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PARTIAL"


UNSTRUCTURED: Final = Unstructured()
PARTIAL: Final = Partial()

_rfc3339 = time_parser("rfc3339")


def _timed(raw: bytes, i: int) -> bool:
    """Whether the first field, ``raw[:i]``, is shaped as an RFC 3339 time."""
    return i >= _MIN_TIME_LEN and raw[4] == 45 and raw[10] in (84, 116)  # "-", "T" or "t"


def cri_time(raw: bytes) -> float | None:
    """The time of a CRI line, Unix seconds; None when it has none that reads."""
    i = raw.find(b" ")
    if not _timed(raw, i):
        return None
    return _rfc3339(raw[:i].decode("ascii", "replace"))


def decode(lines: list[bytes]) -> list[Any]:
    """Each logical line as ``parse_line`` gives a JSON line: the event (a dict), None for blank
    content, MALFORMED for a line that is not CRI, UNSTRUCTURED for content that is no JSON
    object, PARTIAL for a partial given up."""
    loads = orjson.loads
    out: list[Any] = []
    append = out.append
    for raw in lines:
        i = raw.find(b" ")
        if raw[i + 1 : i + 10] in _WHOLE_HEADS and _timed(raw, i):
            try:
                event = loads(raw[i + 10 :])
            except orjson.JSONDecodeError:
                append(_content(raw[i + 10 :]))
                continue
            append(event if type(event) is dict else UNSTRUCTURED)
        else:
            append(_odd(raw, i))
    return out


def cri_event(raw: bytes) -> Any:
    """One logical line as ``decode`` gives it."""
    return decode([raw])[0]


def _content(content: bytes) -> dict[str, Any] | Unstructured | None:
    event = parse_line(content)
    return UNSTRUCTURED if isinstance(event, Malformed) else event


def _odd(raw: bytes, i: int) -> dict[str, Any] | Unstructured | Partial | Malformed | None:
    """A line the fast path did not take: empty content, a partial given up, or not CRI."""
    if not _timed(raw, i):
        return None if not raw.strip() else MALFORMED
    rest = raw[i + 1 :]
    if rest in (b"stdout F", b"stderr F"):
        return None  # an empty line, written without the space before the content
    if rest in (b"stdout P", b"stderr P"):
        return PARTIAL
    return MALFORMED


class _Group:
    """The chunks of one partial line so far."""

    __slots__ = ("head", "parts", "size", "start", "too_long")

    def __init__(self, start: int, head: bytes) -> None:
        self.start = start  # offset of its first chunk's line
        self.head = head  # "<time> <stream>" of its first chunk
        self.parts: list[bytes] = []
        self.size = 0
        self.too_long = False

    def add(self, content: bytes, limit: int, too_long: bool = False) -> None:
        self.size += len(content)
        if self.too_long:
            return
        if too_long or self.size > limit:
            # Bounded memory: the rest of the line is counted, not kept.
            self.too_long = True
            self.parts.clear()
        else:
            self.parts.append(content)


# An item handed over: a logical line, or None for an oversized one.
_Item = bytes | None


class CriFramer:
    """Logical lines out of the byte chunks of a CRI log, fed in order (see the module's doc).

    The calls and ``pending`` are ``LineFramer``'s: ``feed`` gives the lines a chunk completes
    and the oversized ones it counted (a physical line, or a joined one, over ``max_line_bytes``),
    ``finish`` the rest at the end of the file, partials given up included.
    """

    __slots__ = (
        "_fed",
        "_groups",
        "_held",
        "_limit",
        "_line_end",
        "_out",
        "_oversized",
        "_skip_head",
        "_skip_to_end",
        "_skipping",
        "_waiting",
        "_waiting_bytes",
        "pending",
    )

    def __init__(
        self, max_line_bytes: int, *, count_oversized: Literal["at_end", "when_seen"] = "at_end"
    ) -> None:
        # ``count_oversized`` is LineFramer's; an oversized line counts here once it is ended
        # (at its newline or its F), which is exact for both the tailer and replay.
        del count_oversized
        self._limit = max_line_bytes
        self._held: list[bytes] = []  # pieces of the physical line in progress
        self._skipping = False  # the physical line in progress is over the limit
        self._skip_head = b""  # its first bytes: whose chunk it is
        self._fed = 0  # bytes fed since the start
        self._line_end = 0  # where the physical line in progress starts
        self._groups: dict[bytes, _Group] = {}  # by stream
        self._skip_to_end: set[bytes] = set()  # streams whose chunks up to the next F are dropped
        self._waiting: list[tuple[int, _Item]] = []  # ended after the earliest group's start
        self._waiting_bytes = 0
        self._out: list[bytes] = []
        self._oversized = 0
        self.pending = 0

    @property
    def max_line_bytes(self) -> int:
        return self._limit

    def feed(self, chunk: bytes) -> tuple[list[bytes], int]:
        """The logical lines ``chunk`` completes, and the oversized lines it counted."""
        lines = chunk.split(b"\n")
        rest = lines.pop()
        start = self._line_end
        fed_before = self._fed
        self._fed += len(chunk)
        if lines:
            first_len = fed_before - start + len(lines[0])
            if self._skipping:
                lines[0] = self._skip_head + lines[0][:_HEAD_BYTES]
            elif self._held:
                self._held.append(lines[0])
                lines[0] = b"".join(self._held)
                self._held.clear()
            first = lines[0]
            j = first.find(b" ")
            limit = self._limit
            if (
                not self._groups
                and not self._skipping
                and not self._skip_to_end
                and _P_MARK not in chunk
                and first[j + 1 : j + 10] not in _P_HEADS
                and first_len <= limit
                and (len(chunk) <= limit or max(map(len, lines)) <= limit)
            ):
                # Nothing to join: the lines go out as they are (the common case).
                out = lines
            else:
                self._physical(lines, start, first_len)
                out = []
            self._line_end = self._fed - len(rest)
            self._skipping = False
        else:
            out = []
        if rest and not self._skipping:
            self._held.append(rest)
            if self._fed - self._line_end > self._limit:
                self._skip_head = b"".join(self._held)[:_HEAD_BYTES]
                self._held.clear()
                self._skipping = True
        elif rest and len(self._skip_head) < _HEAD_BYTES:
            self._skip_head += rest[:_HEAD_BYTES]
        # Before the lines are handed over: giving a partial up hands over what it held back.
        self._settle()
        if self._out:
            out.extend(self._out)
            self._out = []
        oversized, self._oversized = self._oversized, 0
        return out, oversized

    def _physical(self, lines: list[bytes], start: int, first_len: int) -> None:
        """Take each whole physical line in turn, ``start`` being the first one's offset."""
        limit = self._limit
        at = start
        for n, line in enumerate(lines):
            length = first_len if n == 0 else len(line)
            if length > limit:
                # Over the limit already: only its start tells whose chunk it is.
                self._take(at, line[:_HEAD_BYTES], too_long=True)
            else:
                self._take(at, line)
            at += length + 1

    def _take(self, start: int, line: bytes, *, too_long: bool = False) -> None:
        """One whole physical line at offset ``start`` (only its start when ``too_long``)."""
        i = line.find(b" ")
        stream = line[i + 1 : i + 7]
        tag = line[i + 8 : i + 9]
        if (
            stream not in _STREAMS
            or line[i + 7 : i + 8] != b" "
            or tag not in (b"P", b"F")
            or line[i + 9 : i + 10] not in (b" ", b"")
            or not _timed(line, i)
        ):
            # Not CRI: handed over, decoded as malformed (or counted oversized).
            self._ended(start, None if too_long else line)
            return
        if stream in self._skip_to_end:
            if tag == b"F":
                self._skip_to_end.discard(stream)
            return
        group = self._groups.get(stream)
        if tag == b"P":
            if group is None:
                group = self._groups[stream] = _Group(start, line[: i + 7])
            group.add(line[i + 10 :], self._limit, too_long)
            return
        if group is None:
            self._ended(start, None if too_long else line)
            return
        group.add(line[i + 10 :], self._limit, too_long)
        del self._groups[stream]
        item = None if group.too_long else group.head + b" F " + b"".join(group.parts)
        self._release()
        self._ended(group.start, item)

    def _boundary(self) -> int | None:
        """The start of the earliest partial not ended, None when there is none."""
        if not self._groups:
            return None
        return min(g.start for g in self._groups.values())

    def _ended(self, start: int, item: _Item) -> None:
        """A logical line ended: out now, or held behind a partial that began before it."""
        boundary = self._boundary()
        if boundary is not None and start >= boundary:
            self._waiting.append((start, item))
            self._waiting_bytes += 64 + (0 if item is None else len(item))
            return
        self._emit(item)

    def _emit(self, item: _Item) -> None:
        if item is None:
            self._oversized += 1
        else:
            self._out.append(item)

    def _release(self) -> None:
        """Hand over the lines held that no longer follow a partial's start."""
        if not self._waiting:
            return
        boundary = self._boundary()
        keep: list[tuple[int, _Item]] = []
        for start, item in self._waiting:
            if boundary is not None and start >= boundary:
                keep.append((start, item))
            else:
                self._emit(item)
        self._waiting = keep
        self._waiting_bytes = sum(64 + (0 if i is None else len(i)) for _, i in keep)

    def _give_up(self, stream: bytes) -> None:
        """Count a partial as never ended (``partial``) and drop what it gathered."""
        group = self._groups.pop(stream)
        self._release()
        self._ended(group.start, group.head + b" P")

    def _settle(self) -> None:
        """Bound the lines held; set ``pending`` (see the module's doc)."""
        while self._groups and self._waiting_bytes > self._limit:
            stream = min(self._groups, key=lambda s: self._groups[s].start)
            self._give_up(stream)
            self._skip_to_end.add(stream)
        boundary = self._boundary()
        self.pending = self._fed - (self._line_end if boundary is None else boundary)

    def finish(self) -> tuple[list[bytes], int]:
        """The end of the file: its last line counts without a newline, a partial not ended
        counts as ``partial``; the framer is reset."""
        if self._skipping:
            self._take(self._line_end, self._skip_head, too_long=True)
        elif self._held:
            self._take(self._line_end, b"".join(self._held))
        for stream in sorted(self._groups, key=lambda s: self._groups[s].start):
            self._give_up(stream)
        self._release()
        out, oversized = self._out, self._oversized
        self.reset()
        return out, oversized

    def skip_line(self) -> None:
        """Drop what comes up to the next newline (a reader starting inside a line)."""
        self._held.clear()
        self._skip_head = b""
        self._skipping = True

    def start_after(self, before: bytes, *, at_file_start: bool) -> None:
        """Start inside a file, ``before`` being the bytes just before the start (at a line
        boundary): a stream whose last chunk in them is a ``P`` is inside a line begun earlier,
        whose rest is dropped uncounted (it was counted before the start, or is history)."""
        self.reset()
        lines = before.split(b"\n")
        lines.pop()  # empty: ``before`` ends at a line boundary
        if lines and not at_file_start:
            lines.pop(0)  # maybe the end of a line that began before ``before``
        last: dict[bytes, bytes] = {}
        for line in lines:
            i = line.find(b" ")
            stream = line[i + 1 : i + 7]
            if stream in _STREAMS and _timed(line, i):
                last[stream] = line[i + 8 : i + 9]
        self._skip_to_end = {s for s, tag in last.items() if tag == b"P"}

    def start_inside(self, partial: bytes, *, oversized: bool) -> None:
        """LineFramer's call for a replay worker's stretch; CRI files are never cut in stretches."""
        raise NotImplementedError("CRI files are read whole")

    def reset(self) -> None:
        """Forget everything: the next chunk starts the file (read again from 0)."""
        self._held.clear()
        self._skipping = False
        self._skip_head = b""
        self._fed = 0
        self._line_end = 0
        self._groups.clear()
        self._skip_to_end = set()
        self._waiting = []
        self._waiting_bytes = 0
        self._out = []
        self._oversized = 0
        self.pending = 0
