"""Replay's files into a pipeline, as final values or in steps, in one process or in many.

``replay_final`` and ``replay_steps`` differ only in the clock: the files go through the one
dispatch ``_feed`` (``feed_files`` in this process, ``replay_parallel`` with workers), which
gives the same result either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.pipeline import Pipeline, Steps
from log_exporter.replay.parallel import STRETCH_BYTES, Workers, replay_parallel
from log_exporter.replay.serial import FedFiles, ShowsProgress, feed_files
from log_exporter.replay.steps import StepClock
from log_exporter.sources.files import READ_SIZE, LogFile

__all__ = ["ReplayStats", "replay_final", "replay_steps"]


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


def replay_final(
    sources: Sequence[LogFile],
    pipeline: Pipeline,
    progress: ShowsProgress,
    max_line_bytes: int = MAX_LINE_BYTES,
    *,
    jobs: int = 1,
    read_size: int = READ_SIZE,
    stretch_bytes: int = STRETCH_BYTES,
    workers: Workers | None = None,
) -> ReplayStats:
    """Feed every file through ``pipeline.feed``, the path ``serve`` takes, oldest file first.

    ``jobs`` > 1 replays in that many worker processes (``workers``, when given, started for
    several replays), with the same result (``read_size`` and ``stretch_bytes`` are there for
    tests: small files cut into many stretches).
    """
    stats = ReplayStats()
    _feed(
        sources,
        pipeline,
        None,
        None,
        progress,
        max_line_bytes,
        jobs,
        read_size,
        stretch_bytes,
        stats,
        workers,
    )
    return stats


def replay_steps(
    sources: Sequence[LogFile],
    pipeline: Pipeline,
    step: float,
    emit: Callable[[float], None],
    progress: ShowsProgress,
    max_line_bytes: int = MAX_LINE_BYTES,
    *,
    jobs: int = 1,
    read_size: int = READ_SIZE,
    stretch_bytes: int = STRETCH_BYTES,
    workers: Workers | None = None,
) -> ReplayStats:
    """Replay event by event, calling ``emit(T)`` at every multiple T of ``step`` and at the end.

    ``emit(T)`` is called when the store holds exactly the effect of every line before the first
    event stamped after T: it is the moment to snapshot the sample stamped T (with
    ``snapshot_unlocked``: the pipeline holds the store's lock). An event without a usable
    timestamp takes the previous event's time; one stamped earlier than the previous event is
    counted at the previous event's time (the log's order decides, as in ``serve``). The last
    call is at the last event's time. ``jobs`` > 1 replays in that many worker processes, with
    the same calls and the same result.
    """
    stats = ReplayStats()
    clock = StepClock(step, emit)
    steps = Steps(clock.cross)
    _feed(
        sources,
        pipeline,
        steps,
        step,
        progress,
        max_line_bytes,
        jobs,
        read_size,
        stretch_bytes,
        stats,
        workers,
    )
    clock.finish(steps.now)
    stats.steps = clock.samples
    stats.first_time = clock.first_time
    stats.untimed = steps.untimed
    stats.late = steps.late
    stats.last_time = steps.now
    return stats


def _feed(
    sources: Sequence[LogFile],
    pipeline: Pipeline,
    steps: Steps | None,
    step: float | None,
    progress: ShowsProgress,
    max_line_bytes: int,
    jobs: int,
    read_size: int,
    stretch_bytes: int,
    stats: ReplayStats,
    workers: Workers | None = None,
) -> None:
    fed: FedFiles
    if jobs > 1:
        fed = replay_parallel(
            sources,
            pipeline,
            jobs,
            progress,
            steps,
            step,
            max_line_bytes=max_line_bytes,
            read_size=read_size,
            stretch_bytes=stretch_bytes,
            workers=workers,
        )
    else:
        fed = feed_files(
            sources, pipeline, steps, progress, pipeline.store, max_line_bytes, read_size
        )
    stats.files, stats.lines, stats.damage = fed.files, fed.lines, fed.damage
