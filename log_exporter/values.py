"""The value types that pass between stages: file identity, reading position, batches of lines,
and the counts of reading a stretch of them.

Plain data with no behaviour beyond their JSON form, so the tailer, the state file, replay and the
CloudWatch cursor share them without importing one another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FINGERPRINT_BYTES",
    "NO_FILE",
    "Batch",
    "FileId",
    "Position",
    "ReadCounts",
    "fingerprint_of",
    "position_from_json",
    "position_to_json",
    "same_file",
]

# The fingerprint covers the first line, capped at this many bytes, so it stops changing as soon
# as the first line is complete and a growing file keeps its identity.
FINGERPRINT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class FileId:
    """Identity of one file generation."""

    dev: int
    ino: int
    # Hex digest of the first bytes of the file, "" when it is empty.
    fingerprint: str


# The file of a position taken while no generation is open (the path does not exist yet): no real
# file has inode 0. Resuming from it reads every generation not in ``known``, which is exact,
# where a restart without a position would take the generations written meanwhile for history.
NO_FILE = FileId(0, 0, "")


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands: resume here after a restart."""

    file: FileId
    # Bytes consumed in that file, always at a line boundary.
    offset: int
    # Older generations still being read (rotated away less than the grace period ago), oldest
    # first; without them a restart during the grace period would lose or re-read their tail.
    rotated: tuple[Position, ...] = ()
    # Rotated generations already read or deliberately skipped (history at start), so a resume
    # after rotations while stopped reads exactly the siblings that are new.
    known: tuple[FileId, ...] = ()
    # The file's size when the position was taken (None: not known, as in state files written
    # before it was saved): a resume that finds the file deleted counts size - offset as lost.
    # Not part of where reading stands, so positions compare without it.
    size: int | None = field(default=None, compare=False)
    # Whether ``known`` lists the compressed siblings too. Version 0.1.0 never read nor
    # listed them, so after an upgrade every archive would look like a generation compressed
    # while stopped: a resume from such a position takes the compressed siblings for history.
    knows_gzip: bool = field(default=True, compare=False)


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
    # The lines are a container runtime's (``log_exporter.sources.cri``), not JSON.
    cri: bool = False


@dataclass(frozen=True, slots=True)
class ReadCounts:
    """What reading a stretch of lines counted: the self-counters the pipeline writes into its
    sink (the store, or a replay worker's partial state) in one call."""

    parsed: int = 0
    malformed: int = 0
    oversized: int = 0
    bytes_read: int = 0
    rotations: int = 0
    truncations: int = 0
    # The latest event time in the stretch, in Unix seconds; None keeps the sink's.
    last_event_timestamp: float | None = None
    # CRI input only: content that is no JSON object, and partial lines never ended.
    unstructured: int = 0
    partial: int = 0


def fingerprint_of(head: bytes) -> str:
    """Fingerprint of a file from its first ``FINGERPRINT_BYTES`` bytes (or fewer).

    "" while undetermined: the file is shorter than the cap and its first line is not complete.
    """
    newline = head.find(b"\n", 0, FINGERPRINT_BYTES)
    if newline >= 0:
        data = head[: newline + 1]
    elif len(head) >= FINGERPRINT_BYTES:
        data = head[:FINGERPRINT_BYTES]
    else:
        return ""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def same_file(a: FileId, b: FileId) -> bool:
    """True when both name the same generation.

    Device and inode must match, and so must the fingerprints when both are known: an inode
    number is reused once a file is deleted, the first line of a new generation differs.
    """
    if a.dev != b.dev or a.ino != b.ino:
        return False
    return a.fingerprint == b.fingerprint or not a.fingerprint or not b.fingerprint


def position_to_json(position: Position) -> dict[str, Any]:
    """A Position as plain JSON values."""
    return {
        "dev": position.file.dev,
        "ino": position.file.ino,
        "fingerprint": position.file.fingerprint,
        "offset": position.offset,
        "rotated": [position_to_json(p) for p in position.rotated],
        "known": [[f.dev, f.ino, f.fingerprint] for f in position.known],
        **({} if position.size is None else {"size": position.size}),
        "knows_gzip": position.knows_gzip,
    }


def _int_field(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if type(value) is not int or value < 0:
        raise ValueError(f"position field {name!r} must be a non-negative integer, not {value!r}")
    return value


def position_from_json(obj: object) -> Position:
    """The Position ``position_to_json`` wrote; ValueError naming the bad field otherwise."""
    if not isinstance(obj, dict):
        raise ValueError(f"a position must be an object, not {type(obj).__name__}")
    fingerprint = obj.get("fingerprint")
    if not isinstance(fingerprint, str):
        raise ValueError(f"position field 'fingerprint' must be a string, not {fingerprint!r}")
    rotated = obj.get("rotated", [])
    if not isinstance(rotated, list):
        raise ValueError("position field 'rotated' must be a list")
    known = obj.get("known", [])
    if not isinstance(known, list) or not all(_is_file_id(k) for k in known):
        raise ValueError("position field 'known' must be a list of [dev, ino, fingerprint]")
    return Position(
        FileId(_int_field(obj, "dev"), _int_field(obj, "ino"), fingerprint),
        _int_field(obj, "offset"),
        tuple(position_from_json(p) for p in rotated),
        tuple(FileId(k[0], k[1], k[2]) for k in known),
        _int_field(obj, "size") if "size" in obj else None,
        obj.get("knows_gzip") is True,
    )


def _is_file_id(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and type(value[0]) is int
        and type(value[1]) is int
        and isinstance(value[2], str)
    )
