"""Lines lost to rotation: the generations one tailer read whole, with their line counts, kept
until they leave the log's directory; one that leaves before a slower reader reached it is
counted lost for that reader.

The observer is serve's tailer, which reads within milliseconds of a write and so sees every
generation. The readers are other tailers of the same log (the CloudWatch shipper's), which may
be held up for hours while CloudWatch is unreachable: a generation the rotator deletes meanwhile
is gone for them unless they had opened it (an open descriptor keeps it readable). That is the
one way the log volume, as the buffer of a CloudWatch outage, loses lines; here it is counted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from log_exporter.sources.tail.siblings import COMPRESSED_SUFFIXES, Key, is_rotated_name
from log_exporter.sources.tail.tailer import Tailer, TailProgress
from log_exporter.values import FileId, Position

__all__ = ["RotationLedger"]

log = logging.getLogger("log_exporter.tail")

# Generations remembered at most: the rotator keeps a handful; a bound for a directory that
# fills with siblings the rotator does not delete.
_MAX_RECORDS = 256


@dataclass(slots=True)
class _Record:
    file: FileId
    lines: int
    # Listings in a row that missed it: one can miss a file being renamed, so two decide.
    absent: int = 0
    # Per reader, its progress when the generation was first seen gone: decided with that, or
    # with a later poll's when a poll was under way then (it may have opened the file).
    gone: dict[str, TailProgress] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)


def _reached(position: Position | None, file: FileId) -> bool:
    """Whether a reader at ``position`` has read, or holds open, the generation ``file``."""
    if position is None:
        return False
    for seen in (position.file, *(p.file for p in position.rotated), *position.known):
        same_inode = (seen.dev, seen.ino) == (file.dev, file.ino)
        # Inode numbers are reused: a different first line is a different generation.
        if same_inode and (not seen.fingerprint or not file.fingerprint or seen == file):
            return True
    return False


class RotationLedger:
    """Counts, per reader, the lines of generations deleted before that reader reached them.

    ``check(observer)`` runs in the observer's thread (it takes the generations the observer let
    go); the readers' ``progress`` callables must be safe from that thread (``Tailer.progress``).
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float],
        interval: float = 1.0,
        rotated_globs: Sequence[str] = (),
    ) -> None:
        self._dir = os.path.dirname(os.path.abspath(path))
        self._base = os.path.basename(path)
        self._globs = tuple(rotated_globs)
        self._clock = clock
        self._interval = interval
        self._next = -float("inf")
        self._records: dict[Key, _Record] = {}
        self._readers: dict[str, Callable[[], TailProgress]] = {}
        self.lost: dict[str, int] = {}  # reader -> lines; read by scrapes

    def watch(self, name: str, progress: Callable[[], TailProgress]) -> None:
        """Count losses for the reader ``name`` from now on."""
        self._readers[name] = progress
        self.lost.setdefault(name, 0)

    def check(self, observer: Tailer) -> None:
        """Take what the observer let go, and decide on generations gone from the directory;
        at most once per ``interval`` (a directory listing each time)."""
        released = observer.take_released()
        if self._readers:
            for file, lines in released:
                if len(self._records) < _MAX_RECORDS:
                    self._records[(file.dev, file.ino)] = _Record(file, lines)
        now = self._clock()
        if now < self._next or not self._records:
            return
        self._next = now + self._interval
        present = self._present()
        for key, record in list(self._records.items()):
            if key in present:
                record.absent = 0
                record.gone.clear()
                continue
            record.absent += 1
            for name, progress in self._readers.items():
                record.gone.setdefault(name, progress())
            if record.absent < 2:
                continue
            self._decide(record)
            if record.decided >= self._readers.keys():
                del self._records[key]

    def _decide(self, record: _Record) -> None:
        for name, progress in self._readers.items():
            if name in record.decided:
                continue
            now = progress()
            first = record.gone[name]
            if first.polling and now.polls <= first.polls:
                continue  # a poll under way may have opened it: wait for the next one
            usable = first if not first.polling else now
            record.decided.add(name)
            if not _reached(usable.position, record.file):
                self.lost[name] += record.lines
                log.warning(
                    "a rotated generation of %s was deleted before %s read it: %d lines lost",
                    self._base,
                    name,
                    record.lines,
                    extra={"reader": name, "lines": record.lines},
                )

    def _present(self) -> set[Key]:
        keys: set[Key] = set()
        try:
            names = os.listdir(self._dir)
        except OSError:
            return {key for key in self._records}  # cannot tell: nothing is gone
        for name in names:
            # The log itself too: a generation is gone once no name of the log holds it.
            if name.endswith(COMPRESSED_SUFFIXES) or not (
                name == self._base or is_rotated_name(name, self._base, self._globs)
            ):
                continue
            try:
                st = os.stat(os.path.join(self._dir, name))
            except OSError:
                continue
            keys.add((st.st_dev, st.st_ino))
        return keys
