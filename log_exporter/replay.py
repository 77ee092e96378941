"""``log-exporter replay``: historical log files through the serve code path, as final values or
samples in time.

``run`` is the whole command (checks, spec, sources, CloudWatch, format, output, summary, exit
code). The files come from ``sources`` (plain or gzip, oldest first); their lines go through the
same ``Pipeline`` as ``serve``, which counts them. This module adds the stepping in time and the
output file.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, Protocol, TextIO

from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.limits import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, MAX_LINE_BYTES
from log_exporter.parallel import STRETCH_BYTES, default_jobs, replay_parallel
from log_exporter.partial import unsupported
from log_exporter.pipeline import Pipeline, Steps
from log_exporter.progress import Progress
from log_exporter.prometheus.backfill import SpillingWriter
from log_exporter.prometheus.collector import StoreCollector, families
from log_exporter.sources import READ_SIZE, FileReader, ReplayError, Source, open_sources
from log_exporter.spec import Spec, SpecError, compile_spec, default_spec_text, load_spec
from log_exporter.store import Store

__all__ = [
    "ReplayOptions",
    "ReplayStats",
    "replay_final",
    "replay_steps",
    "run",
    "summary",
    "write_output",
]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What the command line asks of a replay."""

    files: Sequence[str]
    spec: str | None = None
    format: Literal["prometheus", "openmetrics"] = "prometheus"
    step: float = 60.0
    output: str = "-"
    quiet: bool = False
    # Worker processes (``--jobs``); None: the CPUs this process may use. 1 replays in this
    # process alone; more give the same output (log_exporter.parallel).
    jobs: int | None = None
    # ``replay --cloudwatch``: ships the files instead and returns the exit code, or returns None
    # when the flag is off (see log_exporter.cloudwatch.hook.run_replay).
    cloudwatch: Callable[[Spec], int | None] | None = None


def run(
    options: ReplayOptions, *, stdout: BinaryIO | None = None, stderr: TextIO | None = None
) -> int:
    """The whole command; exit 0 done, 1 done but something was lost, 2 nothing done.

    1: a file was damaged (the output is still written), or no event of an openmetrics replay
    has a usable timestamp. 2: a bad ``--step``, output, spec or input file, found before
    anything is written. ``stdout`` and ``stderr`` default to the process's.
    """
    out = sys.stdout.buffer if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr

    def fail(message: str) -> int:
        print(f"log-exporter replay: {message}", file=err)
        return EXIT_CONFIG

    step = options.step
    if not (math.isfinite(step) and step >= 0.001):
        return fail(f"--step must be a number of seconds >= 0.001, not {step}")
    jobs = default_jobs() if options.jobs is None else options.jobs
    if jobs < 1:
        return fail(f"--jobs must be at least 1, not {jobs}")
    out_dir = os.path.dirname(os.path.abspath(options.output))
    if options.output != "-" and not os.access(out_dir, os.W_OK | os.X_OK):
        # Found out now, not after a long replay whose result could not be kept.
        return fail(f"{options.output}: cannot write into {out_dir}")
    try:
        spec = _read_spec(options.spec)
        sources = open_sources(options.files)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return fail(f"{options.spec}: cannot read the spec: {reason}")
    except SpecError as exc:
        return fail("\n".join(exc.errors))
    except ReplayError as exc:
        return fail(str(exc))

    if options.cloudwatch is not None:
        shipped = options.cloudwatch(spec)
        if shipped is not None:
            return shipped

    if jobs > 1 and (why := unsupported(spec)) is not None:
        # Exactness first: a spec the merge cannot reproduce is replayed in one process.
        print(f"log-exporter replay: one process, not {jobs}: {why}", file=err)
        jobs = 1
    store = Store(spec.definitions)
    # Replay writes no exemplars (docs/backfill.md): keeping them would only cost time.
    pipeline = Pipeline(compile_spec(spec), store, exemplars=False)
    total = sum(s.size for s in sources)
    progress = Progress(err, total, enabled=not options.quiet)
    try:
        stats = _replay_to_output(options, sources, pipeline, progress, out, jobs)
    except ReplayError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{options.output}: cannot write: {exc.strerror or exc}")
    progress.finish(total, int(store.lines["parsed"]))
    for damage in stats.damage:
        print(f"log-exporter replay: {damage}", file=err)
    if not options.quiet:
        print(f"log-exporter replay: {summary(stats)}", file=err)
    if options.format == "openmetrics" and stats.last_time is None:
        print("log-exporter replay: no event has a usable timestamp: no samples", file=err)
        return EXIT_ERROR
    return EXIT_ERROR if stats.damage else EXIT_OK


