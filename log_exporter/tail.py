"""Tailing one JSONL file: whole lines plus the position to resume from.

Only the value types live here so far; the tailer itself is added by its own change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileId:
    """Identity of one file generation."""

    dev: int
    ino: int
    # Hex digest of the first bytes of the file, "" when it is empty.
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands: resume here after a restart."""

    file: FileId
    # Bytes consumed in that file, always at a line boundary.
    offset: int


@dataclass(slots=True)
class Batch:
    """Whole lines read in one go, with the counts the store needs."""

    # b"\n" removed; a trailing b"\r" may remain.
    lines: list[bytes]
    oversized: int = 0
    bytes_read: int = 0
    rotations: int = 0
    truncations: int = 0
    position: Position | None = None
