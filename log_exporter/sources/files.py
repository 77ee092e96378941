"""Replay's input files: plain or gzip, checked, ordered oldest first, read as batches of lines.

Files are read in large chunks and cut into whole lines by the tailer's line framer
(``log_exporter.sources.framing``: a line over ``max_line_bytes`` is counted as oversized and
skipped in bounded memory); the final line of a file counts even without its newline, since a
file being replayed is complete. A corrupt gzip stream stops its file cleanly, with a report of
where.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from log_exporter.limits import MAX_LINE_BYTES, open_regular
from log_exporter.parse import event_time, parse_line
from log_exporter.sources.cri import CriFramer, InputFormat, cri_event, cri_time
from log_exporter.sources.framing import LineFramer
from log_exporter.values import FINGERPRINT_BYTES, Batch, fingerprint_of

__all__ = [
    "STDIN",
    "FileReader",
    "LogFile",
    "ReplayError",
    "damage_report",
    "open_sources",
    "order_sources",
    "stdin_as_file",
]

# The name standing for standard input among the files: `kubectl logs POD | log-exporter replay -`
# (one pipe, read once).
STDIN: Final = "-"

# Under the 1 MiB line limit, so most batches need no scan for oversized lines.
READ_SIZE: Final = 256 << 10
# Decompressed bytes per gzip step: bounds memory against a "zip bomb" of tiny compressed input.
_GZIP_OUT_MAX: Final = 256 << 10
_GZIP_MAGIC: Final = b"\x1f\x8b"
# "name.3" or "name.3.gz": the rotation number, higher is older.
_ROTATION_NUMBER = re.compile(r"\.(\d+)(?:\.gz)?$")
# The kubelet's "0.log.20261207-101500[.gz]": the time of the rotation, later is newer.
_KUBELET_STAMP = re.compile(r"\.log\.(\d{8})-(\d{6})(?:\.gz)?$")
# Above every stamp: a rotation number falling as the stamp grows, as logrotate's numbers do.
_STAMP_CEILING = 10**14


class ReplayError(Exception):
    """A file that cannot be replayed at all (missing, unreadable, not a file)."""


@dataclass(frozen=True, slots=True)
class LogFile:
    """One input file, with what ordering needs to know."""

    path: str
    size: int  # bytes on disk (compressed for gzip): what the progress bar counts
    gzip: bool
    first_time: float | None  # timestamp of its first event that has one
    rotation: int  # the N of "name.N[.gz]", 0 without one
    # The file checked, by identity: every later open (a replay worker's stretch) must find this
    # very file at the path, not one renamed into its place since. (0, 0, ""): not checked.
    dev: int = 0
    ino: int = 0
    fingerprint: str = ""
    # A container runtime's log (log_exporter.sources.cri), read whole by one reader.
    cri: bool = False


def _rotation_number(path: str) -> int:
    name = os.path.basename(path)
    stamp = _KUBELET_STAMP.search(name)
    if stamp:
        return _STAMP_CEILING - int(stamp.group(1) + stamp.group(2))
    m = _ROTATION_NUMBER.search(name)
    return int(m.group(1)) if m else 0


def order_sources(sources: Iterable[LogFile]) -> list[LogFile]:
    """Oldest first: by the time of each file's first timed event, ties by rotation order.

    Rotation order is the usual one: a higher ``.N`` is older, an earlier kubelet stamp
    (``0.log.20261207-101500``) is older, a name without either is the newest, then the name
    decides. A file without any timed event cannot be placed by time: it
    goes just before the first file that rotation order says is newer (at the end if none is).
    """
    timed = sorted(
        (s for s in sources if s.first_time is not None),
        key=lambda s: (s.first_time, -s.rotation, os.path.basename(s.path)),
    )
    untimed = sorted(
        (s for s in sources if s.first_time is None),
        key=lambda s: (-s.rotation, os.path.basename(s.path)),
    )
    ordered = timed
    for u in untimed:
        at = next((i for i, s in enumerate(ordered) if s.rotation < u.rotation), len(ordered))
        ordered.insert(at, u)
    return ordered


def open_sources(
    paths: Sequence[str],
    max_line_bytes: int = MAX_LINE_BYTES,
    time_of: Callable[[dict[str, Any]], float | None] = event_time,
    input_format: InputFormat = "json",
) -> list[LogFile]:
    """Check every file can be read and return them oldest first; ``ReplayError`` names a bad one.

    The same file named twice (by any path) is replayed once. What is not a regular file (a
    FIFO, a device, a directory) is refused without being read: a FIFO would hang the command.
    ``time_of``: an event's time, as the spec's ``[input]`` reads it; ``input_format`` ``cri``
    reads container runtime logs, the runtime's time standing in for a missing event time.
    """
    cri = input_format == "cri"
    sources: list[LogFile] = []
    seen: set[tuple[int, int]] = set()
    for path in paths:
        try:
            with os.fdopen(open_regular(path), "rb") as f:
                st = os.fstat(f.fileno())
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                head = f.read(FINGERPRINT_BYTES)
        except OSError as exc:
            raise ReplayError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        is_gzip = head[:2] == _GZIP_MAGIC
        first = _first_event_time(path, is_gzip, max_line_bytes, time_of, cri)
        sources.append(
            LogFile(
                path,
                st.st_size,
                is_gzip,
                first,
                _rotation_number(path),
                st.st_dev,
                st.st_ino,
                fingerprint_of(head),
                cri,
            )
        )
    return order_sources(sources)


def _check_identity(source: LogFile, f: BinaryIO) -> None:
    """Refuse a file at ``source.path`` that is not the one checked (replaced since)."""
    if not source.ino:
        return
    st = os.fstat(f.fileno())
    same = (st.st_dev, st.st_ino) == (source.dev, source.ino)
    if same:
        head = os.pread(f.fileno(), FINGERPRINT_BYTES, 0)
        same = fingerprint_of(head) == source.fingerprint
    if not same:
        raise ReplayError(
            f"{source.path}: replaced or rewritten while replayed (not the file checked at "
            "start); replay a copy that stays put"
        )


def _first_event_time(
    path: str,
    is_gzip: bool,
    max_line_bytes: int,
    time_of: Callable[[dict[str, Any]], float | None],
    cri: bool = False,
) -> float | None:
    """The timestamp of the file's first event that has a usable one (None when none has)."""
    reader = FileReader(LogFile(path, 0, is_gzip, None, 0, cri=cri), max_line_bytes)
    try:
        for batch in reader.batches():
            for raw in batch.lines:
                event = cri_event(raw) if cri else parse_line(raw)
                if type(event) is dict:
                    t = time_of(event)
                    if t is None and cri:
                        t = cri_time(raw)
                    if t is not None:
                        return t
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    finally:
        reader.close()
    return None


