"""The files several ``--file`` patterns match now, found again every poll at little cost.

``glob.glob`` lists every directory a pattern crosses on every call: about 28 µs per directory,
14 ms a second for a node of 500 pods. ``Scanner`` keeps each directory's listing with the
directory's modification time (which a created, removed or renamed entry changes) and lists it
again only when that time moved, so an idle tree costs one ``stat`` per directory; every
``full_every`` scans it lists everything again anyway, in case a file system keeps coarse times.

A file that is a rotated generation of another matched file of its directory (``app.log.1``
beside ``app.log``, the kubelet's ``0.log.20260101-120000`` beside ``0.log``) is no file of its
own: the tailer of the file it was rotated from reads it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from log_exporter.sources.patterns import FilePattern, parse_pattern
from log_exporter.sources.tail.siblings import is_rotated_name

__all__ = ["Match", "Scanner"]


@dataclass(frozen=True, slots=True)
class Match:
    """A file a pattern matched: the pattern (its index among ``--file``) and its label values."""

    pattern: int
    values: tuple[str, ...]


class Scanner:
    """Finds the regular files of ``patterns`` (``FilePattern.expand`` of each, merged), a path
    matched by two patterns taking the first's labels."""

    def __init__(
        self,
        patterns: Sequence[FilePattern],
        *,
        rotated_globs: Sequence[str] = (),
        full_every: int = 60,
    ) -> None:
        self.patterns = list(patterns)
        self._segments = [_segments(p) for p in self.patterns]
        self._globs = tuple(rotated_globs)
        self._full_every = full_every
        self._scans = 0
        # directory -> (mtime_ns, ino, [(name, path, is_dir, is_file)]); directories not seen
        # in a scan are dropped after it, so the cache follows the tree.
        self._listings: dict[str, tuple[int, int, list[_Entry]]] = {}
        # The label values of each path matched (a pure function of the path), and the last
        # scan's answer: an idle tree's scan allocates next to nothing, so it triggers no
        # garbage collection over the stores' objects.
        self._values: dict[tuple[int, str], tuple[str, ...] | None] = {}
        self._last: tuple[dict[str, Match], dict[str, Match]] = ({}, {})
        self.errors = 0  # directories that could not be listed (other than missing)

    def scan(self) -> dict[str, Match]:
        """Every matching regular file now, by path."""
        full = self._scans % self._full_every == 0
        self._scans += 1
        seen: set[str] = set()
        found: dict[str, Match] = {}
        for index, (pattern, segments) in enumerate(
            zip(self.patterns, self._segments, strict=True)
        ):
            if pattern.literal:
                if os.path.isfile(pattern.text):
                    found.setdefault(pattern.text, Match(index, ()))
                continue
            for path in self._walk(segments, full, seen):
                key = (index, path)
                if key in self._values:
                    values = self._values[key]
                else:
                    values = self._values[key] = pattern.match(path)
                if values is not None and path not in found:
                    found[path] = Match(index, values)
        if len(self._listings) > len(seen):
            for directory in self._listings.keys() - seen:
                del self._listings[directory]
        if len(self._values) > 2 * len(found) + 64:
            self._values = {}
        previous, answer = self._last
        if found != previous:
            answer = _without_rotated(found, self._globs)
            self._last = (found, answer)
        return dict(answer)

    def _walk(self, segments: list[_Segment], full: bool, seen: set[str]) -> list[str]:
        """The regular files the segments reach, one directory level per segment."""
        current = [segments[0].text]  # the root: "/" or "" (a relative pattern)
        for depth, segment in enumerate(segments[1:], start=1):
            last = depth == len(segments) - 1
            nxt: list[str] = []
            for directory in current:
                if segment.regex is None:
                    path = os.path.join(directory, segment.text) if directory else segment.text
                    nxt.append(path)
                    continue
                fullmatch, dots = segment.regex.fullmatch, segment.text.startswith(".")
                for name, path, is_dir, is_file in self._list(directory, full, seen):
                    if (last and not is_file) or (not last and not is_dir):
                        continue
                    if name.startswith(".") and not dots:
                        continue  # as the shell's glob: a wildcard never matches a leading dot
                    if fullmatch(name):
                        nxt.append(path)
            current = nxt
        if segments[-1].regex is None:
            return [p for p in current if os.path.isfile(p)]
        return current

    def _list(self, directory: str, full: bool, seen: set[str]) -> list[_Entry]:
        where = directory or "."
        seen.add(where)
        try:
            st = os.stat(where)
        except OSError:
            return []
        kept = self._listings.get(where)
        if not full and kept is not None and kept[0] == st.st_mtime_ns and kept[1] == st.st_ino:
            return kept[2]
        entries: list[_Entry] = []
        try:
            with os.scandir(where) as it:
                for entry in it:
                    try:
                        mode = entry.stat().st_mode  # follows symlinks, as glob does
                    except OSError:
                        continue
                    path = os.path.join(directory, entry.name) if directory else entry.name
                    entries.append((entry.name, path, stat.S_ISDIR(mode), stat.S_ISREG(mode)))
        except FileNotFoundError:
            return []
        except OSError:
            self.errors += 1
            return []
        self._listings[where] = (st.st_mtime_ns, st.st_ino, entries)
        return entries


# A directory's entry: its name, its path as the pattern spells it, directory?, regular file?
_Entry = tuple[str, str, bool, bool]


@dataclass(frozen=True, slots=True)
class _Segment:
    text: str
    regex: re.Pattern[str] | None  # None: a literal name


def _segments(pattern: FilePattern) -> list[_Segment]:
    """The pattern's path split at '/', the first element its root."""
    parts = pattern.text.split("/")
    root = "/" if pattern.text.startswith("/") else ""
    out = [_Segment(root, None)]
    for part in parts[1:] if root else parts:
        if not part:
            continue
        parsed = parse_pattern(part)
        out.append(_Segment(part, None if parsed.literal else parsed.regex))
    return out


def _without_rotated(found: dict[str, Match], globs: Sequence[str]) -> dict[str, Match]:
    """``found`` less the files that are rotated generations of another found file."""
    by_dir: dict[str, list[str]] = {}
    for path in found:
        by_dir.setdefault(os.path.dirname(path), []).append(os.path.basename(path))
    out: dict[str, Match] = {}
    for path, match in found.items():
        directory, name = os.path.split(path)
        plain = name.removesuffix(".gz")
        if any(is_rotated_name(plain, base, globs) for base in by_dir[directory] if base != name):
            continue
        out[path] = match
    return dict(sorted(out.items()))
