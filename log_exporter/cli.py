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
    replay.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: the CPUs this process may use); same output as 1",
    )
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
    from log_exporter.cloudwatch.hook import run_replay
    from log_exporter.replay import ReplayOptions, run

    if args.jobs is not None and args.jobs > 1 and args.cloudwatch_enabled is not None:
        # CloudWatch takes each log stream in order: that shipping stays in one process.
        print(
            "log-exporter replay: --cloudwatch replays in one process: no --jobs", file=sys.stderr
        )
        return EXIT_CONFIG
    return run(
        ReplayOptions(
            files=args.files,
            spec=args.spec,
            format=args.format,
            step=args.step,
            output=args.output,
            quiet=args.quiet,
            jobs=args.jobs,
            # `replay --cloudwatch` ships the files to CloudWatch instead (docs/cloudwatch.md).
            cloudwatch=lambda spec: run_replay(args, spec),
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(os.environ).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
