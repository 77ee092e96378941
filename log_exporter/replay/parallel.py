"""``replay --jobs N``: stretches of the files replayed by worker processes, merged in log order.

Plain files are cut into stretches at multiples of the read size (each worker reads exactly the
lines whose newline falls in its stretch, in the batches one reader would have); gzip files go
whole. A worker runs the spec's partial program (``log_exporter.replay.target``, into a
``log_exporter.replay.partial.Partial``) through the same ``Feed`` as one process does, read by
the same loop (``log_exporter.replay.serial``), and answers with ``Delta``s; the parent merges
them into its store in log order, a bounded number of stretches in flight. A stretch whose merge
could not be exact is replayed by the parent itself, in order: the output is the output of one
process.

With ``--step``, a worker also cuts its stretch where a sample might fall (an event later than
every step boundary the stretch has reached so far) and reports the times of its events counted
at their own time; the parent replays the crossings with its own clock, so the sample at T holds
exactly what one reader's would.
"""

from __future__ import annotations

import os
import threading
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.pipeline import Feed, Pipeline, Steps
from log_exporter.replay.merge import Merger
from log_exporter.replay.partial import Delta, Partial, TooWide
from log_exporter.replay.serial import FedFiles, ShowsProgress, read_stretch
from log_exporter.replay.steps import StepClock
from log_exporter.replay.target import bind_partial
from log_exporter.sources.files import READ_SIZE, LogFile, ReplayError, damage_report
from log_exporter.spec import Spec, compile_spec
from log_exporter.store import Store

__all__ = [
    "STRETCH_BYTES",
    "ParallelOutcome",
    "Stretch",
    "Workers",
    "cut",
    "default_jobs",
    "replay_parallel",
]

# The most a stretch holds: a worker's partial state and answer grow with it (about a tenth of
# it for the built-in spec), and more stretches than workers even out their load.
STRETCH_BYTES: Final = 64 * READ_SIZE


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not every platform has sched_getaffinity
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Stretch:
    """Bytes ``start`` to ``end`` of one source (``end`` None: to its end, its last stretch)."""

    source: LogFile
    start: int
    end: int | None

    @property
    def size(self) -> int:
        """Bytes on disk it covers, for progress."""
        return (self.source.size if self.end is None else self.end) - self.start


