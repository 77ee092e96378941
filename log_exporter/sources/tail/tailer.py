"""The tailer: polls that never block or raise, the loop around them, and snapshots for threads.

``Tailer`` is the public face of the package. Each ``poll()`` starts (or resumes) once, then lets
the ``Follower`` do one step; ``run()`` loops on polls, waiting on a ``Wakeup`` between them;
the position and the lag are published under a lock for the threads that read them.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.sources.cri import InputFormat
from log_exporter.sources.tail.follow import Follower
from log_exporter.sources.tail.resume import resume_from
from log_exporter.sources.tail.wakeup import FileEvents, Wakeup
from log_exporter.values import NO_FILE, Batch, FileId, Position

__all__ = ["Tailer", "count_lines_after"]

# The name the tailer logged under as one module: log queries select on it.
log = logging.getLogger("log_exporter.tail")

# How long run() waits at most before checking its stop event again.
_STOP_CHECK_SECONDS = 0.25


@dataclass
class _Kind:
    """One kind of I/O error: when it was last logged, and its repeats left out since."""

    logged_at: float
    suppressed: int = 0


class _IOWarnings:
    """Logs each kind of I/O error (where, errno, file) at most once per ``interval``.

    An error that lasts (EMFILE, EACCES) fails every poll, dozens a second; logging each would
    flood the log. The first of a kind is logged, the repeats within ``interval`` are only
    counted, and the next one logged after it says how many were left out (``suppressed``).
    The first successful poll after a logged warning logs the recovery once, with the repeats
    not reported yet. The caller's counter still counts every error.
    """

    def __init__(self, path: str, interval: float, clock: Callable[[], float]) -> None:
        self._path = path
        self._interval = interval
        self._clock = clock
        self._kinds: dict[tuple[str, int | str, str], _Kind] = {}  # (stage, errno, file)
        self._unrecovered = False  # a warning was logged and no poll has succeeded since

    def error(self, stage: Literal["starting to tail", "tailing"], exc: OSError) -> None:
        filename = exc.filename if isinstance(exc.filename, str) else self._path
        kind = (stage, exc.errno if exc.errno is not None else type(exc).__name__, filename)
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen.logged_at < self._interval:
            seen.suppressed += 1
            return
        suppressed = seen.suppressed if seen is not None else 0
        self._kinds[kind] = _Kind(now)
        self._unrecovered = True
        if suppressed:
            log.warning(
                "I/O error while %s %s: %s (will retry; %d more since the last such warning)",
                stage,
                self._path,
                exc,
                suppressed,
                extra={"suppressed": suppressed},
            )
        else:
            log.warning(
                "I/O error while %s %s: %s (will retry)",
                stage,
                self._path,
                exc,
                extra={"suppressed": 0},
            )

    def ok(self) -> None:
        if not self._unrecovered:
            return
        self._unrecovered = False
        suppressed = sum(seen.suppressed for seen in self._kinds.values())
        now = self._clock()
        # Repeats are reported here, so the next warning counts from now; kinds not seen for an
        # interval are forgotten (their next error would be logged at once anyway).
        self._kinds = {
            kind: _Kind(seen.logged_at)
            for kind, seen in self._kinds.items()
            if now - seen.logged_at < self._interval
        }
        log.info(
            "tailing %s again after I/O errors (%d more since the last warning)",
            self._path,
            suppressed,
            extra={"suppressed": suppressed},
        )


@dataclass(frozen=True, slots=True)
class TailProgress:
    """A tailer's published position, the polls finished and whether one is under way."""

    polls: int
    polling: bool
    position: Position | None


