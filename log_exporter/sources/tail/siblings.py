"""The rotated siblings of the log: which generations are known, and the scans for missed ones.

A sibling is a file in the log's directory named as a rotator names a generation of the log:
a name starting with the log's name (``app.jsonl.1`` of logrotate and RotatingFileHandler,
``app.jsonl-20261127`` of logrotate's dateext, ``0.log.20261207-101500`` of the kubelet),
lumberjack's ``STEM-TIMESTAMP.EXT``
(``access.log`` -> ``access-2026-12-07T15-45-33.123.log``), or a name matching one of the
operator's globs; each may end in ``.gz`` (the kubelet's ``NAME.tmp``, a compression under
way, is none). Every generation read, or present at start and so
history, is remembered by identity; a sibling not remembered is a generation that came and went
between two looks, and is read from 0. The copy copytruncate leaves is found (and remembered)
when its truncation is noticed, so no scan takes it for a new generation.

A gzip sibling is a generation compressed after its rotation: a new inode holding the same
bytes, so it is recognised by the fingerprint of its first decompressed bytes. One whose
fingerprint is known is the compressed form of a generation already read (or history). One
whose fingerprint is not is read from 0, decompressed, only when resuming (``read_gzip``): while
the exporter was stopped a rotator may have rotated and compressed any number of generations.
While running, every generation is opened at the path before a rotator can compress it, unless
two rotations fall within one poll; an unknown compressed file appearing then is far more
likely an archive put there, and is left alone like the history present at start.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable, Sequence

from log_exporter.sources.tail.generation import Generation, gzip_fingerprint
from log_exporter.values import FileId

__all__ = ["COMPRESSED_SUFFIXES", "GZIP_SUFFIX", "Siblings", "is_rotated_name"]

# The name the tailer logged under as one module: log queries select on it.
log = logging.getLogger("log_exporter.tail")

# A rotated sibling compressed after rotation is a different file (new inode, new bytes). Gzip
# ones (every common rotator's default) are read decompressed; the others are never candidates.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".Z", ".zip")
GZIP_SUFFIX = ".gz"

# The kubelet compresses a rotated generation into NAME.tmp, renamed NAME.gz once complete: gzip
# bytes, never a generation to read as text.
_PART_SUFFIX = ".tmp"

# lumberjack's backup name: the time of the rotation between the stem and the extension, in
# its fixed layout "2006-01-02T15-04-05.000".
_LUMBERJACK_TIME = r"-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}"


def is_rotated_name(name: str, base: str, globs: Sequence[str] = ()) -> bool:
    """Whether ``name`` (uncompressed, no directory) is a rotated generation of the log ``base``."""
    if name == base:
        return False
    if name.startswith(base):
        return True
    stem, ext = os.path.splitext(base)
    if stem and re.fullmatch(re.escape(stem) + _LUMBERJACK_TIME + re.escape(ext), name):
        return True
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


# A generation absent from the directory this long is forgotten (see forget_absent).
_FORGET_AFTER_SECONDS = 60.0

Key = tuple[int, int]


class Siblings:
    """The generations next to the log already read or skipped, and the scans that find the rest.

    ``grace`` is how long a generation found by a scan stays open for late writes; ``clock``
    (monotonic seconds) dates those deadlines and the absences after which a generation is
    forgotten; ``globs`` name other rotators' generations (basenames in the log's directory).
    """

    def __init__(
        self,
        path: str,
        *,
        grace: float,
        max_line_bytes: int,
        clock: Callable[[], float],
        globs: Sequence[str] = (),
        cri: bool = False,
    ) -> None:
        self._dir = os.path.dirname(path)
        self._cri = cri
        self._base = os.path.basename(path)
        self._globs = tuple(globs)
        self._grace = grace
        self._max_line = max_line_bytes
        self._clock = clock
        self._seen: dict[Key, str] = {}  # generations read or deliberately skipped
        self._seen_at: dict[Key, float] = {}  # when each was last listed
        # Set while resuming: compressed generations not known are read (see the module's doc).
        self.read_gzip = False

    def _listing(self) -> list[str]:
        try:
            return sorted(os.listdir(self._dir))
        except FileNotFoundError:
            return []

    def names(self) -> list[str]:
        """Rotated generations, not compressed: same directory, a rotator's name for ours."""
        return [
            os.path.join(self._dir, n)
            for n in self._listing()
            if not n.endswith(COMPRESSED_SUFFIXES)
            and not n.endswith(_PART_SUFFIX)
            and is_rotated_name(n, self._base, self._globs)
        ]

    def gzip_names(self) -> list[str]:
        """Rotated generations compressed with gzip (``NAME.gz`` where NAME is a rotated name)."""
        return [
            os.path.join(self._dir, n)
            for n in self._listing()
            if n.endswith(GZIP_SUFFIX)
            and (
                is_rotated_name(n[: -len(GZIP_SUFFIX)], self._base, self._globs)
                or any(fnmatch.fnmatchcase(n, g) for g in self._globs)
            )
        ]

    def open(self, name: str, offset: int) -> Generation | None:
        return Generation.open(name, offset, self._max_line, self._cri)

    def open_gzip(self, name: str, offset: int) -> Generation | None:
        return Generation.open_gzip(name, offset, self._max_line, self._cri)

    def find_gzip(self, fingerprint: str, offset: int, open_keys: set[Key]) -> Generation | None:
        """The compressed form of the generation with ``fingerprint``, at least ``offset``
        bytes long decompressed, opened at ``offset``; None when there is none."""
        if not fingerprint:
            return None
        for name in self.gzip_names():
            try:
                st = os.stat(name)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in open_keys or gzip_fingerprint(name) != fingerprint:
                continue
            gen = self.open_gzip(name, offset)
            if gen is None:
                continue
            if os.fstat(gen.fd).st_size >= offset:
                self.remember(gen.key, gen.fp)
                return gen
            gen.close()
        return None

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
        self.note_gzip_history()

    def note_gzip_history(self) -> None:
        """Remember every compressed sibling present now as read: history, not new data."""
        for name in self.gzip_names():
            fp = gzip_fingerprint(name)
            try:
                st = os.stat(name)
            except OSError:
                continue
            if fp is not None:
                self.remember((st.st_dev, st.st_ino), fp)

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
        found.extend(self._find_missed_gzip(skip, present, {g.fp for _, g in found}, now))
        self._forget_absent(present, now)
        found.sort(key=lambda item: item[0])
        for _, gen in found:
            log.info("found rotated generation %s that was never opened; reading it", gen.name)
            self.remember(gen.key, gen.fp)
        return [gen for _, gen in found]

    def _find_missed_gzip(
        self, skip: set[Key], present: set[Key], found_fps: set[str], now: float
    ) -> list[tuple[int, Generation]]:
        """Compressed generations never read, with their modification times.

        A compressed file carries no identity of the file it was made from, only its bytes:
        one starting like a generation already read (or found in this scan, the original a
        rotator is still compressing) is its compressed form, remembered under its own inode
        so that it stays known once the original is gone.
        """
        known_fps = set(self._seen.values()) | found_fps
        found: list[tuple[int, Generation]] = []
        for name in self.gzip_names():
            try:
                st = os.stat(name)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            present.add(key)
            if key in skip:
                continue
            fp = gzip_fingerprint(name)
            if fp is None:
                continue  # not gzip, or being written: looked at again on the next scan
            if key in self._seen and self._seen[key] == fp:
                # Known by identity and bytes: the inode number of a file deleted since (the
                # original a rotator compressed) may be reused by a new compressed generation.
                continue
            if not fp or fp in known_fps or not self.read_gzip:
                # Known: its compressed form. Empty: nothing to read, or a lone partial line
                # too short to tell apart from one read; either way not a new generation.
                # Unknown while running: left alone (see the module's doc), and remembered so
                # that a restart does not take it for one compressed while stopped.
                self.remember(key, fp)
                continue
            gen = self.open_gzip(name, 0)
            if gen is None:
                continue  # incomplete: the rotator is still writing it
            skip.add(key)
            known_fps.add(fp)
            gen.deadline = now + self._grace
            found.append((st.st_mtime_ns, gen))
        return found

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