class FileReader:
    """Reads one source as ``Batch`` objects, stopping cleanly at a corrupt gzip stream.

    After ``batches()`` is exhausted, ``damage`` describes where a corrupt or truncated stream
    stopped (None when the file was read to its end), and ``raw_done`` counts the bytes on disk
    consumed so far, for progress.

    ``start`` and ``end`` (plain files only, multiples of ``read_size`` but for the file's end)
    read one stretch of the file, for a replay worker: exactly the lines whose newline lies in
    it, in the very batches one reader from the start would give (the line begun before
    ``start`` is looked for backwards, at most ``max_line_bytes`` + 1 bytes). A stretch that
    ends before the file does leaves its last partial line to the next one.
    """

    def __init__(
        self,
        source: LogFile,
        max_line_bytes: int = MAX_LINE_BYTES,
        read_size: int = READ_SIZE,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        self.source = source
        self.max_line_bytes = max_line_bytes
        self.read_size = read_size
        self.start = start
        self.end = end
        self.raw_done = start
        self.damage: str | None = None
        # What ``damage`` says, in parts, for a merge that adds the lines of earlier stretches.
        self.damage_what: str | None = None
        self.damage_out_bytes = 0
        self.damage_lines = 0
        self._file: BinaryIO | None = None
        self._out_bytes = 0
        self._lines = 0

    @property
    def lines(self) -> int:
        """Lines (oversized ones included) given so far."""
        return self._lines

    def batches(self) -> Iterator[Batch]:
        """Whole lines of the file; raises ``OSError`` only when the file cannot be opened, and
        ``ReplayError`` when another file than the one checked is at its path."""
        self._file = os.fdopen(open_regular(self.source.path), "rb")
        try:
            _check_identity(self.source, self._file)
        except BaseException:
            self.close()
            raise
        # Counted when seen: the file is read once, and that fixes the batch (and so the replay
        # sample) an oversized line is counted in.
        framer: LineFramer | CriFramer = (
            CriFramer(self.max_line_bytes)
            if self.source.cri
            else LineFramer(self.max_line_bytes, count_oversized="when_seen")
        )
        cri = self.source.cri
        if self.source.gzip:
            chunks = self._gunzip(self._file)
        else:
            if self.start:
                partial, inside_oversized = self._line_before(self._file)
                framer.start_inside(partial, oversized=inside_oversized)
            chunks = self._plain(self._file)
        feed = framer.feed
        for chunk in chunks:
            lines, oversized = feed(chunk)
            self._lines += len(lines) + oversized
            yield Batch(lines, oversized=oversized, bytes_read=len(chunk), cri=cri)
        if self.end is None or self.damage_what is not None or self.raw_done < self.end:
            lines, oversized = framer.finish()
            if lines or oversized:
                # The final line without its newline, in a batch of its own that read no bytes.
                self._lines += len(lines) + oversized
                yield Batch(lines, oversized=oversized, cri=cri)
        self.close()

    def _line_before(self, f: BinaryIO) -> tuple[bytes, bool]:
        """The bytes of the line begun before ``start``, or that it is already too long."""
        limit = self.max_line_bytes
        back = min(self.start, limit + 1)
        f.seek(self.start - back)
        before = f.read(back)
        cut = before.rfind(b"\n")
        if cut < 0 and back == self.start:
            return before, back > limit  # the line began at the file's start
        if cut < 0:
            return b"", True
        return before[cut + 1 :], False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _plain(self, f: BinaryIO) -> Iterator[bytes]:
        size = self.read_size
        end = self.end
        f.seek(self.start)
        while True:
            if end is not None:
                size = min(self.read_size, end - self.raw_done)
                if size <= 0:
                    return
            try:
                chunk = f.read(size)
            except OSError as exc:
                self._damaged(f"read error after {self.raw_done} bytes: {exc.strerror or exc}")
                return
            if not chunk:
                # Shorter than when checked: the file was truncated while read (what was cut
                # away is lost to this replay), which one reading to its end must not hide.
                expected = self.source.size if end is None else end
                if self.raw_done < expected:
                    self._damaged(
                        f"truncated while read: {self.raw_done} of its {expected} bytes left"
                    )
                return
            self.raw_done += len(chunk)
            yield chunk

    def _gunzip(self, f: BinaryIO) -> Iterator[bytes]:
        # zlib directly rather than the gzip module: it tells exactly how far a corrupt stream
        # got, and ``max_length`` bounds the output of each step whatever the compression ratio.
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        in_member = False  # bytes of the current member have been fed
        pending = b""
        consumed = 0  # compressed bytes the decompressor has taken
        while True:
            if not pending:
                try:
                    pending = f.read(self.read_size)
                except OSError as exc:
                    self._damaged(f"read error after {consumed} compressed bytes: {exc}")
                    return
                if not pending:
                    break
            if not in_member:
                # Padding of zeros after the last member is allowed, as gzip(1) does.
                stripped = pending.lstrip(b"\x00")
                consumed += len(pending) - len(stripped)
                pending = stripped
                if not pending:
                    continue
            in_member = True
            try:
                out = d.decompress(pending, _GZIP_OUT_MAX)
            except zlib.error as exc:
                self._damaged(f"corrupt gzip stream at compressed byte {consumed}: {exc}")
                return
            if d.eof:
                rest = d.unused_data
                consumed += len(pending) - len(rest)
                pending = rest
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                in_member = False
            else:
                rest = d.unconsumed_tail
                consumed += len(pending) - len(rest)
                pending = rest
            self.raw_done = consumed
            if out:
                self._out_bytes += len(out)
                yield out
        if in_member:
            self._damaged(f"gzip stream truncated after {consumed} compressed bytes")
        self.raw_done = consumed

    def _damaged(self, what: str) -> None:
        self.damage_what = what
        self.damage_out_bytes = self._out_bytes
        self.damage_lines = self._lines
        self.damage = damage_report(self.source.path, what, self._out_bytes, self._lines)


def damage_report(path: str, what: str, out_bytes: int, lines: int) -> str:
    """What replay says of a file it could not read to its end."""
    return (
        f"{path}: {what}; replayed the {out_bytes} bytes before it "
        f"({lines} whole lines), skipped the rest of the file"
    )


@contextlib.contextmanager
def stdin_as_file(paths: Sequence[str], stdin: BinaryIO | None = None) -> Iterator[list[str]]:
    """``paths`` with ``-`` replaced by a temporary file holding all of standard input.

    Replay reads its files more than once (the first event's time to order them, stretches by
    offset for ``--jobs``) and a pipe can be read only once, so standard input is copied to a
    file first: on disk, not in memory, and removed when the block ends. ``-`` may be given once;
    plain or gzip, as any file.
    """
    if paths.count(STDIN) > 1:
        raise ReplayError("-: standard input can be read only once")
    if STDIN not in paths:
        yield list(paths)
        return
    source = sys.stdin.buffer if stdin is None else stdin
    with tempfile.TemporaryDirectory(prefix="log-exporter-stdin-") as directory:
        copy = os.path.join(directory, "stdin")
        with open(copy, "wb") as out:
            shutil.copyfileobj(source, out, READ_SIZE)
        yield [copy if p == STDIN else p for p in paths]
