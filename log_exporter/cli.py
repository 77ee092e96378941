"""Command line: parses the arguments (flags left out default to the environment) and hands them
to one function per subcommand; serve's signal handlers are installed here, at the entry point.

The wiring of a subcommand lives in its own module (``serve.main``), the work in the stage modules.
Every parser, a subcommand's too, is a ``Parser``: no abbreviated flags, ``--version``, and help
showing each option's default.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from log_exporter import buildinfo, settings

# CloudWatch's flags; its config module imports no boto3.
from log_exporter.cloudwatch.config import add_arguments as add_cloudwatch_arguments
from log_exporter.cloudwatch.config import load as load_cloudwatch_config
from log_exporter.limits import EXIT_CONFIG, EXIT_ERROR, EXIT_OK
from log_exporter.signals import relay

if TYPE_CHECKING:
    from log_exporter.serve import Service


class Parser(argparse.ArgumentParser):
    """A parser of this command line. argparse makes each subcommand's parser of its parent's
    class, so a subcommand added with ``sub.add_parser`` gets all of this without asking."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # `--lis` must not mean `--listen`: an abbreviation that works today breaks silently the
        # day a second flag starts the same way.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        buildinfo.add_version_flag(self, "log-exporter")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The parser; flags left out default to ``environ``, then to the settings table."""
    parser = Parser(
        prog="log-exporter",
        description="Derive Prometheus (and optionally CloudWatch) metrics from a JSONL event log.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # serve ---------------------------------------------------------------------------------
    serve = sub.add_parser("serve", help="tail the log and serve /metrics")
    settings.add_arguments(serve, settings.SERVE, environ)
    serve.set_defaults(func=_cmd_serve)
    add_cloudwatch_arguments(serve)

    # check-spec ----------------------------------------------------------------------------
    check = sub.add_parser("check-spec", help="validate a spec file and name every error")
    check.add_argument("path")
    check.add_argument(
        "--explain",
        metavar="FILE",
        help="also print, for each line of FILE (a JSONL sample), what the spec derives from it "
        "and why the metrics its event feeds did not change [default: only check]",
    )
    check.set_defaults(func=_cmd_check_spec)

    # test-spec -----------------------------------------------------------------------------
    cases = sub.add_parser(
        "test-spec",
        help="run a cases file (log lines and the series values they must give); "
        "exit 1 on a difference",
    )
    cases.add_argument("cases", help="TOML (or YAML) cases file, see docs/spec.md")
    cases.set_defaults(func=_cmd_test_spec)

    # print-spec ----------------------------------------------------------------------------
    show = sub.add_parser(
        "print-spec",
        help="print the built-in spec (SustainBot's), to start a spec of your own from",
    )
    show.set_defaults(func=_cmd_print_spec)

    # replay --------------------------------------------------------------------------------
    replay = sub.add_parser("replay", help="turn historical log files into metrics")
    _add_files(replay, labels=True)
    settings.add_arguments(replay, (settings.SPEC,), environ)
    replay.add_argument(
        "--format",
        choices=["prometheus", "openmetrics"],
        default="prometheus",
        help="output format [default prometheus]",
    )
    replay.add_argument(
        "--step",
        type=settings.seconds,
        default=None,
        metavar="SECONDS",
        help="seconds (or a duration such as 1m) between samples; "
        "with --format openmetrics only [default 60]",
    )
    replay.add_argument("-o", "--output", default="-", help="output file [default - (stdout)]")
    _add_input_format(replay)
    replay.add_argument(
        "--quiet", action="store_true", help="no progress bar [default: a bar on a terminal]"
    )
    replay.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes; the output is the same as with 1 "
        "[default: the CPUs this process may use]",
    )
    replay.set_defaults(func=_cmd_replay)
    add_cloudwatch_arguments(replay)

    # trace ---------------------------------------------------------------------------------
    trace = sub.add_parser(
        "trace",
        help="print every event of one request (trace id) from log files, oldest first",
        description="Exit status as grep's: 0 found, 1 none found, 2 an error.",
    )
    trace.add_argument("trace_id", metavar="TRACE_ID")
    _add_files(trace, labels=False)
    trace.add_argument(
        "--field",
        default=None,
        help="the event field holding the id [default: the field the spec's exemplars carry, "
        "trace_id for the built-in spec]",
    )
    settings.add_arguments(trace, (settings.SPEC,), environ)
    _add_input_format(trace)
    trace.set_defaults(func=_cmd_trace)
    for command in sub.choices.values():
        command.set_defaults(parser=command)
    return parser


def _add_input_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-format",
        choices=list(settings.INPUT_FORMAT.choices),
        default="json",
        help="json (one event per line) or cri (container runtime logs: /var/log/pods, "
        "rotated and gzip generations too) [default json]",
    )


def _add_files(parser: argparse.ArgumentParser, *, labels: bool) -> None:
    """replay's and trace's inputs: files named alone, ``--file`` patterns, ``--label`` pairs."""
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="a log file, plain or gzip; - for stdin"
    )
    parser.add_argument(
        "--file",
        dest="patterns",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a log (glob; {name} captures a label from the path, {_} drops it) read with its "
        "rotated generations; repeatable (docs/replay.md) [default: the FILEs only]",
    )
    if labels:
        parser.add_argument(
            "--label",
            dest="labels",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a label on every series, self-metrics included; repeatable [default: none]",
        )


def _cmd_serve(args: argparse.Namespace) -> int:
    # Imported here: the other subcommands need none of the serving machinery.
    from log_exporter.serve import main as serve

    return serve(args, os.environ, _handle_signals)


