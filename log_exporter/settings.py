"""Every setting of ``log-exporter serve`` and of its CloudWatch shipping, in one table read by one
rule: the flag, then the environment, then the default.

Each row names the flag, the variables, the default, how the value is checked and what it means;
``--help`` and docs/configuration.md (scripts/gen_configuration_doc.py) are made from the rows, so a
setting the code reads and the documentation omits cannot exist. An empty variable counts as unset.
A bad value is refused with a message naming both the flag and the variable.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.logs import LEVELS


class SettingError(ValueError):
    """A value that makes starting pointless; the message names the flag and the variable."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the table."""

    dest: str  # the attribute argparse stores it in
    flag: str
    env: tuple[str, ...]  # looked up in this order; the first set and not empty wins
    default: str | None  # None: unset (or, with ``doc_default``, computed by its reader)
    help: str  # for --help
    doc: str  # the meaning column of docs/configuration.md
    doc_value: str = ""  # how the docs write the value after the flag: PATH, SECONDS...
    doc_default: str | None = None  # None: the default in backquotes
    metavar: str | None = None
    choices: tuple[str, ...] = ()  # checked by argparse for a flag, by ``check`` otherwise
    kind: type[int] | type[float] | None = None  # converted, flag and variable alike
    switch: bool = False  # a flag without a value that stores "true"
    # The problem with a converted value, or None; only ``check`` calls it (after argparse).
    problem: Callable[[Any], str | None] | None = None

    @property
    def documented_default(self) -> str:
        if self.doc_default is not None:
            return self.doc_default
        return f"`{self.default}`"


def lookup(setting: Setting, flag: str | None, environ: Mapping[str, str]) -> str | None:
    """The flag's value when given, else the first of the setting's variables set and not empty,
    else the default."""
    if flag is not None:
        return flag
    for name in setting.env:
        value = environ.get(name)
        if value:
            return value
    return setting.default


