"""One open file generation: its identity, how far it is read and framed, whether it was truncated.

A generation is one file (one inode) that has been, or is, at the log's path. It is read through
its own descriptor, so it can be finished after a rename or a delete, with a byte budget per
poll; its whole lines come out of a ``LineFramer``, and its offset is always at a line boundary.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tempfile
import zlib
from typing import Literal

from log_exporter.sources.cri import LOOK_BACK_BYTES, CriFramer
from log_exporter.sources.framing import LineFramer
from log_exporter.values import FINGERPRINT_BYTES, Batch, FileId, fingerprint_of

__all__ = ["Generation", "gzip_fingerprint"]

# What ``Generation.look()`` can notice in a file since the last look.
Change = Literal["truncated", "modified_while_empty"]


def _read_fingerprint(fd: int) -> str:
    return fingerprint_of(os.pread(fd, FINGERPRINT_BYTES, 0))


# What a compressed file that is unreadable, incomplete or being written raises.
_GZIP_ERRORS = (OSError, EOFError, zlib.error)


def gzip_fingerprint(name: str) -> str | None:
    """The fingerprint of a gzip file's first decompressed bytes; None when it cannot be read
    (gone, not gzip). A file still being compressed has its first bytes already."""
    try:
        with gzip.open(name, "rb") as f:
            return fingerprint_of(f.read(FINGERPRINT_BYTES))
    except _GZIP_ERRORS:
        return None


class Generation:
    """One open file generation and how far it has been read."""

    __slots__ = (
        "deadline",
        "dev",
        "fd",
        "fp",
        "framer",
        "head",
        "ino",
        "lines",
        "mtime",
        "name",
        "read_pos",
        "size_seen",
        "whole",
    )

    def __init__(
        self,
        fd: int,
        st: os.stat_result,
        offset: int,
        name: str,
        max_line_bytes: int,
        cri: bool = False,
    ) -> None:
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.name = name
        first = os.pread(fd, FINGERPRINT_BYTES, 0)
        self.fp = fingerprint_of(first)
        # The first bytes as we read them: if the file stops starting with them it was
        # truncated and rewritten, even while its first line (and fingerprint) is incomplete.
        self.head = first[: min(offset, FINGERPRINT_BYTES)]
        self.mtime = st.st_mtime_ns
        self.size_seen = st.st_size  # the size at the last look, for a resume's loss estimate
        self.read_pos = offset  # next byte to read
        # Holds the partial line read so far; a CRI log's joins the runtime's partial lines.
        self.framer: LineFramer | CriFramer = (
            CriFramer(max_line_bytes) if cri else LineFramer(max_line_bytes)
        )
        if cri and offset:
            self._look_back()
        self.deadline: float | None = None  # set once rotated away: read until then
        self.lines = 0  # lines delivered from it (oversized ones included)
        # Read from its first byte and never truncated: ``lines`` is then all it ever held.
        self.whole = offset == 0

    def _look_back(self) -> None:
        """Start a CRI framer inside the file, knowing which stream is inside a line there."""
        assert isinstance(self.framer, CriFramer)
        start = max(0, self.read_pos - LOOK_BACK_BYTES)
        before = os.pread(self.fd, self.read_pos - start, start)
        self.framer.start_after(before, at_file_start=start == 0)

    @classmethod
    def open(
        cls, name: str, offset: int, max_line_bytes: int, cri: bool = False
    ) -> Generation | None:
        """The regular file at ``name``, to be read from ``offset``; None when there is none."""
        try:
            # O_NONBLOCK: a FIFO put at the path must not hang the open.
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            return cls(fd, st, offset, name, max_line_bytes, cri)
        except OSError:
            os.close(fd)
            raise

    @classmethod
    def open_gzip(
        cls, name: str, offset: int, max_line_bytes: int, cri: bool = False
    ) -> Generation | None:
        """The gzip file at ``name`` decompressed, to be read from ``offset``, under the gzip
        file's identity; None when it is gone, incomplete or not gzip.

        Decompressed into an anonymous temporary file once: a compressed generation is complete,
        and a plain descriptor lets every other step (budgeted reads, offsets) stay as it is.
        """
        try:
            st = os.stat(name)
            if not stat.S_ISREG(st.st_mode):
                return None
            tmp = tempfile.TemporaryFile()  # noqa: SIM115 - its descriptor outlives this call
        except OSError:
            return None
        try:
            with gzip.open(name, "rb") as src:
                shutil.copyfileobj(src, tmp, 1 << 20)
            tmp.flush()
            fd = os.dup(tmp.fileno())
        except _GZIP_ERRORS:
            return None
        finally:
            tmp.close()
        try:
            gen = cls(fd, os.fstat(fd), offset, name, max_line_bytes, cri)
        except OSError:
            os.close(fd)
            raise
        gen.dev, gen.ino = st.st_dev, st.st_ino
        return gen

    @property
    def offset(self) -> int:
        """Bytes consumed: the start of the line being assembled."""
        return self.read_pos - self.framer.pending

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def file_id(self) -> FileId:
        return FileId(self.dev, self.ino, self.fp)

    def read(self, batch: Batch, budget: int, read_size: int) -> tuple[int, bool]:
        """Read into ``batch`` until EOF or ``budget`` bytes; the bytes read, and True at EOF."""
        spent = 0
        while spent < budget:
            want = min(read_size, budget - spent)
            chunk = os.pread(self.fd, want, self.read_pos)
            if not chunk:
                return spent, True
            if len(self.head) == self.read_pos < FINGERPRINT_BYTES:
                self.head += chunk[: FINGERPRINT_BYTES - self.read_pos]
            self.read_pos += len(chunk)
            batch.bytes_read += len(chunk)
            spent += len(chunk)
            lines, oversized = self.framer.feed(chunk)
            batch.lines.extend(lines)
            batch.oversized += oversized
            self.lines += len(lines) + oversized
            if len(chunk) < want:
                return spent, True
        return spent, False

    def settle_fingerprint(self) -> bool:
        """Read the fingerprint again while it is undetermined and bytes have been read since;
        True when it was read again (the first line may be complete, or long enough, now)."""
        if self.fp or not self.read_pos:
            return False
        self.fp = _read_fingerprint(self.fd)
        return True

    def look(self) -> Change | None:
        """What happened to the file since the last look: truncated (its size dropped below what
        was read, or its first bytes changed), modified while we had read nothing, or nothing."""
        st = os.fstat(self.fd)
        size = st.st_size
        changed = st.st_mtime_ns != self.mtime
        self.mtime = st.st_mtime_ns
        self.size_seen = size
        truncated = size < self.read_pos
        if not truncated and size > 0:
            # A truncation followed by writes past our offset leaves the size looking fine;
            # the first bytes give it away.
            first = os.pread(self.fd, FINGERPRINT_BYTES, 0)
            truncated = not first.startswith(self.head) or (
                bool(self.fp) and fingerprint_of(first) != self.fp
            )
        if truncated:
            return "truncated"
        if changed and self.read_pos == 0:
            return "modified_while_empty"
        return None

    def restart(self) -> None:
        """Read the file again from 0, as the new content it is after a truncation."""
        self.read_pos = 0
        self.framer.reset()
        self.head = b""
        self.fp = _read_fingerprint(self.fd)
        self.whole = False

    def start_at_last_line_end(self) -> None:
        """Skip what the file holds now, up to the end of its last complete line (a line being
        written is read whole); a line in progress already over the limit is skipped too."""
        self.whole = False
        size = os.fstat(self.fd).st_size
        pos = size
        floor = max(0, size - self.framer.max_line_bytes - 1)
        while pos > floor:
            lo = max(floor, pos - 65536)
            newline = os.pread(self.fd, pos - lo, lo).rfind(b"\n")
            if newline >= 0:
                self.read_pos = lo + newline + 1
                if isinstance(self.framer, CriFramer):
                    self._look_back()
                return
            pos = lo
        if floor == 0:
            self.read_pos = 0
            return
        # No newline within a line's length of the end: the line in progress is oversized;
        # drop it (counted as oversized once its newline arrives).
        self.framer.skip_line()
        self.read_pos = size

    def at_eof(self) -> bool:
        return os.fstat(self.fd).st_size <= self.read_pos

    def unread(self) -> int:
        """Bytes in the file past the offset."""
        return max(0, os.fstat(self.fd).st_size - self.offset)

    def finish(self, batch: Batch) -> None:
        """Close the generation for good: its last line counts without a newline."""
        lines, oversized = self.framer.finish()
        batch.lines.extend(lines)
        batch.oversized += oversized
        self.lines += len(lines) + oversized
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