def _handle_signals(service: Service) -> None:
    """SIGTERM and SIGINT drain and stop ``service`` (a second one stops it at once), SIGHUP
    reloads its spec.

    Installed here, at the entry point, because a handler belongs to the whole process: a library
    that installed its own would replace its host's (pytest's, say) without being asked. The
    requests are made in a relay thread (``log_exporter.signals``): they take locks that the
    main thread, where a handler runs, may be holding at that very instant.
    """
    relay(
        {
            signal.SIGTERM: service.request_stop,
            signal.SIGINT: service.request_stop,
            signal.SIGHUP: service.request_reload,
        }
    )


def _cmd_check_spec(args: argparse.Namespace) -> int:
    # Imported here so that `--help` and other subcommands do not pay for the spec machinery.
    from log_exporter.spec import SpecError, read_spec

    path: str = args.path
    try:
        spec = read_spec(path)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UnicodeDecodeError as exc:
        print(f"{path}: not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return EXIT_ERROR
    except SpecError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return EXIT_ERROR
    print(f"OK: {len(spec.metrics)} metrics")
    if args.explain is None:
        return EXIT_OK
    from log_exporter.spectest import explain

    try:
        with open(args.explain, "rb") as f:
            for text in explain(spec, f):
                print(text)
    except OSError as exc:
        print(f"{args.explain}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _cmd_test_spec(args: argparse.Namespace) -> int:
    from log_exporter.spec import SpecError
    from log_exporter.spectest import CasesError, load_cases, run_cases

    path: str = args.cases
    try:
        cases = load_cases(path)
        failed, report = run_cases(cases)
    except OSError as exc:
        print(f"{exc.filename or path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UnicodeDecodeError as exc:
        print(f"{path}: a file it reads is not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return EXIT_CONFIG
    except CasesError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except SpecError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return EXIT_CONFIG
    for text in report:
        print(text)
    return EXIT_ERROR if failed else EXIT_OK


def _cmd_print_spec(args: argparse.Namespace) -> int:
    from log_exporter.spec.load import default_spec_text

    sys.stdout.write(default_spec_text())
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    """Exit 0 done; 1 done, but a file was damaged (the output is still written); 2 bad input."""
    # Imported here so that other subcommands do not pay for replay's machinery.
    from log_exporter.sources.files import ReplayError, stdin_as_file

    if args.cloudwatch_enabled is not None and args.input_format == "cri":
        print(
            "log-exporter replay: --cloudwatch ships JSON logs only: no --input-format cri",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.jobs is not None and args.jobs > 1 and args.cloudwatch_enabled is not None:
        # CloudWatch takes each log stream in order: that shipping stays in one process.
        print(
            "log-exporter replay: --cloudwatch replays in one process: no --jobs", file=sys.stderr
        )
        return EXIT_CONFIG
    try:
        with stdin_as_file(args.files) as files:
            return _replay(args, files)
    except ReplayError as exc:
        print(f"log-exporter replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _replay(args: argparse.Namespace, files: list[str]) -> int:
    from log_exporter.replay.command import ReplayOptions, run, run_shipping

    options = ReplayOptions(
        files=files,
        spec=args.spec,
        format=args.format,
        step=60.0 if args.step is None else args.step,
        output=args.output,
        quiet=args.quiet,
        jobs=args.jobs,
        input_format=args.input_format,
        patterns=args.patterns,
        labels=args.labels,
    )
    if args.cloudwatch_enabled is None:
        return run(options)
    # Only the flag ships: a CLOUDWATCH_ENABLED=true meant for serve must not make an ad-hoc
    # replay write to CloudWatch. Then the files go to CloudWatch instead (docs/cloudwatch.md).
    from log_exporter.cloudwatch.hook import ship_replay

    return run_shipping(
        options,
        lambda spec: ship_replay(
            lambda: load_cloudwatch_config(os.environ, args), options.files, spec
        ),
    )


def _cmd_trace(args: argparse.Namespace) -> int:
    from log_exporter.replay.trace import EXIT_TROUBLE, exemplar_field, run
    from log_exporter.sources.files import ReplayError, stdin_as_file
    from log_exporter.spec import SpecError, read_spec

    field = args.field
    if field is None:
        # The field the spec's exemplars carry is the id an operator copies from a graph.
        try:
            field = exemplar_field(read_spec(args.spec or None))
        except (OSError, UnicodeDecodeError, SpecError) as exc:
            reason = "\n".join(exc.errors) if isinstance(exc, SpecError) else exc
            print(f"log-exporter trace: {args.spec}: {reason}", file=sys.stderr)
            return EXIT_TROUBLE
    try:
        with stdin_as_file(args.files) as files:
            return run(
                args.trace_id,
                files,
                field=field,
                patterns=args.patterns,
                input_format=args.input_format,
            )
    except ReplayError as exc:
        print(f"log-exporter trace: {exc}", file=sys.stderr)
        return EXIT_TROUBLE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(os.environ)
    args, unknown = parser.parse_known_args(argv)
    # argparse reports a subcommand's unknown flag with the top-level usage, which lists only the
    # subcommands; the subcommand's own usage shows the flags the operator was looking for.
    command: argparse.ArgumentParser = args.parser
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in ("replay", "trace") and not (args.files or args.patterns):
        command.error("a FILE or a --file pattern is required")
    if args.command == "replay" and args.step is not None and args.format != "openmetrics":
        # Only OpenMetrics output carries samples over time; a silently ignored step would leave
        # the operator believing the output was sampled.
        command.error("--step applies to --format openmetrics only")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