def _converter(setting: Setting) -> Callable[[str], float]:
    """An argparse type naming the environment variable too: a default taken from the environment
    is converted by argparse like a flag, and a message naming only the flag would send the reader
    looking for a flag nobody passed."""
    convert, env = setting.kind, setting.env[0]
    assert convert is not None

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


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    settings: Iterable[Setting],
    environ: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per setting.

    With ``environ`` a flag's default is what ``lookup`` finds there, so argparse lets a given
    flag win and converts either value alike. Without, defaults stay None for a reader that must
    tell a given flag from a variable (``replay`` ships to CloudWatch only on ``--cloudwatch``)
    and calls ``lookup`` itself.
    """
    for setting in settings:
        default = None if environ is None else lookup(setting, None, environ)
        if setting.switch:
            parser.add_argument(
                setting.flag,
                dest=setting.dest,
                action="store_const",
                const="true",
                default=default,
                help=setting.help,
            )
            continue
        parser.add_argument(
            setting.flag,
            dest=setting.dest,
            default=default,
            metavar=setting.metavar,
            choices=list(setting.choices) or None,
            type=_converter(setting) if setting.kind is not None else str,
            help=setting.help,
        )


def check(args: argparse.Namespace, settings: Sequence[Setting]) -> None:
    """Refuse what argparse could not: a default from the environment skips its ``choices``, and
    some values are well formed but unusable. Raise SettingError for the first problem."""
    # The log level first: the logs are configured from it before anything else is said.
    for setting in sorted(settings, key=lambda s: s is not LOG_LEVEL):
        value = getattr(args, setting.dest)
        if setting.choices and value not in setting.choices:
            choices = " or ".join(setting.choices)
            raise SettingError(f"{_named(setting)}: {value!r} is not {choices}")
        message = setting.problem(value) if setting.problem is not None else None
        if message is not None:
            raise SettingError(f"{_named(setting)}: {message}")


def _named(setting: Setting) -> str:
    return f"{setting.flag} / {setting.env[0]}"


# -- log-exporter serve ------------------------------------------------------------------------

FILE: Final = Setting(
    dest="file",
    flag="--file",
    env=("LOG_EXPORTER_FILE", "JSON_LOG_PATH"),
    default="./logs/sustainbot.jsonl",
    help="JSONL file to tail (env LOG_EXPORTER_FILE, then JSON_LOG_PATH)",
    doc_value="PATH",
    doc="the JSONL file to tail. `JSON_LOG_PATH` is the service's own setting, so a sidecar "
    "sharing the service's environment finds the log without more configuration.",
)
LISTEN: Final = Setting(
    dest="listen",
    flag="--listen",
    env=("LOG_EXPORTER_LISTEN",),
    default="127.0.0.1:9464",
    help="host:port for /metrics (env LOG_EXPORTER_LISTEN)",
    doc_value="HOST:PORT",
    doc="where to serve. Loopback only by default; `0.0.0.0:9464` (or `[::]:9464`) to be scraped "
    "from another host, preferably with a web config. IPv6 addresses in brackets: `[::1]:9464`.",
)
SPEC: Final = Setting(
    dest="spec",
    flag="--spec",
    env=("LOG_EXPORTER_SPEC",),
    default=None,
    help="spec TOML (env LOG_EXPORTER_SPEC)",
    doc_value="PATH",
    doc_default="the built-in SustainBot spec",
    doc="the TOML mapping from events to metrics (`docs/spec.md`). Checked at start: an invalid "
    "spec stops the exporter with exit code 2 and a message naming the file, table and field.",
)
WEB_CONFIG: Final = Setting(
    dest="web_config",
    flag="--web-config",
    env=("LOG_EXPORTER_WEB_CONFIG",),
    default=None,
    help="exporter-toolkit web config: TLS and basic auth (env LOG_EXPORTER_WEB_CONFIG)",
    doc_value="PATH",
    doc_default="none (plain HTTP, no auth)",
    doc="TLS and basic auth, in the Prometheus exporter-toolkit format (below). An invalid file "
    "stops the exporter with exit code 2, naming the file and field.",
)
START_AT: Final = Setting(
    dest="start_at",
    flag="--start-at",
    env=("LOG_EXPORTER_START_AT",),
    default="beginning",
    choices=("beginning", "end"),
    help="where to start in a file that already exists (env LOG_EXPORTER_START_AT)",
    doc_value="beginning\\|end",
    doc="where to start in a file that already exists when there is no state to resume from.",
)
STATE: Final = Setting(
    dest="state",
    flag="--state",
    env=("LOG_EXPORTER_STATE",),
    default=None,
    help="state file (env LOG_EXPORTER_STATE)",
    doc_value="PATH",
    doc_default="none",
    doc="state file: the read position and every metric value, saved atomically so a restart "
    "neither resets counters nor counts a line twice (`docs/tailing.md`). Its directory must "
    "exist at start. In the log's own directory its name must not start with the log's name "
    "(`sustainbot.jsonl.state` would be taken for a rotated log): the exporter refuses it at "
    "start.",
)
STATE_INTERVAL: Final = Setting(
    dest="state_interval",
    flag="--state-interval",
    env=("LOG_EXPORTER_STATE_INTERVAL",),
    default="5",
    kind=float,
    metavar="SECONDS",
    problem=lambda seconds: None if seconds > 0 else "must be > 0",
    help="seconds between state saves (env LOG_EXPORTER_STATE_INTERVAL)",
    doc_value="SECONDS",
    doc="how often the state file is saved (also on SIGTERM/SIGINT); a finite number > 0.",
)
# Defaults that fit the shipped pod's grace period with gunicorn's graceful timeout before them
# (docs/deployment.md has the arithmetic).
DRAIN_QUIET: Final = Setting(
    dest="drain_quiet",
    flag="--drain-quiet",
    env=("LOG_EXPORTER_DRAIN_QUIET",),
    default="2",
    kind=float,
    metavar="SECONDS",
    problem=lambda seconds: None if seconds >= 0 else "must be >= 0",
    help="on SIGTERM/SIGINT, stop once the log has not grown for this long "
    "(env LOG_EXPORTER_DRAIN_QUIET)",
    doc_value="SECONDS",
    doc="the drain on SIGTERM/SIGINT (`docs/exporter.md`) ends once every open generation of the "
    "log has been read (and shipped) to its end and nothing was written to it for this long.",
)
DRAIN_TIMEOUT: Final = Setting(
    dest="drain_timeout",
    flag="--drain-timeout",
    env=("LOG_EXPORTER_DRAIN_TIMEOUT",),
    default="20",
    kind=float,
    metavar="SECONDS",
    problem=lambda seconds: None if seconds >= 0 else "must be >= 0",
    help="on SIGTERM/SIGINT, stop draining after this long at most "
    "(env LOG_EXPORTER_DRAIN_TIMEOUT)",
    doc_value="SECONDS",
    doc="the longest drain: past it the exporter saves its state and exits with code 3 when "
    "lines were left unread or unshipped (the log says how many). `0` stops at once, as a "
    "second signal does.",
)
MAX_LINE: Final = Setting(
    dest="max_line_bytes",
    flag="--max-line-bytes",
    env=("LOG_EXPORTER_MAX_LINE_BYTES",),
    default=str(MAX_LINE_BYTES),
    kind=int,
    metavar="N",
    problem=lambda n: None if n >= 1 else "must be >= 1",
    help="longer lines are skipped and counted as oversized (env LOG_EXPORTER_MAX_LINE_BYTES)",
    doc_value="N",
    doc_default=f"`{MAX_LINE_BYTES}` (1 MiB)",
    doc="longer lines are skipped with bounded memory and counted as `oversized`.",
)
LOG_LEVEL: Final = Setting(
    dest="log_level",
    flag="--log-level",
    env=("LOG_EXPORTER_LOG_LEVEL",),
    default="info",
    # Any case is accepted, so the levels are not argparse choices.
    problem=lambda level: None if level.lower() in LEVELS else f"unknown level {level.lower()!r}",
    help="debug, info, warning or error (env LOG_EXPORTER_LOG_LEVEL)",
    doc_value="LEVEL",
    doc="`debug`, `info`, `warning` or `error`.",
)

SERVE: Final = (
    FILE,
    LISTEN,
    SPEC,
    WEB_CONFIG,
    START_AT,
    STATE,
    STATE_INTERVAL,
    DRAIN_QUIET,
    DRAIN_TIMEOUT,
    MAX_LINE,
    LOG_LEVEL,
)


# -- CloudWatch shipping (serve, and replay --cloudwatch) --------------------------------------
# Checked, and turned into a CloudWatchConfig, by log_exporter.cloudwatch.config.


def _cloudwatch(
    field: str,
    default: str | None,
    doc: str,
    doc_default: str | None = None,
    fallback_env: tuple[str, ...] = (),
) -> Setting:
    env = f"CLOUDWATCH_{field.upper()}"
    return Setting(
        dest=f"cloudwatch_{field}",
        flag=f"--cloudwatch-{field.replace('_', '-')}",
        env=(env, *fallback_env),
        default=default,
        metavar=field.upper(),
        help=f"env {env}, default {default if default is not None else doc_default}",
        doc=doc,
        doc_default=doc_default,
    )


CLOUDWATCH_ENABLED: Final = Setting(
    dest="cloudwatch_enabled",
    flag="--cloudwatch",
    env=("CLOUDWATCH_ENABLED",),
    default="false",
    switch=True,
    help="ship lines and metrics to CloudWatch (env CLOUDWATCH_ENABLED=true)",
    doc="`true` ships lines and metrics",
)
CLOUDWATCH: Final = (
    CLOUDWATCH_ENABLED,
    _cloudwatch("namespace", "AIWF/SustainBot", "metric namespace (not `AWS/...`)"),
    # AWS_REGION (set by EKS and ECS) and AWS_DEFAULT_REGION are the AWS SDKs' own variables: a
    # pod that sets them expects its shipper in that region, not in the built-in default.
    _cloudwatch(
        "region",
        "eu-west-1",
        "AWS region; the AWS SDKs' own variables are read when `CLOUDWATCH_REGION` is not set",
        fallback_env=("AWS_REGION", "AWS_DEFAULT_REGION"),
    ),
    _cloudwatch("log_group", "/aiwf/sustainbot", "log group, created when missing"),
    _cloudwatch("log_stream", None, "log stream, created when missing", "the host name"),
    _cloudwatch("flush_seconds", "60.0", "metric aggregation interval (seconds, > 0)", "`60`"),
    _cloudwatch("metrics_mode", "putmetricdata", "`putmetricdata` or `emf`"),
)
