"""Resuming from a saved Position: its generations found again by identity, whatever happened since.

While the exporter was stopped the file may have been rotated (any number of times), compressed,
copied and truncated, or replaced; the generations the position names are looked for at the
path and among the siblings by identity and size, then among the gzip siblings by the
fingerprint of their first decompressed bytes, and what cannot be found is counted as a resume
miss, with the bytes known to be lost. The steps are listed in docs/tailing.md ("Positions and
restarts").
"""

from __future__ import annotations

import logging
import os

from log_exporter.sources.tail.follow import Follower
from log_exporter.sources.tail.generation import Generation
from log_exporter.values import NO_FILE, Batch, Position

__all__ = ["resume_from"]

# The name the tailer logged under as one module: log queries select on it.
log = logging.getLogger("log_exporter.tail")


def resume_from(follow: Follower, pos: Position, batch: Batch) -> None:
    """Open the generations to continue where a previous run stopped, across rotations that
    happened meanwhile; rotations and truncations noticed go into ``batch``."""
    # Generations compressed while stopped are read; once running, unknown ones are left alone.
    follow.siblings.read_gzip = pos.knows_gzip
    try:
        _resume(follow, pos, batch)
    finally:
        follow.siblings.read_gzip = False


def _resume(follow: Follower, pos: Position, batch: Batch) -> None:
    for known in pos.known:
        follow.siblings.remember((known.dev, known.ino), known.fingerprint)
    if not pos.knows_gzip:
        follow.siblings.note_gzip_history()
    if pos.file == NO_FILE:
        # Nothing was open: ``known`` is exactly what had been read or was history.
        follow.open_current(batch, scan_missed=True)
        return
    now = follow.clock()
    _reopen_rotated(follow, pos, now)
    main = _take(follow, pos)
    if main is not None and main.name == follow.path:
        follow.current = main
        if pos.known:
            # Not rotated meanwhile, but a file we had read nothing of may have been
            # copytruncated: its copy is the one sibling we do not know.
            follow.adopt_missed(batch, exclude={main.key})
        else:
            follow.siblings.note_history()
        return
    if main is not None:
        # Rotated while we were down: finish it, then the newer generations, then the file.
        main.deadline = now + follow.grace
        follow.draining.append(main)
        batch.rotations += 1
    else:
        _main_not_found(follow, pos, batch)
    # Without the list of generations already read, every sibling would look new.
    follow.open_current(batch, scan_missed=bool(pos.known))


def _reopen_rotated(follow: Follower, pos: Position, now: float) -> None:
    """The rotated generations that were still being read, each at its own offset."""
    for saved in pos.rotated:
        gen = _take(follow, saved)
        if gen is None and saved.offset == 0:
            continue  # nothing of it was consumed: the sibling scan reads it if it is there
        if gen is None:
            follow.resume_misses += 1
            follow.resume_lost_bytes += _known_lost(saved)
            log.warning(
                "resuming %s: a rotated file it was still reading (inode %d, read up to byte %d)"
                " is gone, deleted while the exporter was stopped; the lines after that byte"
                " were not counted (log_exporter_resume_misses_total,"
                " log_exporter_resume_lost_bytes_total). To count them, replay the rotated"
                " files (docs/backfill.md)",
                follow.path,
                saved.file.ino,
                saved.offset,
            )
            continue
        gen.deadline = now + follow.grace
        follow.draining.append(gen)


def _main_not_found(follow: Follower, pos: Position, batch: Batch) -> None:
    """The saved generation is nowhere: its copytruncate copy is read from the offset, or the
    loss is counted."""
    copy = (
        follow.siblings.find_copy(pos.file, pos.offset, follow.open_keys())
        if pos.file.fingerprint
        else None
    )
    if copy is not None:
        # copytruncate while we were down: the copy holds the bytes after our offset.
        follow.draining.append(copy)
        batch.truncations += 1
        return
    if pos.offset > 0:  # at 0 nothing was consumed, so nothing can be lost
        follow.resume_misses += 1
        follow.resume_lost_bytes += _known_lost(pos)
        log.warning(
            "resuming %s: the file the state file points at (inode %d, read up to byte %d) is"
            " gone, rotated away and deleted (or compressed in a form it cannot read) while the"
            " exporter was stopped; the lines written after that byte were not counted"
            " (log_exporter_resume_misses_total, log_exporter_resume_lost_bytes_total), and the"
            " file now at the path is read from its start. To count them, replay the rotated"
            " files (docs/backfill.md)",
            follow.path,
            pos.file.ino,
            pos.offset,
        )
    if not pos.known:
        # Without the list of what we had read, no sibling can be told apart as new.
        follow.siblings.note_history()


def _known_lost(saved: Position) -> int:
    """The bytes of a vanished generation known to be unread: its size when the position was
    taken minus the offset (0 when the state file predates sizes). A lower bound: what was
    written after that position was taken is not known to anyone."""
    return max(0, saved.size - saved.offset) if saved.size is not None else 0


def _take(follow: Follower, saved: Position) -> Generation | None:
    """Open the generation ``saved`` names at its offset: at the path or a sibling, or its
    compressed form among the gzip siblings (rotated, then compressed while we were down)."""
    gen = _take_plain(follow, saved)
    if gen is None and (saved.offset > 0 or saved.file.fingerprint):
        # Also at offset 0 once its first line is known: nothing was consumed, yet its lines
        # were read (a CRI line held back whole, an oversized one being skipped), so the
        # sibling scan takes its compressed form for one already read.
        gen = follow.siblings.find_gzip(saved.file.fingerprint, saved.offset, follow.open_keys())
        if gen is not None:
            log.info(
                "resuming %s: the file it was reading was rotated and compressed while the"
                " exporter was stopped; reading %s on from byte %d",
                follow.path,
                gen.name,
                saved.offset,
            )
    return gen


def _take_plain(follow: Follower, saved: Position) -> Generation | None:
    """Open the generation ``saved`` names (at the path or a sibling) at its offset."""
    for name in [follow.path, *follow.siblings.names()]:
        gen = follow.open(name, saved.offset)
        if gen is None:
            continue
        if (
            gen.key not in follow.open_keys()
            # Exact, "" included: a generation saved before its first line was complete
            # (offset 0, nothing consumed) may have handed its inode number to a new file;
            # if it is the same file grown, the sibling scan or the path reads it from 0.
            and gen.file_id() == saved.file
            # Smaller than our offset: truncated while we were down, not the bytes we read.
            and os.fstat(gen.fd).st_size >= saved.offset
        ):
            follow.siblings.remember(gen.key, gen.fp)
            return gen
        gen.close()
    return None