def _read_spec(path: str | None) -> Spec:
    if not path:
        return load_spec(default_spec_text(), "sustainbot.toml (built in)")
    with open(path, encoding="utf-8") as f:
        return load_spec(f.read(), path)


def _replay_to_output(
    options: ReplayOptions,
    sources: Sequence[Source],
    pipeline: Pipeline,
    progress: Progress,
    stdout: BinaryIO,
    jobs: int,
) -> ReplayStats:
    """Replay in the asked format and write the output; ReplayError or OSError when it fails."""
    if options.format == "prometheus":
        stats = replay_final(sources, pipeline, progress, jobs=jobs)
        registry = CollectorRegistry()
        registry.register(StoreCollector(pipeline.store))
        text = generate_latest(registry)
        write_output(options.output, lambda out: out.write(text), stdout)
        return stats
    store = pipeline.store
    with SpillingWriter() as writer:

        def emit(t: float) -> None:
            # No exemplars: the blocks promtool builds cannot hold them (docs/backfill.md).
            writer.add(families(store.snapshot_unlocked(exemplars=False)), t)

        stats = replay_steps(sources, pipeline, options.step, emit, progress, jobs=jobs)
        write_output(options.output, writer.write, stdout)
    return stats


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
    *,
    jobs: int = 1,
    read_size: int = READ_SIZE,
    stretch_bytes: int = STRETCH_BYTES,
) -> ReplayStats:
    """Feed every file through ``pipeline.feed``, the path ``serve`` takes, oldest file first.

    ``jobs`` > 1 replays in that many worker processes, with the same result (``read_size``
    and ``stretch_bytes`` are there for tests: small files cut into many stretches).
    """
    stats = ReplayStats()
    if jobs > 1:
        outcome = replay_parallel(
            pipeline.program.spec,
            sources,
            pipeline,
            jobs,
            progress,
            max_line_bytes=max_line_bytes,
            read_size=read_size,
            stretch_bytes=stretch_bytes,
        )
        stats.files, stats.lines, stats.damage = outcome.files, outcome.lines, outcome.damage
        return stats
    done = 0
    store = pipeline.store
    for source in sources:
        reader = FileReader(source, max_line_bytes, read_size)
        try:
            for batch in reader.batches():
                pipeline.feed(batch)
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
    *,
    jobs: int = 1,
    read_size: int = READ_SIZE,
    stretch_bytes: int = STRETCH_BYTES,
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
    if jobs > 1:
        outcome = replay_parallel(
            pipeline.program.spec,
            sources,
            pipeline,
            jobs,
            progress,
            steps,
            step,
            max_line_bytes=max_line_bytes,
            read_size=read_size,
            stretch_bytes=stretch_bytes,
        )
        stats.files, stats.lines, stats.damage = outcome.files, outcome.lines, outcome.damage
    else:
        _steps_serial(sources, pipeline, steps, progress, max_line_bytes, read_size, stats)
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


def _steps_serial(
    sources: Sequence[Source],
    pipeline: Pipeline,
    steps: Steps,
    progress: _Progress,
    max_line_bytes: int,
    read_size: int,
    stats: ReplayStats,
) -> None:
    feed_steps = pipeline.feed_steps
    store = pipeline.store
    done = 0
    for source in sources:
        reader = FileReader(source, max_line_bytes, read_size)
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
