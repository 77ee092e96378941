"""Replay of historical log files into the serve code path: final values, or samples in time.

The files come from ``sources`` (plain or gzip, oldest first); their lines go through the same
``Pipeline`` as ``serve``. This module adds only the stepping in time and the output file.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.parse import event_time
from log_exporter.pipeline import Pipeline
from log_exporter.sources import FileReader, ReplayError, Source

__all__ = [
    "ReplayStats",
    "replay_final",
    "replay_steps",
    "summary",
    "write_output",
]


@dataclass(slots=True)
class ReplayStats:
    """What a replay went through, for the closing summary on stderr."""

    files: int = 0
    lines: int = 0
    # Events without a usable timestamp, given the previous event's time (openmetrics only).
    untimed: int = 0
    # Events stamped before an earlier line's event, counted at that later time (openmetrics).
    late: int = 0
    steps: int = 0
    first_time: float | None = None
    last_time: float | None = None
    damage: list[str] = field(default_factory=list)


class _Progress(Protocol):
    def update(self, done_bytes: int, events: int) -> None: ...


def replay_final(
    sources: Sequence[Source],
    pipeline: Pipeline,
    progress: _Progress,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ReplayStats:
    """Feed every file through ``pipeline.feed``, the path ``serve`` takes, oldest file first."""
    stats = ReplayStats()
    done = 0
    feed = pipeline.feed
    store = pipeline.store
    for source in sources:
        reader = FileReader(source, max_line_bytes)
        try:
            for batch in reader.batches():
                feed(batch)
                stats.lines += len(batch.lines) + batch.oversized
                progress.update(done + reader.raw_done, int(store.lines["parsed"]))
        except OSError as exc:
            raise ReplayError(f"{source.path}: cannot read: {exc.strerror or exc}") from exc
        finally:
            reader.close()
        done += source.size
        stats.files += 1
        if reader.damage is not None:
            stats.damage.append(reader.damage)
    return stats


def replay_steps(
    sources: Sequence[Source],
    pipeline: Pipeline,
    step: float,
    emit: Callable[[float], None],
    progress: _Progress,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ReplayStats:
    """Replay event by event, calling ``emit(T)`` at every multiple T of ``step`` and at the end.

    ``emit(T)`` is called when the store holds exactly the effect of every line before the first
    event stamped after T: it is the moment to snapshot the sample stamped T. An event without a
    usable timestamp takes the previous event's time; one stamped earlier than the previous
    event is counted at the previous event's time (the log's order decides, as in ``serve``).
    The last call is at the last event's time.
    """
    stats = ReplayStats()
    store = pipeline.store
    accept = pipeline.accept
    apply = pipeline.apply
    lines = store.lines
    now: float | None = None  # the time of the latest event, never decreasing
    k = 0  # the next boundary is k * step
    boundary = math.inf
    done = 0
    for source in sources:
        reader = FileReader(source, max_line_bytes)
        file_bytes = 0  # bytes read from this file
        line_bytes = 0  # bytes of its lines counted so far, each with the line
        try:
            for batch in reader.batches():
                lines["oversized"] += batch.oversized
                file_bytes += batch.bytes_read
                # The final line of a file without its newline: its bytes are all that is left.
                newline = 1 if batch.bytes_read else 0
                for raw in batch.lines:
                    nbytes = len(raw) + newline
                    line_bytes += nbytes
                    event = accept(raw)
                    if event is None:
                        store.bytes_read += nbytes
                        continue
                    t = event_time(event)
                    if t is None:
                        stats.untimed += 1
                    else:
                        store.last_event_timestamp = t
                        if now is not None and t < now:
                            stats.late += 1
                        elif now is None:
                            stats.first_time = t
                            k = math.ceil(t / step)
                            boundary = k * step
                            now = t
                        else:
                            now = t
                    if now is not None and now > boundary:
                        # ``accept`` already counted this line; the samples before it must not.
                        lines["parsed"] -= 1
                        try:
                            while now > boundary:
                                emit(boundary)
                                stats.steps += 1
                                k += 1
                                boundary = k * step
                        finally:
                            lines["parsed"] += 1
                    store.bytes_read += nbytes
                    apply(event)
                stats.lines += len(batch.lines) + batch.oversized
                progress.update(done + reader.raw_done, int(lines["parsed"]))
        except OSError as exc:
            raise ReplayError(f"{source.path}: cannot read: {exc.strerror or exc}") from exc
        finally:
            reader.close()
        # What no line carried (oversized lines) counts at the end of the file, so the counter
        # never goes down and ends at the bytes read, as with ``serve``.
        store.bytes_read += file_bytes - line_bytes
        done += source.size
        stats.files += 1
        if reader.damage is not None:
            stats.damage.append(reader.damage)
    if now is not None:
        while boundary <= now:
            emit(boundary)
            stats.steps += 1
            k += 1
            boundary = k * step
        if (k - 1) * step != now:
            emit(now)
            stats.steps += 1
    stats.last_time = now
    return stats


def write_output(path: str, write: Callable[[BinaryIO], object], stdout: BinaryIO) -> None:
    """Write to ``stdout`` for "-", else to a temporary file renamed over ``path`` when complete.

    A failed or interrupted replay never leaves a half-written output file behind.
    """
    if path == "-":
        write(stdout)
        stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".replay-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def summary(stats: ReplayStats) -> str:
    """One line for stderr: what was replayed, and what needed a decision."""
    parts = [f"replayed {stats.lines} lines from {stats.files} files"]
    if stats.steps:
        parts.append(f"{stats.steps} sample times")
    if stats.untimed:
        parts.append(f"{stats.untimed} events without a usable timestamp (took the previous time)")
    if stats.late:
        parts.append(f"{stats.late} events stamped before an earlier event (counted at its time)")
    if stats.damage:
        parts.append(f"{len(stats.damage)} files damaged")
    return ", ".join(parts)
