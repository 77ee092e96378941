"""``log-exporter replay``: historical log files through the serve code path, as final values or
samples in time; ``replay --cloudwatch`` ships them to CloudWatch instead (``run_shipping``).

``run`` is the command: the checks shared with ``run_shipping`` (``_prepare``: step, jobs,
output, spec, sources), then the replay (``log_exporter.replay.engine``), the output file and the
summary. The files come from ``log_exporter.sources.files`` (plain or gzip, oldest first); their
lines go through the same ``Pipeline`` as ``serve``, which counts them. Files of ``--file``
patterns form file sets by the labels they capture, each replayed on its own
(``log_exporter.replay.sets``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal, TextIO

from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.limits import EXIT_CONFIG, EXIT_ERROR, EXIT_OK
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus import selfmetrics
from log_exporter.prometheus.backfill import Labels, SpillingWriter
from log_exporter.prometheus.collector import build_info_family, families
from log_exporter.replay.engine import ReplayStats, replay_final, replay_steps
from log_exporter.replay.parallel import Workers, default_jobs
from log_exporter.replay.partial import unsupported
from log_exporter.replay.progress import ProgressBar
from log_exporter.replay.sets import Families, LabelledSet, SetProgress, add_stats
from log_exporter.sources.cri import InputFormat
from log_exporter.sources.files import ReplayError, open_sources
from log_exporter.sources.filesets import gather, labels_text
from log_exporter.sources.patterns import (
    PatternError,
    check_label_names,
    parse_label,
    parse_pattern,
)
from log_exporter.spec import Spec, SpecError, compile_spec, read_spec
from log_exporter.store import Store

__all__ = ["ReplayOptions", "run", "run_shipping", "summary", "write_output"]


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
    # process alone; more give the same output (log_exporter.replay.parallel).
    jobs: int | None = None
    # ``--file`` patterns (their files grouped into file sets by the labels they capture) and
    # ``--label NAME=VALUE`` pairs, as given.
    patterns: Sequence[str] = ()
    labels: Sequence[str] = ()
    # "cri": container runtime logs (log_exporter.sources.cri).
    input_format: InputFormat = "json"


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A replay's inputs, checked: the spec, each file set's files in order, the worker
    processes, the constant labels."""

    spec: Spec
    sets: list[LabelledSet]
    jobs: int
    constant: dict[str, str]


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
    prepared = _prepare(options, err)
    if isinstance(prepared, int):
        return prepared
    jobs = prepared.jobs
    if jobs > 1 and (why := unsupported(prepared.spec)) is not None:
        # Exactness first: a spec the merge cannot reproduce is replayed in one process.
        print(f"log-exporter replay: one process, not {jobs}: {why}", file=err)
        jobs = 1
    total = sum(s.size for labelled in prepared.sets for s in labelled.sources)
    bar = ProgressBar(err, total, enabled=not options.quiet)
    progress = SetProgress(bar)
    try:
        stats, unsampled = _replay_to_output(options, prepared, progress, out, jobs)
    except ReplayError as exc:
        return _fail(err, str(exc))
    except OSError as exc:
        return _fail(err, f"{options.output}: cannot write: {exc.strerror or exc}")
    bar.finish(total, progress.events)
    for damage in stats.damage:
        print(f"log-exporter replay: {damage}", file=err)
    if not options.quiet:
        print(f"log-exporter replay: {summary(stats)}", file=err)
    if options.format == "openmetrics" and stats.last_time is None:
        print("log-exporter replay: no event has a usable timestamp: no samples", file=err)
        return EXIT_ERROR
    for labels in unsampled:
        print(
            f"log-exporter replay: the files of {labels}: no event has a usable timestamp: "
            "no samples",
            file=err,
        )
    return EXIT_ERROR if stats.damage or unsampled else EXIT_OK


def run_shipping(
    options: ReplayOptions, ship: Callable[[Spec], int], *, stderr: TextIO | None = None
) -> int:
    """``replay --cloudwatch``: the checks of ``run``, then ``ship(spec)`` (which sends the
    files to CloudWatch and gives the exit code) instead of a replay; no output is written."""
    err = sys.stderr if stderr is None else stderr
    if options.patterns or options.labels:
        # CloudWatch's dimensions come from the spec; labels would be silently dropped.
        return _fail(err, "--cloudwatch ships the files named alone: no --file and no --label")
    prepared = _prepare(options, err)
    if isinstance(prepared, int):
        return prepared
    return ship(prepared.spec)


def _fail(err: TextIO, message: str) -> int:
    print(f"log-exporter replay: {message}", file=err)
    return EXIT_CONFIG