def cut(
    sources: Sequence[LogFile], jobs: int, most: int = STRETCH_BYTES, read_size: int = READ_SIZE
) -> list[Stretch]:
    """The stretches of ``sources`` in log order: plain files cut (at multiples of
    ``read_size``, where one reader's reads start), gzip and CRI files whole (a CRI line's
    chunks may lie on both sides of any cut)."""
    plain = sum(s.size for s in sources if not s.gzip and not s.cri)
    # Several stretches per worker, so that an uneven one does not leave the others idle.
    size = min(most, max(read_size, plain // (jobs * 4)))
    size -= size % read_size
    out: list[Stretch] = []
    for s in sources:
        start = 0
        if not s.gzip and not s.cri:
            while s.size - start > size:
                out.append(Stretch(s, start, start + size))
                start += size
        out.append(Stretch(s, start, None))
    return out


@dataclass(slots=True)
class Answer:
    """A worker's answer for one stretch."""

    deltas: list[Delta] = field(default_factory=list)
    # With --step: the time of the event that starts each delta after the first.
    crossings: list[float] = field(default_factory=list)
    lines: int = 0
    # The stretch could not be merged exactly, or not read at all (the message).
    wide: bool = False
    error: str | None = None
    # A stretch that stopped at damage: what, and the reader's counts at that point.
    damage_what: str | None = None
    damage_out_bytes: int = 0
    damage_lines: int = 0
    # With --step: the stretch's own clock.
    now: float | None = None
    late: int = 0
    untimed: int = 0
    on_time: array[float] = field(default_factory=lambda: array("d"))
    unclaimed_bytes: int = 0


class _Worker:
    """One worker process's bound partial program, kept from stretch to stretch."""

    def __init__(self, spec: Spec, step: float | None, max_line_bytes: int, read_size: int) -> None:
        self.partial = Partial(spec)
        program = compile_spec(spec)
        self.feed = Feed(
            self.partial,
            bind_partial(program, self.partial, typed=True),
            program.typed,
            program.reader,
        )
        self.clock = None if step is None else StepClock(step)
        self.max_line_bytes = max_line_bytes
        self.read_size = read_size


_worker: _Worker | None = None


def _init(spec: Spec, step: float | None, max_line_bytes: int, read_size: int) -> None:
    global _worker
    _worker = _Worker(spec, step, max_line_bytes, read_size)


def _work(stretch: Stretch) -> Answer:
    w = _worker
    assert w is not None, "the pool's initializer sets the worker up"
    answer = Answer()
    steps = None
    if w.clock is not None:
        boundary_at = w.clock.boundary_at

        def cross(t: float) -> float:
            # A sample may fall before the event stamped t: what came before is a delta.
            answer.deltas.append(w.partial.take())
            answer.crossings.append(t)
            return boundary_at(t)

        steps = Steps(cross, on_time=answer.on_time)
    try:
        answer.lines, reader = read_stretch(
            stretch.source,
            w.feed,
            steps,
            w.max_line_bytes,
            w.read_size,
            start=stretch.start,
            end=stretch.end,
        )
    except TooWide:
        w.partial.reset()
        return Answer(wide=True)
    except ReplayError as exc:
        w.partial.reset()
        return Answer(error=str(exc))
    answer.deltas.append(w.partial.take())
    answer.damage_what = reader.damage_what
    answer.damage_out_bytes = reader.damage_out_bytes
    answer.damage_lines = reader.damage_lines
    if steps is not None:
        answer.now = steps.now
        answer.late = steps.late
        answer.untimed = steps.untimed
        answer.unclaimed_bytes = steps.unclaimed_bytes
    return answer


@dataclass(slots=True)
class ParallelOutcome(FedFiles):
    """What a parallel replay went through: lines, files and damage, in log order."""

    # Stretches the parent replayed itself because their merge could not be exact.
    serial: int = 0


def _context() -> Any:
    # Imported here, not with the module: --jobs 1 starts no worker and need not pay for it.
    import multiprocessing

    # fork starts workers fastest and shares the compiled spec; it is safe only while this
    # process has a single thread.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class Workers:
    """Worker processes kept across the replays of one command (replay's file sets), each
    replaying stretches of any of them: started once, not once per set."""

    def __init__(
        self,
        spec: Spec,
        jobs: int,
        step: float | None,
        max_line_bytes: int = MAX_LINE_BYTES,
        read_size: int = READ_SIZE,
    ) -> None:
        self.jobs = jobs
        self.initargs = (spec, step, max_line_bytes, read_size)
        self.pool = _context().Pool(jobs, initializer=_init, initargs=self.initargs)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.terminate()
        self.pool.join()


def _answers(
    stretches: Sequence[Stretch],
    jobs: int,
    initargs: tuple[Any, ...],
    workers: Workers | None = None,
) -> Generator[tuple[Stretch, Answer], None, None]:
    """The workers' answers in log order, at most twice ``jobs`` stretches in flight; from
    ``workers`` when given (their ``initargs`` must be these), else from a pool of its own."""
    if workers is not None:
        assert workers.initargs == initargs, "the workers run this replay's spec and step"
        yield from _answers_from(workers.pool, stretches, workers.jobs)
        return
    with _context().Pool(jobs, initializer=_init, initargs=initargs) as pool:
        yield from _answers_from(pool, stretches, jobs)


def _answers_from(
    pool: Any, stretches: Sequence[Stretch], jobs: int
) -> Generator[tuple[Stretch, Answer], None, None]:
    pending: deque[tuple[Stretch, Any]] = deque()
    it = iter(stretches)
    for s in it:
        pending.append((s, pool.apply_async(_work, (s,))))
        if len(pending) >= 2 * jobs:
            break
    while pending:
        s, result = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, pool.apply_async(_work, (nxt,))))
        yield s, result.get()


