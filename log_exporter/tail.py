"""Tailing one JSONL file: whole lines plus the position to resume from.

The tailer knows files, inodes and rotation, nothing about events: it yields lines of bytes.
Rotation by rename (logrotate ``create``, RotatingFileHandler), copytruncate, plain truncation
and delete+recreate are all followed; the rules and their residual risks are in docs/tailing.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, cast

from log_exporter.framing import LineFramer
from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.values import (
    FINGERPRINT_BYTES,
    NO_FILE,
    Batch,
    FileId,
    Position,
    fingerprint_of,
)

__all__ = ["Tailer"]

log = logging.getLogger(__name__)

# A rotated sibling compressed after rotation is a different file (new inode, new bytes): it
# cannot be resumed, so it is never a candidate.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".Z", ".zip")

# A generation absent from the directory this long is forgotten (see _forget_absent).
_FORGET_AFTER_SECONDS = 60.0

# How long run() sleeps at most before checking its stop event again.
_STOP_CHECK_SECONDS = 0.25

# watchdog event types that can mean new bytes or a new generation; our own opens and
# no-write closes must not wake the loop.
_WAKING_EVENTS = frozenset({"modified", "created", "moved", "deleted", "closed"})


def _read_fingerprint(fd: int) -> str:
    return fingerprint_of(os.pread(fd, FINGERPRINT_BYTES, 0))


class _Gen:
    """One open file generation and how far it has been read."""

    __slots__ = (
        "deadline",
        "dev",
        "fd",
        "fp",
        "framer",
        "head",
        "ino",
        "mtime",
        "name",
        "read_pos",
    )

    def __init__(
        self, fd: int, st: os.stat_result, offset: int, name: str, max_line_bytes: int
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
        self.read_pos = offset  # next byte to read
        self.framer = LineFramer(max_line_bytes)  # holds the partial line read so far
        self.deadline: float | None = None  # set once rotated away: read until then

    @property
    def offset(self) -> int:
        """Bytes consumed: the start of the line being assembled."""
        return self.read_pos - self.framer.pending

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def file_id(self) -> FileId:
        return FileId(self.dev, self.ino, self.fp)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _Waker:
    """watchdog handler (duck-typed: the observer only calls ``dispatch``)."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def dispatch(self, event: object) -> None:
        if getattr(event, "event_type", "modified") in _WAKING_EVENTS:
            self._event.set()


