"""Following the log's path across generations: the file at the path, the rotated ones still read.

One poll's work without the loop around it: notice truncations (finishing the copy
copytruncate left) and new files at the path (rename rotation, delete and recreate), read every
open generation within the poll's byte budget, and let rotated generations go once their grace
period is over and they are read to the end. Single-threaded; the tailer publishes snapshots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Literal

from log_exporter.sources.tail.generation import Generation
from log_exporter.sources.tail.siblings import Key, Siblings
from log_exporter.values import Batch, FileId

__all__ = ["Follower"]

# The name the tailer logged under as one module: log queries select on it.
log = logging.getLogger("log_exporter.tail")

# Released generations kept for an owner that never takes them (no ledger): a bound, not a need.
_MAX_RELEASED = 64


class Follower:
    """The open generations of one path: ``current`` (at the path, None while it is missing) and
    ``draining`` (rotated away, read until their grace deadline; oldest first)."""

    def __init__(
        self,
        path: str,
        *,
        max_line_bytes: int,
        read_size: int,
        rotation_grace: float,
        clock: Callable[[], float],
        rotated_globs: Sequence[str] = (),
        cri: bool = False,
    ) -> None:
        self.path = path
        self.grace = rotation_grace
        self.clock = clock
        self.siblings = Siblings(
            path,
            grace=rotation_grace,
            max_line_bytes=max_line_bytes,
            clock=clock,
            globs=rotated_globs,
            cri=cri,
        )
        self.current: Generation | None = None
        self.draining: list[Generation] = []
        self.budget = 0  # bytes the running poll may still read
        self.resume_misses = 0  # saved generations that could not be found on resume
        self.resume_lost_bytes = 0  # of those, bytes known to have been left unread
        # Generations read from their first byte to their end and let go, with their line
        # counts, until the tailer's owner takes them (tail.ledger); bounded by what it keeps.
        self.released: list[tuple[FileId, int]] = []
        self._max_line = max_line_bytes
        self._read_size = read_size
        self._cri = cri

    def generations(self) -> list[Generation]:
        """Every open generation, oldest first (the current one last)."""
        return [*self.draining, *([self.current] if self.current else [])]

    def open(self, name: str, offset: int) -> Generation | None:
        """The regular file at ``name`` as a generation read from ``offset``; None if none."""
        return Generation.open(name, offset, self._max_line, self._cri)

    def open_keys(self) -> set[Key]:
        keys = {g.key for g in self.draining}
        if self.current is not None:
            keys.add(self.current.key)
        return keys

    def close(self) -> None:
        for gen in self.generations():
            gen.close()
        self.draining = []
        self.current = None

    def start_fresh(self, start_at: Literal["beginning", "end"]) -> None:
        """Start without a saved position: siblings present now are history, the file at the
        path is read from 0 (or from the end of its last line)."""
        # Rotated siblings present at start are history (replay is for those), not new data.
        self.siblings.note_history()
        cur = self.open(self.path, 0)
        if cur is None:
            return
        if start_at == "end":
            cur.start_at_last_line_end()
        self.current = cur
        self.siblings.remember(cur.key, cur.fp)

    def step(self, batch: Batch) -> bool:
        """One poll into ``batch``, reading at most ``budget`` bytes; True when every open
        generation was read to its end."""
        # Truncations first: remembering the copies they left keeps the sibling scan that a
        # rotation triggers from taking a copy for a new generation.
        for gen in self.generations():
            self._check_truncated(gen, batch)
        if self.current is None:
            self.open_current(batch, scan_missed=True)
        else:
            self._check_replaced(batch)

        all_eof = True
        for gen in self.generations():
            spent, eof = gen.read(batch, self.budget, self._read_size)
            self.budget -= spent
            all_eof &= eof
            if gen.settle_fingerprint():
                # The first line is complete now (or long enough): its identity is settled.
                self.siblings.remember(gen.key, gen.fp)

        now = self.clock()
        for gen in list(self.draining):
            if gen.deadline is not None and gen.deadline <= now and gen.at_eof():
                # Its grace period is over: a last line without a newline is delivered as is.
                gen.finish(batch)
                self.draining.remove(gen)
                if gen.whole and len(self.released) < _MAX_RELEASED:
                    self.released.append((gen.file_id(), gen.lines))
        return all_eof

    def adopt_missed(self, batch: Batch, exclude: set[Key]) -> None:
        """Read the generations that came and went unseen; each is a rotation."""
        missed = self.siblings.find_missed(self.open_keys(), exclude)
        self.draining.extend(missed)
        batch.rotations += len(missed)

    def open_current(self, batch: Batch, *, scan_missed: bool) -> None:
        cur = self.open(self.path, 0)
        if scan_missed:
            # Also while the path is missing: a file created and renamed away before we
            # looked (rotation without create) is only to be found among the siblings.
            self.adopt_missed(batch, exclude=set() if cur is None else {cur.key})
        if cur is None:
            return
        same = next((g for g in self.draining if g.key == cur.key), None)
        if same is not None:
            # Already being read as a rotated generation (a resume took the file at the path
            # for one whose inode it reuses, both first lines incomplete): a second descriptor
            # would read its lines twice, so that generation is the current one.
            cur.close()
            self.draining.remove(same)
            same.deadline = None
            cur = same
        self.current = cur
        self.siblings.remember(cur.key, cur.fp)

    def _check_replaced(self, batch: Batch) -> None:
        """Rename rotation or delete+recreate: a new file at the path."""
        assert self.current is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            # Rotated away and not yet recreated: keep reading the old one, and look for a
            # generation that came and went meanwhile (rotation without create).
            self.adopt_missed(batch, exclude=set())
            return
        if (st.st_dev, st.st_ino) == self.current.key:
            return
        old = self.current
        old.deadline = self.clock() + self.grace
        self.draining.append(old)
        self.current = None
        batch.rotations += 1
        self.open_current(batch, scan_missed=True)

    def _check_truncated(self, gen: Generation, batch: Batch) -> None:
        """copytruncate or truncation: restart at 0, first finishing the copy if one exists."""
        change = gen.look()
        if change == "modified_while_empty":
            # Empty when we last looked, yet modified: lines may have come and been copied and
            # truncated away in between; such a copy is a generation we never saw. Usually a
            # rotation raced with our first look; either way a generation we missed.
            self.adopt_missed(batch, exclude=set())
        if change != "truncated":
            return
        batch.truncations += 1
        log.info("%s was truncated at offset %d; reading it again from 0", gen.name, gen.offset)
        if gen.fp:
            copy = self.siblings.find_copy(gen.file_id(), gen.offset, self.open_keys())
            if copy is not None:
                self.draining.append(copy)
        gen.restart()
        self.siblings.remember(gen.key, gen.fp)
        # Copies of contents we never saw (two copytruncates between polls) are new data.
        self.adopt_missed(batch, exclude=set())
