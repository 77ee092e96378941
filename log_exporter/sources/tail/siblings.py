"""The rotated siblings of the log: which generations are known, and the scans for missed ones.

A sibling is a file in the log's directory whose name starts with the log's name and is not
compressed (``app.jsonl.1``, ``app.jsonl-20261127``). Every generation read, or present at start
and so history, is remembered by identity; a sibling not remembered is a generation that came
and went between two looks, and is read from 0. The copy copytruncate leaves is found (and
remembered) when its truncation is noticed, so no scan takes it for a new generation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from log_exporter.sources.tail.generation import Generation
from log_exporter.values import FileId

__all__ = ["COMPRESSED_SUFFIXES", "Siblings"]

# The name the tailer logged under as one module: log queries select on it.
log = logging.getLogger("log_exporter.tail")

# A rotated sibling compressed after rotation is a different file (new inode, new bytes): it
# cannot be resumed, so it is never a candidate.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".Z", ".zip")

# A generation absent from the directory this long is forgotten (see forget_absent).
_FORGET_AFTER_SECONDS = 60.0

Key = tuple[int, int]


class Siblings:
    """The generations next to the log already read or skipped, and the scans that find the rest.

    ``grace`` is how long a generation found by a scan stays open for late writes; ``clock``
    (monotonic seconds) dates those deadlines and the absences after which a generation is
    forgotten.
    """

    def __init__(
        self, path: str, *, grace: float, max_line_bytes: int, clock: Callable[[], float]
    ) -> None:
        self._dir = os.path.dirname(path)
        self._base = os.path.basename(path)
        self._grace = grace
        self._max_line = max_line_bytes
        self._clock = clock
        self._seen: dict[Key, str] = {}  # generations read or deliberately skipped
        self._seen_at: dict[Key, float] = {}  # when each was last listed

    def names(self) -> list[str]:
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

    def open(self, name: str, offset: int) -> Generation | None:
        return Generation.open(name, offset, self._max_line)

    def known(self) -> tuple[FileId, ...]:
        """Every generation remembered, for the position's ``known``."""
        return tuple(FileId(dev, ino, fp) for (dev, ino), fp in self._seen.items())

    def remember(self, key: Key, fp: str) -> None:
        self._seen[key] = fp
        self._seen_at[key] = self._clock()

    def is_known(self, gen: Generation) -> bool:
        # Exact: a file seen while empty and later deleted may hand its inode number to a
        # new generation, which must not pass for the old one.
        return self._seen.get(gen.key) == gen.fp

    def clear(self) -> None:
        self._seen.clear()
        self._seen_at.clear()

    def note_history(self) -> None:
        """Remember every sibling present now as read: history, not new data."""
        for name in self.names():
            gen = self.open(name, 0)
            if gen is not None:
                self.remember(gen.key, gen.fp)
                gen.close()

    def find_missed(self, open_keys: set[Key], exclude: set[Key]) -> list[Generation]:
        """Generations created and rotated away between two looks, oldest first, opened to be
        read from 0 until their grace deadline; ``open_keys`` and ``exclude`` are not candidates."""
        skip = open_keys | exclude
        present: set[Key] = set(skip)
        found: list[tuple[int, Generation]] = []
        now = self._clock()
        for name in self.names():
            # Names shift under a rotating writer between the listing and the open, so one
            # file can be opened under two names: the identity decides, once.
            gen = self.open(name, 0)
            if gen is None:
                continue
            present.add(gen.key)
            # Not "same first line as one we read": identical lines are legal (and common in
            # tests), while copies (copytruncate) are remembered when the truncation is seen.
            if gen.key in skip or self.is_known(gen):
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
            self.remember(gen.key, gen.fp)
        return [gen for _, gen in found]

    def find_copy(self, original: FileId, offset: int, open_keys: set[Key]) -> Generation | None:
        """The copy copytruncate left: same first line, another inode, at least ``offset`` long,
        opened at ``offset`` until its grace deadline.

        Every sibling with that first line is remembered as read, so no later scan takes a
        copy for a new generation.
        """
        best: tuple[int, Generation] | None = None
        for name in self.names():
            cand = self.open(name, offset)
            if cand is None:
                continue
            st = os.fstat(cand.fd)
            is_copy = cand.fp == original.fingerprint and cand.key != (original.dev, original.ino)
            if is_copy and cand.key not in open_keys:
                self.remember(cand.key, cand.fp)
            if (
                not is_copy
                or cand.key in open_keys
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
        copy.deadline = self._clock() + self._grace
        log.info("finishing the copy %s of the truncated file from offset %d", copy.name, offset)
        return copy

    def _forget_absent(self, present: set[Key], now: float) -> None:
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