def _prepare(options: ReplayOptions, err: TextIO) -> _Prepared | int:
    """The checked inputs, or the exit code after saying on ``err`` what is wrong."""
    step = options.step
    if not (math.isfinite(step) and step >= 0.001):
        return _fail(err, f"--step must be a number of seconds >= 0.001, not {step}")
    jobs = default_jobs() if options.jobs is None else options.jobs
    if jobs < 1:
        return _fail(err, f"--jobs must be at least 1, not {jobs}")
    out_dir = os.path.dirname(os.path.abspath(options.output))
    if options.output != "-" and not os.access(out_dir, os.W_OK | os.X_OK):
        # Found out now, not after a long replay whose result could not be kept.
        return _fail(err, f"{options.output}: cannot write into {out_dir}")
    try:
        patterns = [parse_pattern(p) for p in options.patterns]
        pairs = [parse_label(item) for item in options.labels]
        spec = read_spec(options.spec or None)
        constant = check_label_names(
            pairs, patterns, selfmetrics.taken_label_names(spec.definitions, selfmetrics.STORE)
        )
        time_of = compile_spec(spec).reader.time_of
        sets = [
            LabelledSet(
                fileset.labels + tuple(constant.items()),
                open_sources(fileset.paths, time_of=time_of, input_format=options.input_format),
            )
            for fileset in gather(options.files, patterns)
        ]
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return _fail(err, f"{options.spec}: cannot read the spec: {reason}")
    except SpecError as exc:
        return _fail(err, "\n".join(exc.errors))
    except (ReplayError, PatternError) as exc:
        return _fail(err, str(exc))
    return _Prepared(spec, sets, jobs, constant)


def _replay_to_output(
    options: ReplayOptions,
    prepared: _Prepared,
    progress: SetProgress,
    stdout: BinaryIO,
    jobs: int,
) -> tuple[ReplayStats, list[str]]:
    """Replay every file set in the asked format and write the output: the whole replay's
    stats, and the sets without a sample (openmetrics); ReplayError or OSError when it fails."""
    total = ReplayStats()
    unsampled: list[str] = []
    step = None if options.format == "prometheus" else options.step
    with contextlib.ExitStack() as stack:
        workers = None
        if jobs > 1 and len(prepared.sets) > 1:
            # Started once for all the sets, not once per set.
            workers = stack.enter_context(Workers(prepared.spec, jobs, step))
        _replay_sets(options, prepared, progress, stdout, jobs, workers, total, unsampled)
    return total, unsampled


def _replay_sets(
    options: ReplayOptions,
    prepared: _Prepared,
    progress: SetProgress,
    stdout: BinaryIO,
    jobs: int,
    workers: Workers | None,
    total: ReplayStats,
    unsampled: list[str],
) -> None:
    if options.format == "prometheus":
        merged = Families()
        for labelled in prepared.sets:
            store, pipeline = _store_and_pipeline(prepared.spec)
            one = replay_final(labelled.sources, pipeline, progress, jobs=jobs, workers=workers)
            progress.next_set(sum(s.size for s in labelled.sources), int(store.lines["parsed"]))
            merged.add(families(store.snapshot(exemplars=False)), dict(labelled.labels))
            add_stats(total, one)
        merged.add([build_info_family()], prepared.constant)
        registry = CollectorRegistry()
        registry.register(merged)
        text = generate_latest(registry)
        write_output(options.output, lambda out: out.write(text), stdout)
        return
    with SpillingWriter() as writer:
        for labelled in prepared.sets:
            store, pipeline = _store_and_pipeline(prepared.spec)

            def emit(t: float, store: Store = store, labels: Labels = labelled.labels) -> None:
                # No exemplars: the blocks promtool builds cannot hold them (docs/backfill.md).
                writer.add(families(store.snapshot_unlocked(exemplars=False)), t, labels)

            one = replay_steps(
                labelled.sources, pipeline, options.step, emit, progress, jobs=jobs, workers=workers
            )
            progress.next_set(sum(s.size for s in labelled.sources), int(store.lines["parsed"]))
            if one.last_time is None and len(prepared.sets) > 1:
                unsampled.append(labels_text(labelled.labels))
            add_stats(total, one)
        write_output(options.output, writer.write, stdout)


def _store_and_pipeline(spec: Spec) -> tuple[Store, Pipeline]:
    store = Store(spec.definitions)
    # Replay writes no exemplars (docs/backfill.md): keeping them would only cost time.
    return store, Pipeline(compile_spec(spec), store, exemplars=False)


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
        # mkstemp makes the file 0600: give it the mode an ordinary file gets under the umask, so
        # promtool run as another user can read the backfill.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
