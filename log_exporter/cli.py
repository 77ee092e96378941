"""Command line: parses arguments and the environment once, then wires the stages together.

Each subcommand's wiring lives in its own ``_cmd_*`` function; the work lives in the stage modules.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence

from log_exporter import __version__
from log_exporter.limits import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, MAX_LINE_BYTES


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _typed(convert: type[int] | type[float], env: str) -> Callable[[str], float]:
    """An argparse type naming the environment variable too: a string default taken from the
    environment is converted by argparse like a flag, and a message naming only the flag would
    send the reader looking for a flag nobody passed."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            kind = "an integer" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind} (flag or {env})") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number (flag or {env})")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="log-exporter",
        description="Derive Prometheus (and optionally CloudWatch) metrics from a JSONL event log.",
    )
    parser.add_argument("--version", action="version", version=f"log-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # serve ---------------------------------------------------------------------------------
    serve = sub.add_parser("serve", help="tail the log and serve /metrics")
    serve.add_argument(
        "--file",
        default=_env("LOG_EXPORTER_FILE", _env("JSON_LOG_PATH", "./logs/sustainbot.jsonl")),
        help="JSONL file to tail (env LOG_EXPORTER_FILE, then JSON_LOG_PATH)",
    )
    serve.add_argument(
        "--listen",
        default=_env("LOG_EXPORTER_LISTEN", "127.0.0.1:9464"),
        help="host:port for /metrics (env LOG_EXPORTER_LISTEN)",
    )
    serve.add_argument(
        "--spec", default=_env("LOG_EXPORTER_SPEC"), help="spec TOML (env LOG_EXPORTER_SPEC)"
    )
    serve.add_argument(
        "--web-config",
        default=_env("LOG_EXPORTER_WEB_CONFIG"),
        help="exporter-toolkit web config: TLS and basic auth (env LOG_EXPORTER_WEB_CONFIG)",
    )
    serve.add_argument(
        "--start-at",
        choices=["beginning", "end"],
        default=_env("LOG_EXPORTER_START_AT", "beginning"),
        help="where to start in a file that already exists (env LOG_EXPORTER_START_AT)",
    )
    serve.add_argument(
        "--state", default=_env("LOG_EXPORTER_STATE"), help="state file (env LOG_EXPORTER_STATE)"
    )
    serve.add_argument(
        "--state-interval",
        type=_typed(float, "LOG_EXPORTER_STATE_INTERVAL"),
        default=_env("LOG_EXPORTER_STATE_INTERVAL", "5"),
        metavar="SECONDS",
        help="seconds between state saves (env LOG_EXPORTER_STATE_INTERVAL)",
    )
    serve.add_argument(
        "--max-line-bytes",
        type=_typed(int, "LOG_EXPORTER_MAX_LINE_BYTES"),
        default=_env("LOG_EXPORTER_MAX_LINE_BYTES", str(MAX_LINE_BYTES)),
        metavar="N",
        help="longer lines are skipped and counted as oversized (env LOG_EXPORTER_MAX_LINE_BYTES)",
    )
    serve.add_argument(
        "--log-level",
        default=_env("LOG_EXPORTER_LOG_LEVEL", "info"),
        help="debug, info, warning or error (env LOG_EXPORTER_LOG_LEVEL)",
    )
    serve.set_defaults(func=_cmd_serve)
    _add_cloudwatch_arguments(serve)

    # check-spec ----------------------------------------------------------------------------
    check = sub.add_parser("check-spec", help="validate a spec file and name every error")
    check.add_argument("path")
    check.set_defaults(func=_cmd_check_spec)

    # replay --------------------------------------------------------------------------------
    replay = sub.add_parser("replay", help="turn historical log files into metrics")
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--spec", default=_env("LOG_EXPORTER_SPEC"))
    replay.add_argument("--format", choices=["prometheus", "openmetrics"], default="prometheus")
    replay.add_argument("--step", type=float, default=60.0, help="seconds between samples")
    replay.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=_cmd_replay)
    _add_cloudwatch_arguments(replay)
    return parser


def _add_cloudwatch_arguments(parser: argparse.ArgumentParser) -> None:
    # CloudWatch flags (log_exporter.cloudwatch); its config module imports no boto3.
    from log_exporter.cloudwatch.config import add_arguments

    add_arguments(parser)


def _cmd_serve(args: argparse.Namespace) -> int:
    # Imported here: the other subcommands need none of the serving machinery.
    import logging

    from log_exporter import logs
    from log_exporter.serve import ServeOptions, Service, StartupError

    level = str(args.log_level).lower()
    logs.configure(level if level in ("debug", "info", "warning", "error") else "info")
    log = logging.getLogger("log_exporter.serve")
    try:
        # Defaults from the environment bypass argparse's own checks, so check them here.
        if level not in ("debug", "info", "warning", "error"):
            raise StartupError(f"--log-level / LOG_EXPORTER_LOG_LEVEL: unknown level {level!r}")
        if args.start_at not in ("beginning", "end"):
            raise StartupError(
                f"--start-at / LOG_EXPORTER_START_AT: {args.start_at!r} is not beginning or end"
            )
        if not args.state_interval > 0:
            raise StartupError("--state-interval / LOG_EXPORTER_STATE_INTERVAL: must be > 0")
        if args.max_line_bytes < 1:
            raise StartupError("--max-line-bytes / LOG_EXPORTER_MAX_LINE_BYTES: must be >= 1")
        service = Service(
            ServeOptions(
                file=args.file,
                listen=args.listen,
                spec=args.spec,
                web_config=args.web_config,
                start_at=args.start_at,
                state=args.state,
                state_interval=args.state_interval,
                max_line_bytes=args.max_line_bytes,
            )
        )
        # CloudWatch shipping, when enabled: its own thread, tailer and cursor (docs/cloudwatch.md).
        from log_exporter.cloudwatch.hook import start_for_serve

        shipping = start_for_serve(args, service)
    except StartupError as exc:
        log.error(str(exc))
        return EXIT_CONFIG
    try:
        return service.run()
    finally:
        if shipping is not None:
            shipping.stop()


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

    return run(
        ReplayOptions(
            files=args.files,
            spec=args.spec,
            format=args.format,
            step=args.step,
            output=args.output,
            quiet=args.quiet,
            # `replay --cloudwatch` ships the files to CloudWatch instead (docs/cloudwatch.md).
            cloudwatch=lambda spec: run_replay(args, spec),
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