def replay_parallel(
    sources: Sequence[LogFile],
    pipeline: Pipeline,
    jobs: int,
    progress: ShowsProgress,
    steps: Steps | None = None,
    step: float | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    read_size: int = READ_SIZE,
    stretch_bytes: int = STRETCH_BYTES,
    workers: Workers | None = None,
) -> ParallelOutcome:
    """Replay ``sources`` into ``pipeline``'s store with ``jobs`` workers, exactly as one.

    With ``steps`` (the caller's clock, its ``cross`` taking the samples every ``step``
    seconds), in event time as ``Pipeline.feed_steps`` does, ``end_file`` included; else as
    ``Pipeline.feed``. ``workers``: processes already started for this spec and step, used
    instead of a pool of this call's own.
    """
    spec = pipeline.program.spec
    merger = Merger(spec)
    out = ParallelOutcome()
    stretches = cut(sources, jobs, stretch_bytes, read_size)
    if steps is not None and step is None:
        raise ValueError("a replay in steps needs its step")
    # No idle worker: a few small files start fewer processes than the CPUs.
    answers: Generator[tuple[Stretch, Answer], None, None] = _answers(
        stretches,
        max(1, min(jobs, len(stretches))),
        (spec, step, max_line_bytes, read_size),
        workers,
    )
    try:
        _consume(answers, merger, pipeline, steps, progress, max_line_bytes, read_size, out)
    finally:
        # Ends the pool now, also when a stretch raised, not when the generator is collected.
        answers.close()
    return out


def _consume(
    answers: Iterator[tuple[Stretch, Answer]],
    merger: Merger,
    pipeline: Pipeline,
    steps: Steps | None,
    progress: ShowsProgress,
    max_line_bytes: int,
    read_size: int,
    out: ParallelOutcome,
) -> None:
    store = pipeline.store
    done = 0
    file_lines = 0
    damaged = False
    for stretch, answer in answers:
        source = stretch.source
        if stretch.start == 0:
            file_lines = 0
            damaged = False
        if not damaged:
            if answer.error is not None:
                raise ReplayError(answer.error)
            if answer.wide or not merger.mergeable(store, answer.deltas):
                # Replayed here, in order, where the merge stands: exact by construction.
                out.serial += 1
                answer.lines, reader = read_stretch(
                    source,
                    pipeline,
                    steps,
                    max_line_bytes,
                    read_size,
                    start=stretch.start,
                    end=stretch.end,
                )
                answer.damage_what = reader.damage_what
                answer.damage_out_bytes = reader.damage_out_bytes
                answer.damage_lines = reader.damage_lines
            else:
                with store.lock:
                    _merge(merger, store, answer, steps)
            out.lines += answer.lines
            if answer.damage_what is not None:
                # Later stretches of the file are dropped, as one reader stops there.
                damaged = True
                out.damage.append(
                    damage_report(
                        source.path,
                        answer.damage_what,
                        answer.damage_out_bytes,
                        file_lines + answer.damage_lines,
                    )
                )
            file_lines += answer.lines
        done += stretch.size
        progress.update(done, int(store.lines["parsed"]))
        if stretch.end is None:
            if steps is not None:
                pipeline.end_file(steps)
            out.files += 1


def _merge(merger: Merger, store: Store, answer: Answer, steps: Steps | None) -> None:
    """Apply a worker's answer; with ``steps``, replay its crossings on the parent's clock."""
    deltas = answer.deltas
    if steps is None:
        for delta in deltas:
            merger.apply(store, delta)
        return
    before = steps.now
    merger.apply(store, deltas[0])
    cross: Callable[[float], float] = steps.cross
    for t, delta in zip(answer.crossings, deltas[1:], strict=True):
        # As ``feed_steps``: the boundary is never before the time reached, so an event late
        # after the earlier stretches never crosses it.
        if t > steps.boundary:
            steps.boundary = cross(t)
        merger.apply(store, delta)
    if answer.now is not None and (before is None or answer.now > before):
        steps.now = answer.now
    steps.late += answer.late
    if before is not None:
        # Events on time in their stretch but stamped before the time earlier ones reached.
        steps.late += bisect_left(answer.on_time, before)
    steps.untimed += answer.untimed
    steps.unclaimed_bytes += answer.unclaimed_bytes
