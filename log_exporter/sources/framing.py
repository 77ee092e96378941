"""Cutting a stream of byte chunks into whole lines, skipping the lines over the length limit.

The one line framer of the exporter: the tailer feeds it each read of a file generation, replay
(and the CloudWatch replay) each chunk of a plain or decompressed file. A line longer than
``max_line_bytes`` (its b"\\n" not counted) is counted as oversized and dropped as it streams
past, so memory holds at most one partial line of the limit's size whatever the line's length.
Lines keep a trailing b"\\r" (the parser removes it).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["LineFramer"]


class LineFramer:
    """Whole lines out of byte chunks fed in order, holding the partial line between chunks.

    ``feed(chunk)`` gives the lines the chunk completes and the number of oversized lines it
    counted; ``finish()`` gives the last line of a stream that ends without a newline.
    ``pending`` is how many bytes were fed since the last line boundary (the partial line, or
    the part of an oversized line skipped so far): a reader's resume offset is what it has read
    minus ``pending``.

    ``count_oversized`` says when an oversized line is counted. ``"at_end"``, when its newline
    (or the end of the stream) arrives: the tailer's offset stays at the line's start until then,
    so a restart in the middle skips it again and still counts it once. ``"when_seen"``, as soon
    as it is known to be too long: replay reads a file once, so both are exact, and counting
    early fixes in which batch (so in which OpenMetrics sample) the count lands.
    """

    __slots__ = ("_count_when_seen", "_held", "_limit", "_skip_counted", "pending", "skipping")

    def __init__(
        self, max_line_bytes: int, *, count_oversized: Literal["at_end", "when_seen"] = "at_end"
    ) -> None:
        self._limit = max_line_bytes
        self._count_when_seen = count_oversized == "when_seen"
        # Pieces of the partial line, joined once its newline arrives: a line arriving in many
        # small reads is copied once, not once per read.
        self._held: list[bytes] = []
        self.pending = 0
        self.skipping = False  # inside an oversized line: dropping bytes up to its newline
        self._skip_counted = False  # the line being skipped has been counted already

    @property
    def max_line_bytes(self) -> int:
        return self._limit

    def feed(self, chunk: bytes) -> tuple[list[bytes], int]:
        """The lines ``chunk`` completes (b"\\n" removed), and the oversized lines it counted."""
        limit = self._limit
        oversized = 0
        lines = chunk.split(b"\n")
        rest = lines.pop()  # the bytes after the last newline: the start of a partial line
        if lines:
            if self.skipping:
                self.skipping = False
                if not self._skip_counted:
                    oversized += 1
                del lines[0]  # the end of the oversized line
            elif self._held:
                # Only the line split across chunks is joined: no copy of the whole chunk.
                self._held.append(lines[0])
                lines[0] = b"".join(self._held)
                self._held.clear()
            # No line is longer than the chunk or the joined line: scan only when either could
            # hold an oversized one.
            if (
                lines
                and (len(chunk) > limit or len(lines[0]) > limit)
                and max(map(len, lines)) > limit
            ):
                kept = [line for line in lines if len(line) <= limit]
                oversized += len(lines) - len(kept)
                lines = kept
            self.pending = len(rest)
        else:
            self.pending += len(rest)
        if rest and not self.skipping:
            if self.pending > limit:
                # Memory stays bounded: the rest of this line is dropped as it streams past.
                self._held.clear()
                self.skipping = True
                self._skip_counted = self._count_when_seen
                if self._skip_counted:
                    oversized += 1
            else:
                self._held.append(rest)
        return lines, oversized

    def finish(self) -> tuple[list[bytes], int]:
        """The end of the stream: its last line counts without a newline; the framer is reset."""
        lines: list[bytes] = []
        oversized = 0
        if self.skipping:
            oversized = 0 if self._skip_counted else 1
        elif self._held:
            lines.append(b"".join(self._held))
        self.reset()
        return lines, oversized

    def skip_line(self) -> None:
        """Drop what comes up to the next newline, as the end of an oversized line whose start
        was never fed (a reader starting inside one); it is counted when that newline arrives."""
        self._held.clear()
        self.skipping = True
        self._skip_counted = False

    def start_inside(self, partial: bytes, *, oversized: bool) -> None:
        """Start as a reader of the whole stream would stand at this point: ``partial`` is the line
        begun before it (b"" at a line boundary), or, with ``oversized``, that line is already
        known too long and being skipped. A replay worker starting in the middle of a file uses
        it, so that its reads cut and count exactly as one reader from the start does."""
        self.reset()
        if oversized:
            self.skipping = True
            self._skip_counted = self._count_when_seen
        elif partial:
            self._held.append(partial)
            self.pending = len(partial)

    def reset(self) -> None:
        """Forget the partial line: the next chunk starts a new line (a file read again from 0)."""
        self._held.clear()
        self.pending = 0
        self.skipping = False
        self._skip_counted = False
