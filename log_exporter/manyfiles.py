"""Many files for serve: every file ``--file`` patterns match, each followed by its own tailer,
their lines counted into one store per label set (the values the pattern's captures took).

One thread polls every tailer in turn; there is no thread, watch or descriptor per file beyond
the file's own. Idle files cost one ``stat`` per poll interval: a tailer whose file is unchanged
since a poll that read it to its end (and which drains no rotated generation) is not polled.
The patterns are scanned again every poll interval (``sources.scan``, one ``stat`` per directory
while nothing changes): a file that appears is read from its start; one that disappears is read
to its end through its open descriptor, then forgotten once its path has stayed missing a few
seconds; a label set whose every file has been gone for ``grace`` seconds is dropped with its
store, so its series leave /metrics and the state file.

The state section (``STATE_SECTION``) holds each file's position and each label set's store,
written at one instant under the owner's consistency lock, so a restart is exact per file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from log_exporter.pipeline import Pipeline
from log_exporter.sources.cri import InputFormat
from log_exporter.sources.patterns import FilePattern
from log_exporter.sources.scan import Match, Scanner
from log_exporter.sources.tail import Tailer
from log_exporter.spec import Program
from log_exporter.store import Store, StoreError
from log_exporter.values import Batch, Position, position_from_json, position_to_json

__all__ = ["STATE_SECTION", "Followed", "LabelSet", "ManyFiles", "Pairs"]

log = logging.getLogger("log_exporter.files")

# The state file's section of a many-file exporter (the one-file exporter's is "metrics").
STATE_SECTION = "files"

Pairs = tuple[tuple[str, str], ...]

# How long a file's path must stay missing, its last generation read to its end, before the file
# is forgotten: a rotation that renames the file away and then creates the new one (the kubelet's,
# logrotate's) leaves the path empty for a moment, and the writer may still finish its last line
# in the renamed file. The tailer's own grace for rotated generations is the same.
MISSING_SECONDS = 5.0


@dataclass(eq=False)
class LabelSet:
    """The files whose captures took the same values, and the store their lines go into."""

    pairs: Pairs
    store: Store
    pipeline: Pipeline
    files: set[str] = field(default_factory=set)
    gone_since: float | None = None  # when its last file was forgotten


@dataclass(eq=False)
class Followed:
    """One followed file: its tailer, its label set, and where its fed lines end."""

    path: str
    pairs: Pairs
    tailer: Tailer
    fed: Position | None = None
    # The file's (inode, size, mtime) before the last poll that read everything: unchanged,
    # the next poll would find nothing, and is skipped.
    quiet: tuple[int, int, int] | None = None
    missing_since: float | None = None  # when its path was first seen missing


class ManyFiles:
    """The tailers of every matching file and the label sets' stores; driven by ``run`` in one
    thread. ``view`` (the label sets' pairs and stores) and the counters may be read from others.
    """

    def __init__(
        self,
        patterns: Sequence[FilePattern],
        program: Program,
        *,
        consistency: AbstractContextManager[Any],
        start_at: Literal["beginning", "end"] = "beginning",
        max_line_bytes: int,
        rotated_globs: Sequence[str] = (),
        grace: float = 300.0,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        input_format: InputFormat = "json",
    ) -> None:
        self.patterns = list(patterns)
        self._input_format = input_format
        self.program = program
        self._consistency = consistency
        self._start_at = start_at
        self._max_line = max_line_bytes
        self._globs = tuple(rotated_globs)
        self.grace = grace
        self._poll_interval = poll_interval
        self._clock = clock
        self._scanner = Scanner(self.patterns, rotated_globs=self._globs)
        self._wake = threading.Event()
        self.sets: dict[Pairs, LabelSet] = {}
        self.files: dict[str, Followed] = {}
        # Replaced whole whenever the sets change: what a scrape's thread reads.
        self.view: tuple[tuple[Pairs, Store], ...] = ()
        self._resume: dict[str, tuple[Pairs, Position | None]] = {}
        self._started = False
        self._next_scan = 0.0
        self._initial: set[str] = set()  # files found at start not yet read to their end
        self.caught_up = False
        self.at_end = False
        # Counts of the tailers already forgotten, so the totals never go down.
        self._gone_io_errors = 0
        self._gone_resume_misses = 0
        self._gone_resume_lost = 0

    # -- state --------------------------------------------------------------------------------

    def restore(self, section: Any) -> None:
        """The label sets' stores and the files' positions of a saved section; ``ValueError``
        (or ``StoreError``, ``KeyError``) when it is not usable, nothing restored then."""
        if not isinstance(section, dict):
            raise ValueError("the files section is not an object")
        sets: dict[Pairs, LabelSet] = {}
        for saved in section["sets"]:
            pairs = _pairs(saved["labels"])
            label_set = self._new_set(pairs)
            label_set.store.restore(saved["store"])
            sets[pairs] = label_set
        resume: dict[str, tuple[Pairs, Position | None]] = {}
        for saved in section["files"]:
            raw = saved.get("position")
            position = None if raw is None else position_from_json(raw)
            resume[str(saved["path"])] = (_pairs(saved["labels"]), position)
        self.sets, self._resume = sets, resume
        self._publish()

    def section(self) -> dict[str, Any]:
        """What the state file keeps; the caller holds the consistency lock."""
        return {
            "files": [
                {
                    "path": f.path,
                    "labels": [list(p) for p in f.pairs],
                    "position": None if f.fed is None else position_to_json(f.fed),
                }
                for f in self.files.values()
            ],
            "sets": [
                {"labels": [list(p) for p in s.pairs], "store": s.store.dump()}
                for s in self.sets.values()
            ],
        }

    # -- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        """Find the files present now and start their tailers (resumed, or at ``start_at``)."""
        if self._started:
            return
        self._started = True
        found = self._scanner.scan()
        now = self._clock()
        for path, match in found.items():
            saved = self._resume.pop(path, None)
            resume = None if saved is None else saved[1]
            # A file the state knows but had not read yet (found empty) is read from its start.
            start_at = self._start_at if saved is None else "beginning"
            self._follow(path, self._pairs_of(match), resume=resume, start_at=start_at)
            self._initial.add(path)
        # Files of the state no pattern finds now: resumed all the same, so a generation rotated
        # away while the exporter was down is read to its end before the file is forgotten.
        for path, (pairs, position) in self._resume.items():
            self._follow(path, pairs, resume=position, start_at="beginning")
            self._initial.add(path)
        self._resume = {}
        for label_set in self.sets.values():
            if not label_set.files:
                label_set.gone_since = now
        self._next_scan = now + self._poll_interval
        if not found:
            log.warning(
                "no file matches --file yet; watching for one",
                extra={"file": [p.text for p in self.patterns]},
            )
        for tailer in [f.tailer for f in self.files.values()]:
            tailer.start()

    def run(
        self,
        on_batch: Callable[[Followed, Batch], None],
        stop: threading.Event,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """Poll every file until ``stop`` is set; ``on_batch`` gets each batch with its file."""
        self.start()
        while not stop.is_set():
            self._wake.clear()
            more = self.poll(on_batch)
            if on_tick is not None:
                on_tick()
            if not more:
                self._wake.wait(self._poll_interval)

    def wake(self) -> None:
        """Make a waiting ``run`` poll (or notice its stop event) now."""
        self._wake.set()

    def close(self) -> None:
        for f in self.files.values():
            f.tailer.close()

    def poll(self, on_batch: Callable[[Followed, Batch], None]) -> bool:
        """One round: scan when due, poll every file that may have news, forget the files gone
        and drop the label sets gone for the grace period; True when a file has more to read."""
        now = self._clock()
        if now >= self._next_scan:
            self._next_scan = now + self._poll_interval
            self._rescan(now)
        more = False
        at_end = True
        for f in list(self.files.values()):
            signature = _signature(f.path)
            if signature is not None and signature == f.quiet:
                continue
            batch = f.tailer.poll()
            if _carries(batch):
                on_batch(f, batch)
            tailer = f.tailer
            more |= tailer.more
            at_end &= tailer.at_end
            position = tailer.position
            idle = tailer.at_end and position is not None and not position.rotated
            f.quiet = signature if idle else None
            if tailer.at_end and f.path in self._initial:
                self._initial.discard(f.path)
            if signature is not None:
                f.missing_since = None
            elif f.missing_since is None:
                f.missing_since = now
            elif idle and now - f.missing_since >= MISSING_SECONDS:
                self._forget(f, now)
        self.at_end = at_end
        if not self._initial:
            self.caught_up = True
        self._expire(now)
        return more

    def feed(self, f: Followed, batch: Batch) -> None:
        """Count a batch into its label set's store and note its position; the caller holds
        the consistency lock."""
        self.sets[f.pairs].pipeline.feed(batch)
        f.fed = batch.position

    def note_positions(self) -> None:
        """Every file's position as its tailer has it (moved without a batch, when a drained
        rotated generation is let go); the caller holds the consistency lock."""
        for f in self.files.values():
            position = f.tailer.position
            if position is not None:
                f.fed = position

    def reload(self, program: Program) -> None:
        """Switch every label set to a reloaded spec; the caller holds the consistency lock."""
        self.program = program
        for label_set in self.sets.values():
            label_set.pipeline.reload(program)

    # -- numbers for serve's self-metrics ------------------------------------------------------

    def lag_bytes(self) -> int:
        return sum(f.tailer.lag_bytes() for f in list(self.files.values()))

    @property
    def io_errors(self) -> int:
        tailers = [f.tailer for f in list(self.files.values())]
        return self._gone_io_errors + self._scanner.errors + sum(t.io_errors for t in tailers)

    @property
    def resume_misses(self) -> int:
        tailers = [f.tailer for f in list(self.files.values())]
        return self._gone_resume_misses + sum(t.resume_misses for t in tailers)

    @property
    def resume_lost_bytes(self) -> int:
        tailers = [f.tailer for f in list(self.files.values())]
        return self._gone_resume_lost + sum(t.resume_lost_bytes for t in tailers)

    def positions(self) -> list[tuple[str, Position | None]]:
        """Each followed file with the position of its fed lines."""
        return [(f.path, f.fed) for f in list(self.files.values())]

    # -- inside -------------------------------------------------------------------------------

    def _pairs_of(self, match: Match) -> Pairs:
        names = self.patterns[match.pattern].labels
        return tuple(zip(names, match.values, strict=True))

    def _new_set(self, pairs: Pairs) -> LabelSet:
        store = Store(self.program.spec.definitions)
        return LabelSet(pairs, store, Pipeline(self.program, store))

    def _follow(
        self,
        path: str,
        pairs: Pairs,
        *,
        resume: Position | None,
        start_at: Literal["beginning", "end"],
    ) -> None:
        label_set = self.sets.get(pairs)
        if label_set is None:
            label_set = self.sets[pairs] = self._new_set(pairs)
            self._publish()
        label_set.files.add(path)
        label_set.gone_since = None
        tailer = Tailer(
            path,
            start_at=start_at,
            resume=resume,
            max_line_bytes=self._max_line,
            rotated_globs=self._globs,
            poll_interval=self._poll_interval,
            clock=self._clock,
            input_format=self._input_format,
        )
        self.files[path] = Followed(path, pairs, tailer, fed=resume)

    def _rescan(self, now: float) -> None:
        for path, match in self._scanner.scan().items():
            if path in self.files:
                continue
            pairs = self._pairs_of(match)
            with self._consistency:
                # A file that appears once the exporter runs is read from its start.
                self._follow(path, pairs, resume=None, start_at="beginning")
            log.info("following a new file", extra={"path": path, "labels": dict(pairs)})

    def _forget(self, f: Followed, now: float) -> None:
        """A file gone and read to its end: its tailer closes and its position leaves the state."""
        with self._consistency:
            del self.files[f.path]
            label_set = self.sets.get(f.pairs)
            if label_set is not None:
                label_set.files.discard(f.path)
                if not label_set.files:
                    label_set.gone_since = now
        f.tailer.close()
        self._gone_io_errors += f.tailer.io_errors
        self._gone_resume_misses += f.tailer.resume_misses
        self._gone_resume_lost += f.tailer.resume_lost_bytes
        self._initial.discard(f.path)
        log.info("file gone and read to its end", extra={"path": f.path})

    def _expire(self, now: float) -> None:
        expired = [
            s
            for s in self.sets.values()
            if s.gone_since is not None and now - s.gone_since >= self.grace
        ]
        if not expired:
            return
        with self._consistency:
            for label_set in expired:
                del self.sets[label_set.pairs]
            self._publish()
        for label_set in expired:
            log.info(
                "label set gone for the grace period: its series leave /metrics",
                extra={"labels": dict(label_set.pairs), "grace": self.grace},
            )

    def _publish(self) -> None:
        self.view = tuple(
            (pairs, s.store) for pairs, s in sorted(self.sets.items(), key=lambda kv: kv[0])
        )


def _carries(batch: Batch) -> bool:
    return bool(
        batch.lines or batch.oversized or batch.bytes_read or batch.rotations or batch.truncations
    )


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _pairs(saved: Iterable[Any]) -> Pairs:
    pairs = tuple((str(n), str(v)) for n, v in saved)
    if len({n for n, _ in pairs}) != len(pairs):
        raise ValueError("a label set names a label twice")
    return pairs


def restore_error_types() -> tuple[type[Exception], ...]:
    """What ``ManyFiles.restore`` raises for a section it cannot use."""
    return (KeyError, TypeError, ValueError, StoreError)
