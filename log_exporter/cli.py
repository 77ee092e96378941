"""Command line: parses the arguments (flags left out default to the environment) and hands them
to one function per subcommand; serve's signal handlers are installed here, at the entry point.

The wiring of a subcommand lives in its own module (``serve.main``), the work in the stage modules.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from log_exporter import __version__, settings

# CloudWatch's flags; its config module imports no boto3.
from log_exporter.cloudwatch.config import add_arguments as add_cloudwatch_arguments
from log_exporter.limits import EXIT_CONFIG, EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from log_exporter.serve import Service


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The parser; flags left out default to ``environ``, then to the settings table."""
    parser = argparse.ArgumentParser(
        prog="log-exporter",
        description="Derive Prometheus (and optionally CloudWatch) metrics from a JSONL event log.",
    )
    parser.add_argument("--version", action="version", version=f"log-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # serve ---------------------------------------------------------------------------------
    serve = sub.add_parser("serve", help="tail the log and serve /metrics")
    settings.add_arguments(serve, settings.SERVE, environ)
    serve.set_defaults(func=_cmd_serve)
    add_cloudwatch_arguments(serve)

    # check-spec ----------------------------------------------------------------------------
    check = sub.add_parser("check-spec", help="validate a spec file and name every error")
    check.add_argument("path")
    check.set_defaults(func=_cmd_check_spec)

    # replay --------------------------------------------------------------------------------
    replay = sub.add_parser("replay", help="turn historical log files into metrics")
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--spec", default=settings.lookup(settings.SPEC, None, environ))
    replay.add_argument("--format", choices=["prometheus", "openmetrics"], default="prometheus")
    replay.add_argument("--step", type=float, default=60.0, help="seconds between samples")
    replay.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=_cmd_replay)
    add_cloudwatch_arguments(replay)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    # Imported here: the other subcommands need none of the serving machinery.
    from log_exporter.serve import main as serve

    return serve(args, os.environ, _handle_signals)


def _handle_signals(service: Service) -> None:
    """SIGTERM and SIGINT stop ``service``, SIGHUP reloads its spec.

    Installed here, at the entry point, because a handler belongs to the whole process: a library
    that installed its own would replace its host's (pytest's, say) without being asked.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            service.request_reload()
        else:
            service.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)


def _cmd_check_spec(args: argparse.Namespace) -> int:
    # Imported here so that `--help` and other subcommands do not pay for the spec machinery.
    from log_exporter.spec import SpecError, load_spec

    path: str = args.path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        print(f"{path}: not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return EXIT_ERROR
    try:
        spec = load_spec(text, path)
    except SpecError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return EXIT_ERROR
    print(f"OK: {len(spec.metrics)} metrics")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    """Exit 0 done; 1 done, but a file was damaged (the output is still written); 2 bad input."""
    # Imported here so that other subcommands do not pay for replay's machinery.
    import math

    from prometheus_client import CollectorRegistry, generate_latest

    from log_exporter.collector import StoreCollector, families
    from log_exporter.openmetrics import SpillingWriter
    from log_exporter.pipeline import Pipeline
    from log_exporter.progress import Progress
    from log_exporter.replay import replay_final, replay_steps, summary, write_output
    from log_exporter.sources import ReplayError, open_sources
    from log_exporter.spec import SpecError, compile_spec, default_spec_text, load_spec
    from log_exporter.store import Store

    def fail(message: str) -> int:
        print(f"log-exporter replay: {message}", file=sys.stderr)
        return EXIT_CONFIG

    step: float = args.step
    if not (math.isfinite(step) and step >= 0.001):
        return fail(f"--step must be a number of seconds >= 0.001, not {step}")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if args.output != "-" and not os.access(out_dir, os.W_OK | os.X_OK):
        # Found out now, not after a long replay whose result could not be kept.
        return fail(f"{args.output}: cannot write into {out_dir}")
    try:
        if args.spec:
            with open(args.spec, encoding="utf-8") as f:
                spec = load_spec(f.read(), args.spec)
        else:
            spec = load_spec(default_spec_text(), "sustainbot.toml (built in)")
        sources = open_sources(args.files)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"{args.spec}: cannot read the spec: {getattr(exc, 'strerror', None) or exc}")
    except SpecError as exc:
        return fail("\n".join(exc.errors))
    except ReplayError as exc:
        return fail(str(exc))

    # `replay --cloudwatch` ships the files to CloudWatch instead (docs/cloudwatch.md).
    from log_exporter.cloudwatch.hook import run_replay

    shipped = run_replay(args, spec)
    if shipped is not None:
        return shipped

    store = Store(spec.definitions)
    pipeline = Pipeline(compile_spec(spec), store)
    progress = Progress(sys.stderr, sum(s.size for s in sources), enabled=not args.quiet)
    try:
        if args.format == "prometheus":
            stats = replay_final(sources, pipeline, progress)
            registry = CollectorRegistry()
            registry.register(StoreCollector(store))
            text = generate_latest(registry)
            write_output(args.output, lambda out: out.write(text), sys.stdout.buffer)
        else:
            with SpillingWriter() as writer:

                def emit(t: float) -> None:
                    writer.add(families(store.snapshot_unlocked()), t)

                stats = replay_steps(sources, pipeline, step, emit, progress)
                write_output(args.output, writer.write, sys.stdout.buffer)
    except ReplayError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{args.output}: cannot write: {exc.strerror or exc}")
    progress.finish(sum(s.size for s in sources), int(store.lines["parsed"]))
    for damage in stats.damage:
        print(f"log-exporter replay: {damage}", file=sys.stderr)
    if not args.quiet:
        print(f"log-exporter replay: {summary(stats)}", file=sys.stderr)
    if args.format == "openmetrics" and stats.last_time is None:
        print("log-exporter replay: no event has a usable timestamp: no samples", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR if stats.damage else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(os.environ).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