class Tailer:
    """Follows one file across rotations and yields its whole lines exactly once.

    ``poll()`` does the work without blocking; ``run()`` loops on it, woken by watchdog events on
    the directory or, without them, by a periodic stat. Not thread-safe except for
    ``position``, ``caught_up``, ``lag_bytes()``, ``wake()`` and the counters, which other
    threads may read while one thread polls.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start_at: Literal["beginning", "end"] = "beginning",
        resume: Position | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        read_size: int = 1 << 20,
        max_batch_bytes: int = 4 << 20,
        rotation_grace: float = 5.0,
        poll_interval: float = 1.0,
    ) -> None:
        if start_at not in ("beginning", "end"):
            raise ValueError(f"start_at must be 'beginning' or 'end', not {start_at!r}")
        if max_line_bytes < 1 or read_size < 1 or max_batch_bytes < 1:
            raise ValueError("max_line_bytes, read_size and max_batch_bytes must be positive")
        self.path = os.path.abspath(os.fspath(path))
        self._dir = os.path.dirname(self.path)
        self._base = os.path.basename(self.path)
        self._start_at = start_at
        self._resume = resume
        self._max_line = max_line_bytes
        self._read_size = read_size
        self._max_batch = max_batch_bytes
        self._grace = rotation_grace
        self._poll_interval = poll_interval

        self._started = False
        self._pending = Batch(lines=[])  # what start() noticed, reported by the next poll
        self._cur: _Gen | None = None
        self._draining: list[_Gen] = []  # rotated away, read until their deadline; oldest first
        self._seen: dict[tuple[int, int], str] = {}  # generations read or deliberately skipped
        self._seen_at: dict[tuple[int, int], float] = {}  # when each was last listed
        self._budget = 0
        self._more = False  # the last poll stopped at its byte budget, not at EOF

        self._wake_event = threading.Event()
        self._lock = threading.Lock()  # guards the snapshot other threads read
        self._position: Position | None = None
        self._caught_up = False
        self._lag_snapshot: tuple[tuple[int, int] | None, int, int, int] = (None, 0, 0, 0)

        # Counters; the caller exports them as self-metrics.
        self.rotations = 0
        self.truncations = 0
        self.io_errors = 0
        self.resume_misses = 0  # a saved generation that could not be found on start

    # -- public API ------------------------------------------------------------------------

    @property
    def position(self) -> Position | None:
        """Resume point after the last poll (at a line boundary), None before any file."""
        with self._lock:
            return self._position

    @property
    def caught_up(self) -> bool:
        """True once a poll has read every open file to its end (the data present at start)."""
        return self._caught_up

    def lag_bytes(self) -> int:
        """Bytes written but not yet consumed: current file plus rotated ones still open."""
        with self._lock:
            cur_key, cur_offset, cur_rest, draining_rest = self._lag_snapshot
        try:
            st = os.stat(self.path)
        except OSError:
            return cur_rest + draining_rest
        if not stat.S_ISREG(st.st_mode):
            # Not followed (see ``_open``), so its size is nothing waiting to be read.
            return cur_rest + draining_rest
        if cur_key == (st.st_dev, st.st_ino):
            return max(0, st.st_size - cur_offset) + draining_rest
        return st.st_size + cur_rest + draining_rest

    def wake(self) -> None:
        """Make a waiting ``run()`` poll (or notice its stop event) now."""
        self._wake_event.set()

    def close(self) -> None:
        """Close every open file; the last position stays valid for a later resume."""
        for gen in [*self._draining, *([self._cur] if self._cur else [])]:
            gen.close()
        self._draining = []
        self._cur = None

    def start(self) -> None:
        """Take stock of the directory now, without reading: note the rotated siblings present
        as history, or find the generations to resume. The first ``poll()`` does it otherwise.

        A caller that tells the world it is running (a health check) calls this first: what is
        rotated after that moment is then read, not taken for history.
        """
        if self._started:
            return
        try:
            self._begin(self._pending)
        except OSError as exc:
            self.io_errors += 1
            log.warning("I/O error while starting to tail %s: %s (will retry)", self.path, exc)
        self._publish(self._make_position())

    def poll(self) -> Batch:
        """Read what is available now, up to ``max_batch_bytes``; never blocks, never raises
        for I/O errors (they are logged, counted and retried on the next poll)."""
        batch, self._pending = self._pending, Batch(lines=[])
        self._budget = self._max_batch
        all_eof = False
        try:
            all_eof = self._step(batch)
        except OSError as exc:
            self.io_errors += 1
            log.warning("I/O error while tailing %s: %s (will retry)", self.path, exc)
        self._more = not all_eof and self._budget <= 0
        if all_eof:
            self._caught_up = True
        self.rotations += batch.rotations
        self.truncations += batch.truncations
        batch.position = self._make_position()
        self._publish(batch.position)
        return batch

    def run(
        self,
        on_batch: Callable[[Batch], None],
        stop: threading.Event,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """Poll until ``stop`` is set; ``on_batch`` gets every batch that carries anything.

        ``on_tick`` runs after every poll, busy or idle, in this thread (for periodic state
        saves that must see the position and the metrics of the same instant).
        """
        observer = self._start_observer()
        try:
            while not stop.is_set():
                self._wake_event.clear()
                batch = self.poll()
                if (
                    batch.lines
                    or batch.oversized
                    or batch.bytes_read
                    or batch.rotations
                    or batch.truncations
                ):
                    on_batch(batch)
                if on_tick is not None:
                    on_tick()
                if not self._more:
                    self._wait(stop)
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)

    # -- the loop --------------------------------------------------------------------------

    def _wait(self, stop: threading.Event) -> None:
        timeout = self._poll_interval
        now = time.monotonic()
        for gen in self._draining:
            if gen.deadline is not None:
                timeout = min(timeout, max(0.0, gen.deadline - now) + 0.01)
        deadline = now + timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._wake_event.wait(min(left, _STOP_CHECK_SECONDS)):
                return

    def _start_observer(self) -> Any:
        try:
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a declared dependency
            return None
        observer = Observer()
        try:
            # The observer only ever calls dispatch(); a subclass would tie this module to watchdog.
            handler = cast(Any, _Waker(self._wake_event))
            observer.schedule(handler, self._dir, recursive=False)
            observer.start()
        except OSError as exc:
            if observer.is_alive():
                observer.stop()
            # The directory may not exist yet; the periodic stat still finds the file.
            log.info(
                "no file events for %s (%s); polling every %ss", self._dir, exc, self._poll_interval
            )
            return None
        return observer

    # -- one poll --------------------------------------------------------------------------

    def _begin(self, batch: Batch) -> None:
        if self._started:
            return
        try:
            self._start(batch)
        except OSError:
            # Start again from scratch on the next poll rather than half resumed.
            self.close()
            self._seen.clear()
            self._seen_at.clear()
            batch.rotations = batch.truncations = 0
            raise
        self._started = True

    def _step(self, batch: Batch) -> bool:
        self._begin(batch)
        # Truncations first: remembering the copies they left keeps the sibling scan that a
        # rotation triggers from taking a copy for a new generation.
        for gen in [*self._draining, *([self._cur] if self._cur else [])]:
            self._check_truncated(gen, batch)
        if self._cur is None:
            self._open_current(batch, scan_missed=True)
        else:
            self._check_replaced(batch)

        all_eof = True
        for gen in [*self._draining, *([self._cur] if self._cur else [])]:
            all_eof &= self._read(gen, batch)
            if not gen.fp and gen.read_pos:
                # The first line is complete now (or long enough): its identity is settled.
                gen.fp = _read_fingerprint(gen.fd)
                self._remember(gen.key, gen.fp)

        now = time.monotonic()
        for gen in list(self._draining):
            if gen.deadline is not None and gen.deadline <= now and self._at_eof(gen):
                self._finish(gen, batch)
        return all_eof

    def _read(self, gen: _Gen, batch: Batch) -> bool:
        """Read ``gen`` until EOF or the poll's budget is spent; True at EOF."""
        while self._budget > 0:
            want = min(self._read_size, self._budget)
            chunk = os.pread(gen.fd, want, gen.read_pos)
            if not chunk:
                return True
            if len(gen.head) == gen.read_pos < FINGERPRINT_BYTES:
                gen.head += chunk[: FINGERPRINT_BYTES - gen.read_pos]
            gen.read_pos += len(chunk)
            batch.bytes_read += len(chunk)
            self._budget -= len(chunk)
            lines, oversized = gen.framer.feed(chunk)
            batch.lines.extend(lines)
            batch.oversized += oversized
            if len(chunk) < want:
                return True
        return False

    def _at_eof(self, gen: _Gen) -> bool:
        return os.fstat(gen.fd).st_size <= gen.read_pos

    def _finish(self, gen: _Gen, batch: Batch) -> None:
        """Close a rotated generation after its grace period; its last line needs no newline."""
        lines, oversized = gen.framer.finish()
        batch.lines.extend(lines)
        batch.oversized += oversized
        gen.close()
        self._draining.remove(gen)

    # -- generations -----------------------------------------------------------------------

    def _start(self, batch: Batch) -> None:
        if self._resume is not None:
            self._resume_from(self._resume, batch)
            return
        # Rotated siblings present at start are history (replay is for those), not new data.
        for name in self._sibling_names():
            self._note_existing(name)
        cur = self._open(self.path, 0)
        if cur is None:
            return
        if self._start_at == "end":
            cur.read_pos = self._last_line_end(cur)
        self._cur = cur
        self._remember(cur.key, cur.fp)

    def _last_line_end(self, gen: _Gen) -> int:
        """The end of the last complete line, so ``--start-at end`` starts at a line boundary."""
        size = os.fstat(gen.fd).st_size
        pos = size
        floor = max(0, size - self._max_line - 1)
        while pos > floor:
            lo = max(floor, pos - 65536)
            newline = os.pread(gen.fd, pos - lo, lo).rfind(b"\n")
            if newline >= 0:
                return lo + newline + 1
            pos = lo
        if floor == 0:
            return 0
        # No newline within a line's length of the end: the line in progress is oversized;
        # drop it (counted as oversized once its newline arrives).
        gen.framer.skip_line()
        return size

    def _open(self, name: str, offset: int) -> _Gen | None:
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
            return _Gen(fd, st, offset, name, self._max_line)
        except OSError:
            os.close(fd)
            raise

    def _open_current(self, batch: Batch, *, scan_missed: bool) -> None:
        cur = self._open(self.path, 0)
        if scan_missed:
            # Also while the path is missing: a file created and renamed away before we
            # looked (rotation without create) is only to be found among the siblings.
            missed = self._find_missed(exclude=set() if cur is None else {cur.key})
            self._draining.extend(missed)
            batch.rotations += len(missed)
        if cur is None:
            return
        self._cur = cur
        self._remember(cur.key, cur.fp)

    def _check_replaced(self, batch: Batch) -> None:
        """Rename rotation or delete+recreate: a new file at the path."""
        assert self._cur is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            # Rotated away and not yet recreated: keep reading the old one, and look for a
            # generation that came and went meanwhile (rotation without create).
            missed = self._find_missed(exclude=set())
            self._draining.extend(missed)
            batch.rotations += len(missed)
            return
        if (st.st_dev, st.st_ino) == self._cur.key:
            return
        old = self._cur
        old.deadline = time.monotonic() + self._grace
        self._draining.append(old)
        self._cur = None
        batch.rotations += 1
        self._open_current(batch, scan_missed=True)

    def _check_truncated(self, gen: _Gen, batch: Batch) -> None:
        """copytruncate or truncation: restart at 0, first finishing the copy if one exists."""
        st = os.fstat(gen.fd)
        size = st.st_size
        changed = st.st_mtime_ns != gen.mtime
        gen.mtime = st.st_mtime_ns
        truncated = size < gen.read_pos
        if not truncated and size > 0:
            # A truncation followed by writes past our offset leaves the size looking fine;
            # the first bytes give it away.
            first = os.pread(gen.fd, FINGERPRINT_BYTES, 0)
            truncated = not first.startswith(gen.head) or (
                bool(gen.fp) and fingerprint_of(first) != gen.fp
            )
        if not truncated and changed and gen.read_pos == 0:
            # Empty when we last looked, yet modified: lines may have come and been copied and
            # truncated away in between; such a copy is a generation we never saw.
            missed = self._find_missed(exclude=set())
            self._draining.extend(missed)
            # Usually a rotation raced with our first look; either way a generation we missed.
            batch.rotations += len(missed)
        if not truncated:
            return
        batch.truncations += 1
        log.info("%s was truncated at offset %d; reading it again from 0", gen.name, gen.offset)
        if gen.fp:
            copy = self._find_copy(gen.file_id(), gen.offset)
            if copy is not None:
                self._draining.append(copy)
        gen.read_pos = 0
        gen.framer.reset()
        gen.head = b""
        gen.fp = _read_fingerprint(gen.fd)
        self._remember(gen.key, gen.fp)
        # Copies of contents we never saw (two copytruncates between polls) are new data.
        missed = self._find_missed(exclude=set())
        self._draining.extend(missed)
        batch.rotations += len(missed)

    def _open_keys(self) -> set[tuple[int, int]]:
        keys = {g.key for g in self._draining}
        if self._cur is not None:
            keys.add(self._cur.key)
        return keys

    def _find_missed(self, exclude: set[tuple[int, int]]) -> list[_Gen]:
        """Generations created and rotated away between two looks: read them from 0."""
        skip = self._open_keys() | exclude
        present: set[tuple[int, int]] = set(skip)
        found: list[tuple[int, _Gen]] = []
        now = time.monotonic()
        for name in self._sibling_names():
            # Names shift under a rotating writer between the listing and the open, so one
            # file can be opened under two names: the identity decides, once.
            gen = self._open(name, 0)
            if gen is None:
                continue
            present.add(gen.key)
            # Not "same first line as one we read": identical lines are legal (and common in
            # tests), while copies (copytruncate) are remembered when the truncation is seen.
            if gen.key in skip or self._is_known(gen):
                # Read before, skipped at start, a copy already accounted for, or a duplicate.
                gen.close()
                continue
            skip.add(gen.key)
            gen.deadline = now + self._grace
            found.append((os.fstat(gen.fd).st_mtime_ns, gen))
        self._forget_absent(present, now)
        found.sort(key=lambda item: item[0])
        for _, gen in found:
            log.info("found rotated generation %s that was never opened; reading it", gen.name)
            self._remember(gen.key, gen.fp)
        return [gen for _, gen in found]

    def _find_copy(self, original: FileId, offset: int) -> _Gen | None:
        """The copy copytruncate left: same first line, another inode, at least ``offset`` long.

        Every sibling with that first line is remembered as read, so no later scan takes a
        copy for a new generation.
        """
        best: tuple[int, _Gen] | None = None
        for name in self._sibling_names():
            cand = self._open(name, offset)
            if cand is None:
                continue
            st = os.fstat(cand.fd)
            is_copy = cand.fp == original.fingerprint and cand.key != (original.dev, original.ino)
            if is_copy and cand.key not in self._open_keys():
                self._remember(cand.key, cand.fp)
            if (
                not is_copy
                or cand.key in self._open_keys()
                or offset == 0
                or st.st_size < offset
                or (best is not None and best[0] >= st.st_mtime_ns)
            ):
                cand.close()
                continue
            if best is not None:
                best[1].close()
            best = (st.st_mtime_ns, cand)
        if best is None:
            return None
        copy = best[1]
        copy.deadline = time.monotonic() + self._grace
        log.info("finishing the copy %s of the truncated file from offset %d", copy.name, offset)
        return copy

    def _is_known(self, gen: _Gen) -> bool:
        # Exact: a file seen while empty and later deleted may hand its inode number to a
        # new generation, which must not pass for the old one.
        return self._seen.get(gen.key) == gen.fp

    def _remember(self, key: tuple[int, int], fp: str) -> None:
        self._seen[key] = fp
        self._seen_at[key] = time.monotonic()

    def _forget_absent(self, present: set[tuple[int, int]], now: float) -> None:
        """Forget generations gone for a while, so ``known`` stays as small as the directory.

        Not at the first absence: a file being renamed while the directory is listed can be
        missed by one listing, and forgetting it would make it look new, and read twice.
        """
        for key in present:
            if key in self._seen:
                self._seen_at[key] = now
        horizon = now - max(_FORGET_AFTER_SECONDS, 2 * self._grace)
        for key in [k for k, at in self._seen_at.items() if at < horizon and k not in present]:
            del self._seen[key]
            del self._seen_at[key]

    def _note_existing(self, name: str) -> None:
        gen = self._open(name, 0)
        if gen is not None:
            self._remember(gen.key, gen.fp)
            gen.close()

    def _sibling_names(self) -> list[str]:
        """Rotated generations: same directory, name starting with ours, not compressed."""
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return []
        return [
            os.path.join(self._dir, n)
            for n in sorted(names)
            if n != self._base and n.startswith(self._base) and not n.endswith(COMPRESSED_SUFFIXES)
        ]

    # -- resume ----------------------------------------------------------------------------

    def _resume_from(self, pos: Position, batch: Batch) -> None:
        """Continue where a previous run stopped, across rotations that happened meanwhile."""
        for known in pos.known:
            self._remember((known.dev, known.ino), known.fingerprint)
        if pos.file == NO_FILE:
            # Nothing was open: ``known`` is exactly what had been read or was history.
            self._open_current(batch, scan_missed=True)
            return
        now = time.monotonic()
        for saved in pos.rotated:
            gen = self._take(saved)
            if gen is None and saved.offset == 0:
                continue  # nothing of it was consumed: the sibling scan reads it if it is there
            if gen is None:
                self.resume_misses += 1
                log.warning(
                    "rotated generation %s of %s not found; its unread tail is lost",
                    saved.file,
                    self.path,
                )
                continue
            gen.deadline = now + self._grace
            self._draining.append(gen)

        main = self._take(pos)
        if main is not None and main.name == self.path:
            self._cur = main
            if pos.known:
                # Not rotated meanwhile, but a file we had read nothing of may have been
                # copytruncated: its copy is the one sibling we do not know.
                missed = self._find_missed(exclude={main.key})
                self._draining.extend(missed)
                batch.rotations += len(missed)
            else:
                for name in self._sibling_names():
                    self._note_existing(name)
            return
        if main is not None:
            # Rotated while we were down: finish it, then the newer generations, then the file.
            main.deadline = now + self._grace
            self._draining.append(main)
            batch.rotations += 1
        else:
            copy = self._find_copy(pos.file, pos.offset) if pos.file.fingerprint else None
            if copy is not None:
                # copytruncate while we were down: the copy holds the bytes after our offset.
                self._draining.append(copy)
                batch.truncations += 1
            else:
                if pos.offset > 0:  # at 0 nothing was consumed, so nothing can be lost
                    self.resume_misses += 1
                    log.warning(
                        "saved position %s matches no file next to %s; reading it from 0",
                        pos.file,
                        self.path,
                    )
                if not pos.known:
                    # Without the list of what we had read, no sibling can be told apart as new.
                    for name in self._sibling_names():
                        self._note_existing(name)
        # Without the list of generations already read, every sibling would look new.
        self._open_current(batch, scan_missed=bool(pos.known))

    def _take(self, saved: Position) -> _Gen | None:
        """Open the generation ``saved`` names (at the path or a sibling) at its offset."""
        for name in [self.path, *self._sibling_names()]:
            gen = self._open(name, saved.offset)
            if gen is None:
                continue
            if (
                gen.key not in self._open_keys()
                # Exact, "" included: a generation saved before its first line was complete
                # (offset 0, nothing consumed) may have handed its inode number to a new file;
                # if it is the same file grown, the sibling scan or the path reads it from 0.
                and gen.file_id() == saved.file
                # Smaller than our offset: truncated while we were down, not the bytes we read.
                and os.fstat(gen.fd).st_size >= saved.offset
            ):
                self._remember(gen.key, gen.fp)
                return gen
            gen.close()
        return None

    # -- snapshots for other threads -------------------------------------------------------

    def _make_position(self) -> Position | None:
        gens = [*self._draining, *([self._cur] if self._cur else [])]
        known = tuple(FileId(dev, ino, fp) for (dev, ino), fp in self._seen.items())
        if not gens:
            # Not the previous position: it may name a generation finished since (whose last
            # unterminated line was then delivered) and lacks what was noted as history since.
            return Position(NO_FILE, 0, (), known) if self._started else None
        newest = gens[-1]
        return Position(
            newest.file_id(),
            newest.offset,
            tuple(Position(g.file_id(), g.offset) for g in gens[:-1]),
            known,
        )

    def _publish(self, position: Position | None) -> None:
        draining_rest = 0
        cur_key: tuple[int, int] | None = None
        cur_offset = cur_rest = 0
        try:
            for gen in self._draining:
                draining_rest += max(0, os.fstat(gen.fd).st_size - gen.offset)
            if self._cur is not None:
                cur_key = self._cur.key
                cur_offset = self._cur.offset
                cur_rest = max(0, os.fstat(self._cur.fd).st_size - cur_offset)
        except OSError:
            pass
        with self._lock:
            self._position = position
            self._lag_snapshot = (cur_key, cur_offset, cur_rest, draining_rest)
