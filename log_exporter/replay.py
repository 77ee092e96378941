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
from log_exporter.pipeline import Pipeline, Steps
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
    event stamped after T: it is the moment to snapshot the sample stamped T (with
    ``snapshot_unlocked``: the pipeline holds the store's lock). An event without a usable
    timestamp takes the previous event's time; one stamped earlier than the previous event is
    counted at the previous event's time (the log's order decides, as in ``serve``). The last
    call is at the last event's time.
    """
    stats = ReplayStats()
    k = 0  # the next boundary is k * step

    def cross(t: float) -> float:
        # Every boundary before the event stamped t gets its sample, then the next one is due.
        nonlocal k
        if stats.first_time is None:
            stats.first_time = t
            k = math.ceil(t / step)
        while t > k * step:
            emit(k * step)
            stats.steps += 1
            k += 1
        return k * step

    steps = Steps(cross)
    feed_steps = pipeline.feed_steps
    store = pipeline.store
    done = 0
    for source in sources:
        reader = FileReader(source, max_line_bytes)
        try:
            for batch in reader.batches():
                feed_steps(batch, steps)
                stats.lines += len(batch.lines) + batch.oversized
                progress.update(done + reader.raw_done, int(store.lines["parsed"]))
        except OSError as exc:
            raise ReplayError(f"{source.path}: cannot read: {exc.strerror or exc}") from exc
        finally:
            reader.close()
        pipeline.end_file(steps)
        done += source.size
        stats.files += 1
        if reader.damage is not None:
            stats.damage.append(reader.damage)
    now = steps.now
    if now is not None:
        while k * step <= now:
            emit(k * step)
            stats.steps += 1
            k += 1
        if (k - 1) * step != now:
            emit(now)
            stats.steps += 1
    stats.untimed = steps.untimed
    stats.late = steps.late
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