class Tailer:
    """Follows one file across rotations and yields its whole lines exactly once.

    ``poll()`` does the work without blocking; ``run()`` loops on it, woken by watchdog events on
    the directory or, without them, by a periodic stat. Not thread-safe except for
    ``position``, ``caught_up``, ``lag_bytes()``, ``wake()`` and the counters, which other
    threads may read while one thread polls.

    ``clock`` (monotonic seconds) times the grace periods, the forgetting of generations gone
    from the directory and the waits of ``run()``; ``wakeup`` is what ``run()`` waits on
    (``FileEvents`` by default). An I/O error that repeats is logged once per
    ``warning_interval`` seconds of ``clock``, the next warning saying how many it left out
    (``io_errors`` counts them all). Tests pass the fakes of ``log_exporter.testing`` to step a
    tailer through grace periods without sleeping.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start_at: Literal["beginning", "end"] = "beginning",
        resume: Position | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        # Replay's read size, and about 4,000 events a batch: per-batch work (a few syscalls,
        # the store's lock taken once) stays far below the batch's own, while a scrape waits
        # for at most one batch's feed and a batch's lines are a small part of the memory.
        read_size: int = 256 << 10,
        max_batch_bytes: int = 1 << 20,
        rotation_grace: float = 5.0,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wakeup: Wakeup | None = None,
        warning_interval: float = 60.0,
        rotated_globs: Sequence[str] = (),
        input_format: InputFormat = "json",
    ) -> None:
        """``input_format``: ``cri`` for a container runtime's log (``sources.cri``)."""
        if start_at not in ("beginning", "end"):
            raise ValueError(f"start_at must be 'beginning' or 'end', not {start_at!r}")
        if max_line_bytes < 1 or read_size < 1 or max_batch_bytes < 1:
            raise ValueError("max_line_bytes, read_size and max_batch_bytes must be positive")
        self.path = os.path.abspath(os.fspath(path))
        self._dir = os.path.dirname(self.path)
        self._start_at = start_at
        self._resume = resume
        self._max_batch = max_batch_bytes
        self._poll_interval = poll_interval
        self._clock = clock
        self._wakeup: Wakeup = wakeup if wakeup is not None else FileEvents()
        self._warnings = _IOWarnings(self.path, warning_interval, clock)
        self._follow = Follower(
            self.path,
            max_line_bytes=max_line_bytes,
            read_size=read_size,
            rotation_grace=rotation_grace,
            clock=clock,
            rotated_globs=rotated_globs,
            cri=input_format == "cri",
        )

        self._cri = input_format == "cri"
        self._started = False
        self._pending = Batch(
            lines=[], cri=self._cri
        )  # what start() noticed, reported by the next poll
        self._more = False  # the last poll stopped at its byte budget, not at EOF
        self._at_end = False  # the last poll read every open generation to its end

        self._lock = threading.Lock()  # guards the snapshot other threads read
        self._position: Position | None = None
        self._polls = 0  # polls finished (their position published)
        self._polling = False  # a poll is under way: it may open files not yet in the position
        self._caught_up = False
        self._lag_snapshot: tuple[tuple[int, int] | None, int, int, int] = (None, 0, 0, 0)

        # Counters; the caller exports them as self-metrics.
        self.rotations = 0
        self.truncations = 0
        self.io_errors = 0

    # -- public API ------------------------------------------------------------------------

    @property
    def resume_lost_bytes(self) -> int:
        """Bytes of the resume misses known to have been left unread (a lower bound)."""
        return self._follow.resume_lost_bytes

    @property
    def resume_misses(self) -> int:
        """Saved generations that could not be found on start (their unread tail is lost)."""
        return self._follow.resume_misses

    @property
    def position(self) -> Position | None:
        """Resume point after the last poll (at a line boundary), None before any file."""
        with self._lock:
            return self._position

    @property
    def at_end(self) -> bool:
        """True when the last poll read every open file to its end (a drain's test of being
        done; ``caught_up`` stays true once set)."""
        return self._at_end

    @property
    def more(self) -> bool:
        """True when the last poll stopped at its byte budget, with more to read now."""
        return self._more

    @property
    def caught_up(self) -> bool:
        """True once a poll has read every open file to its end (the data present at start)."""
        return self._caught_up

    def progress(self) -> TailProgress:
        """The position with the poll count and whether a poll is under way, of one instant:
        what another thread needs to tell which generations this tailer has reached."""
        with self._lock:
            return TailProgress(self._polls, self._polling, self._position)

    def take_released(self) -> list[tuple[FileId, int]]:
        """The generations read from their first byte to their end and let go since the last
        call, each with the number of lines it held. Same thread as ``poll()``."""
        released, self._follow.released = self._follow.released, []
        return released

    def lag_bytes(self) -> int:
        """Bytes written but not yet consumed: current file plus rotated ones still open."""
        with self._lock:
            cur_key, cur_offset, cur_rest, draining_rest = self._lag_snapshot
        try:
            st = os.stat(self.path)
        except OSError:
            return cur_rest + draining_rest
        if not stat.S_ISREG(st.st_mode):
            # Not followed (see ``Generation.open``), so its size is nothing waiting to be read.
            return cur_rest + draining_rest
        if cur_key == (st.st_dev, st.st_ino):
            return max(0, st.st_size - cur_offset) + draining_rest
        return st.st_size + cur_rest + draining_rest

    def wake(self) -> None:
        """Make a waiting ``run()`` poll (or notice its stop event) now."""
        self._wakeup.set()

    def close(self) -> None:
        """Close every open file; the last position stays valid for a later resume."""
        self._follow.close()

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
            self._warnings.error("starting to tail", exc)
        self._publish(self._make_position())

    def poll(self) -> Batch:
        """Read what is available now, up to ``max_batch_bytes``; never blocks, never raises
        for I/O errors (they are logged, counted and retried on the next poll)."""
        batch, self._pending = self._pending, Batch(lines=[], cri=self._cri)
        with self._lock:
            self._polling = True
        self._follow.budget = self._max_batch
        all_eof = False
        try:
            self._begin(batch)
            all_eof = self._follow.step(batch)
        except OSError as exc:
            self.io_errors += 1
            self._warnings.error("tailing", exc)
        else:
            self._warnings.ok()
        self._more = not all_eof and self._follow.budget <= 0
        self._at_end = all_eof
        if all_eof:
            self._caught_up = True
        self.rotations += batch.rotations
        self.truncations += batch.truncations
        batch.position = self._make_position()
        self._publish(batch.position, polled=True)
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
        with self._wakeup.watching(self._dir, self._poll_interval):
            while not stop.is_set():
                self._wakeup.clear()
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

    # -- the loop --------------------------------------------------------------------------

    def _wait(self, stop: threading.Event) -> None:
        """Until the poll interval or the next grace deadline has passed, a wakeup, or stop."""
        timeout = self._poll_interval
        now = self._clock()
        for gen in self._follow.draining:
            if gen.deadline is not None:
                timeout = min(timeout, max(0.0, gen.deadline - now) + 0.01)
        deadline = now + timeout
        while not stop.is_set():
            left = deadline - self._clock()
            if left <= 0 or self._wakeup.wait(min(left, _STOP_CHECK_SECONDS)):
                return

    def _begin(self, batch: Batch) -> None:
        """Start once: resume from the saved position, or take the siblings for history."""
        if self._started:
            return
        try:
            if self._resume is not None:
                resume_from(self._follow, self._resume, batch)
            else:
                self._follow.start_fresh(self._start_at)
        except OSError:
            # Start again from scratch on the next poll rather than half resumed.
            self._follow.close()
            self._follow.siblings.clear()
            batch.rotations = batch.truncations = 0
            raise
        self._started = True

    # -- snapshots for other threads -------------------------------------------------------

    def _make_position(self) -> Position | None:
        gens = self._follow.generations()
        known = self._follow.siblings.known()
        if not gens:
            # Not the previous position: it may name a generation finished since (whose last
            # unterminated line was then delivered) and lacks what was noted as history since.
            return Position(NO_FILE, 0, (), known) if self._started else None
        newest = gens[-1]
        return Position(
            newest.file_id(),
            newest.offset,
            tuple(Position(g.file_id(), g.offset, size=g.size_seen) for g in gens[:-1]),
            known,
            size=newest.size_seen,
        )

    def _publish(self, position: Position | None, *, polled: bool = False) -> None:
        draining_rest = 0
        cur_key: tuple[int, int] | None = None
        cur_offset = cur_rest = 0
        cur = self._follow.current
        try:
            for gen in self._follow.draining:
                draining_rest += gen.unread()
            if cur is not None:
                cur_key = cur.key
                cur_offset = cur.offset
                cur_rest = cur.unread()
        except OSError:
            pass
        with self._lock:
            self._position = position
            self._lag_snapshot = (cur_key, cur_offset, cur_rest, draining_rest)
            if polled:
                self._polls += 1
                self._polling = False


def count_lines_after(
    path: str | os.PathLike[str],
    position: Position | None,
    *,
    start_at: Literal["beginning", "end"] = "beginning",
    max_line_bytes: int = MAX_LINE_BYTES,
    rotated_globs: Sequence[str] = (),
    input_format: InputFormat = "json",
) -> int:
    """How many whole lines a tailer resumed at ``position`` would still read (oversized ones
    included): what a reader stopped there leaves behind. Reads to the end of every file."""
    tailer = Tailer(
        path,
        start_at=start_at,
        resume=position,
        max_line_bytes=max_line_bytes,
        rotated_globs=rotated_globs,
        input_format=input_format,
    )
    count = 0
    try:
        while True:
            batch = tailer.poll()
            count += len(batch.lines) + batch.oversized
            # A poll that read nothing without being at the end failed (logged): no endless loop.
            if tailer.at_end or not (batch.bytes_read or batch.lines):
                return count
    finally:
        tailer.close()
