"""Every setting of ``log-exporter serve`` and of its CloudWatch shipping, in one table read by one
rule: the flag, then the environment, then the default.

Each row names the flag, the variables, the default, how the value is checked and what it means;
``--help`` (which shows every row's variables and default) and docs/configuration.md
(scripts/gen_configuration_doc.py) are made from the rows, so a setting the code reads and the
documentation omits cannot exist. An empty variable counts as unset. A bad value is refused with a
message naming both the flag and the variable.

Flags are spelled as Prometheus' exporters spell them where they have one (``--web.listen-address``,
``--web.config.file``, ``--log.level``: node_exporter's and exporter-toolkit's); a row's earlier
spellings stay accepted as deprecated ``aliases``, each use logged once by serve.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.logs import FORMATS, LEVELS


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
    # converted, flag and variable alike; ``seconds`` also takes a Prometheus duration
    kind: type[int] | type[float] | Callable[[str], float] | None = None
    switch: bool = False  # a flag without a value that stores "true"
    # The problem with a converted value, or None; only ``check`` calls it (after argparse).
    problem: Callable[[Any], str | None] | None = None
    aliases: tuple[str, ...] = ()  # earlier spellings of the flag, accepted but deprecated
    once: bool = False  # given twice is an error, not "the last one wins"
    # Given several times, each adds a value (argparse keeps the list); the variables named in
    # ``several`` hold several values separated by commas, the others one.
    repeat: bool = False
    several: tuple[str, ...] = ()

    @property
    def documented_default(self) -> str:
        if self.doc_default is not None:
            return self.doc_default
        return f"`{self.default}`"

    @property
    def help_text(self) -> str:
        """What --help says: the meaning, the variables and the default (argparse-escaped)."""
        default = self.documented_default.replace("`", "")
        text = f"{self.help} [env {', then '.join(self.env)}; default {default}]"
        if self.aliases:
            text += f" ({', '.join(self.aliases)}: deprecated spelling)"
        return text.replace("%", "%%")


# Where serve's parsed arguments keep the deprecated spellings used: (alias, flag) pairs.
_DEPRECATED_DEST: Final = "deprecated_flags"
# Where they keep the dests given on the command line, for the flags that may be given once.
_GIVEN_DEST: Final = "flags_given"


class _Store(argparse.Action):
    """argparse's ``store``, noting when the flag was given in a deprecated spelling."""

    def __init__(
        self,
        *args: Any,
        aliases: tuple[str, ...] = (),
        once: bool = False,
        repeat: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.aliases, self.once, self.repeat = aliases, once, repeat

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        seen: frozenset[str] = getattr(namespace, _GIVEN_DEST, frozenset())
        if self.once and self.dest in seen:
            parser.error(f"{self.option_strings[0]} given twice: only one address is served")
        setattr(namespace, _GIVEN_DEST, seen | {self.dest})
        if self.repeat:
            # The flags given replace the environment's values; each further one adds to them.
            earlier = getattr(namespace, self.dest) if self.dest in seen else []
            values = [*earlier, values]
        setattr(namespace, self.dest, values)
        if option_string in self.aliases:
            used = getattr(namespace, _DEPRECATED_DEST, ())
            pair = (option_string, self.option_strings[0])
            if pair not in used:
                setattr(namespace, _DEPRECATED_DEST, (*used, pair))


def deprecated_flags(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The deprecated spellings given on the command line, each with the flag to use instead."""
    return tuple(getattr(args, _DEPRECATED_DEST, ()))


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


def lookup_many(setting: Setting, environ: Mapping[str, str]) -> list[str]:
    """A repeatable setting's values from the environment (``lookup``'s order): a variable of
    ``several`` split at its commas, blanks around them dropped; else the default, if any."""
    for name in setting.env:
        value = environ.get(name)
        if value:
            if name in setting.several:
                return [v.strip() for v in value.split(",") if v.strip()]
            return [value]
    return [] if setting.default is None else [setting.default]


# A duration as Prometheus writes one (model.ParseDuration): units largest first, each once.
_DURATION: Final = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_UNIT_SECONDS: Final = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def seconds(text: str) -> float:
    """A number of seconds (``2.5``) or a duration as Prometheus writes one (``20s``, ``1m``,
    ``1h30m``, ``250ms``), so an operator's habits from Prometheus' flags work here too."""
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)


def _kind_name(convert: Callable[[str], float]) -> str:
    if convert is int:
        return "an integer"
    if convert is seconds:
        return "a number of seconds or a duration such as 20s or 1m"
    return "a number"


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
            kind = _kind_name(convert)
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
        default: Any = None if environ is None else lookup(setting, None, environ)
        if setting.repeat and environ is not None:
            default = lookup_many(setting, environ)
        if setting.switch:
            parser.add_argument(
                setting.flag,
                dest=setting.dest,
                action="store_const",
                const="true",
                default=default,
                help=setting.help_text,
            )
            continue
        parser.add_argument(
            setting.flag,
            *setting.aliases,
            dest=setting.dest,
            action=_Store,
            aliases=setting.aliases,
            once=setting.once,
            repeat=setting.repeat,
            default=default,
            metavar=setting.metavar,
            choices=list(setting.choices) or None,
            type=_converter(setting) if setting.kind is not None else str,
            help=setting.help_text,
        )


def check(args: argparse.Namespace, settings: Sequence[Setting]) -> None:
    """Refuse what argparse could not: a default from the environment skips its ``choices``, and
    some values are well formed but unusable. Raise SettingError for the first problem."""
    # The log settings first: the logs are configured from them before anything else is said.
    for setting in sorted(settings, key=lambda s: s not in (LOG_LEVEL, LOG_FORMAT)):
        value = getattr(args, setting.dest)
        if setting.choices and value not in setting.choices:
            choices = " or ".join(setting.choices)
            raise SettingError(f"{_named(setting)}: {value!r} is not {choices}")
        message = setting.problem(value) if setting.problem is not None else None
        if message is not None:
            raise SettingError(f"{_named(setting)}: {message}")


def globs(value: str | None) -> tuple[str, ...]:
    """The comma-separated globs of ``--rotated-glob``, without the blanks around them."""
    if value is None:
        return ()
    return tuple(g.strip() for g in value.split(",") if g.strip())


def _named(setting: Setting) -> str:
    return f"{setting.flag} / {setting.env[0]}"


# -- log-exporter serve ------------------------------------------------------------------------

FILE: Final = Setting(
    dest="file",
    flag="--file",
    env=("LOG_EXPORTER_FILE", "JSON_LOG_PATH"),
    default="./logs/sustainbot.jsonl",
    metavar="PATH",
    help="JSONL file to tail, or a pattern of files ({name} captures a label); repeatable",
    doc_value="PATH",
    doc="the JSONL file to tail, or a pattern of files to follow (`*`, `?`, `[...]` within a "
    "path segment; `{name}` matches like `*` and makes the text it matched the label `name` "
    "of every series from that file, `{_}` matches without a label; `docs/node.md`). "
    "Repeatable; `LOG_EXPORTER_FILE` holds several separated by commas, `JSON_LOG_PATH` one "
    "path. `JSON_LOG_PATH` is the service's own setting, so a sidecar sharing the service's "
    "environment finds the log without more configuration; its `-` (the service logs to "
    "stdout) is refused at start: read the node's container logs instead (`docs/node.md`).",
    repeat=True,
    several=("LOG_EXPORTER_FILE",),
    problem=lambda paths: _files_problem(paths),
)
INPUT_FORMAT: Final = Setting(
    dest="input_format",
    flag="--input-format",
    env=("LOG_EXPORTER_INPUT_FORMAT",),
    default="json",
    # log_exporter.sources.cri.INPUT_FORMATS, written out: `--version` imports no orjson.
    choices=("json", "cri"),
    metavar="FORMAT",
    help="json (one event per line) or cri (a container runtime's log of stdout and stderr)",
    doc_value="json\\|cri",
    doc="`json`: one JSON event per line. `cri`: the kubelet's container logs "
    "(`/var/log/pods/...`, `<time> <stream> <P|F> <content>`), split lines joined, content that "
    "is no JSON object counted as `unstructured`, the runtime's time standing in for a missing "
    "event timestamp (`docs/node.md`).",
)
LABEL: Final = Setting(
    dest="label",
    flag="--label",
    env=("LOG_EXPORTER_LABELS",),
    default=None,
    metavar="NAME=VALUE",
    help="a constant label on every series, self-metrics included; repeatable",
    doc_value="NAME=VALUE",
    doc_default="none",
    doc="a label every series on /metrics carries (the spec's metrics, the self-metrics, "
    "`process_*` and `python_*`), as a Prometheus target label; repeatable, "
    "`LOG_EXPORTER_LABELS` holds several separated by commas (`job=sustainbot,cluster=eu`). "
    "A name that a metric or a `--file` capture also gives is refused at start, naming both.",
    repeat=True,
    several=("LOG_EXPORTER_LABELS",),
)
FILE_GRACE_PERIOD: Final = Setting(
    dest="file_grace_period",
    flag="--file-grace-period",
    env=("LOG_EXPORTER_FILE_GRACE_PERIOD",),
    default="5m",
    kind=seconds,
    metavar="SECONDS",
    problem=lambda seconds: None if seconds >= 0 else "must be >= 0",
    help="how long a label set's series stay after its last file is gone",
    doc_value="SECONDS",
    doc="with a `--file` pattern: once every file of a label set (the values its captures "
    "took) has been gone this long, its series leave /metrics and the state file, so a node "
    "does not accumulate dead pods; seconds, or a duration as Prometheus writes one (`5m`).",
)
LISTEN: Final = Setting(
    dest="listen",
    flag="--web.listen-address",
    aliases=("--listen",),
    # exporter-toolkit serves each of several --web.listen-address; this exporter serves one,
    # so a second is refused rather than silently replacing the first.
    once=True,
    env=("LOG_EXPORTER_LISTEN",),
    default="127.0.0.1:9464",
    metavar="[HOST]:PORT",
    help="[host]:port to serve on; ':PORT' is every interface",
    doc_value="[HOST]:PORT",
    doc="where to serve. Loopback only by default; `:9464` is every interface (IPv6 and IPv4, "
    "as node_exporter's `:9100`), `0.0.0.0:9464` every IPv4 one: to be scraped from another "
    "host, preferably with a web config. IPv6 addresses in brackets: `[::1]:9464`. One address: "
    "given twice it is refused (node_exporter would listen on both). Deprecated spelling: "
    "`--listen`.",
)
TELEMETRY_PATH: Final = Setting(
    dest="telemetry_path",
    flag="--web.telemetry-path",
    env=("LOG_EXPORTER_TELEMETRY_PATH",),
    default="/metrics",
    metavar="PATH",
    problem=lambda path: _telemetry_path_problem(path),
    help="the path that serves the metrics",
    doc_value="PATH",
    doc="the path that serves the metrics; any other path (`/metrics` too, when changed) is a "
    "404, as node_exporter does. It must start with `/` and not be `/`, `/healthz` or `/readyz`.",
)
SPEC: Final = Setting(
    dest="spec",
    flag="--spec",
    env=("LOG_EXPORTER_SPEC",),
    default=None,
    metavar="PATH",
    help="spec TOML",
    doc_value="PATH",
    doc_default="the built-in SustainBot spec",
    doc="the TOML mapping from events to metrics (`docs/spec.md`). Checked at start: an invalid "
    "spec stops the exporter with exit code 2 and a message naming the file, table and field.",
)
WEB_CONFIG: Final = Setting(
    dest="web_config",
    flag="--web.config.file",
    aliases=("--web-config",),
    env=("LOG_EXPORTER_WEB_CONFIG",),
    default=None,
    metavar="PATH",
    help="exporter-toolkit web config: TLS, client certificates, basic auth, headers",
    doc_value="PATH",
    doc_default="none (plain HTTP, no auth)",
    doc="TLS, client certificates, basic auth and response headers, in the Prometheus "
    "exporter-toolkit format (below). An invalid file stops the exporter with exit code 2, "
    "naming the file and field; once running, the file and its certificates are re-read when "
    "they change. Deprecated spelling: `--web-config`.",
)
START_AT: Final = Setting(
    dest="start_at",
    flag="--start-at",
    env=("LOG_EXPORTER_START_AT",),
    default="beginning",
    choices=("beginning", "end"),
    help="where to start in a file that already exists",
    doc_value="beginning\\|end",
    doc="where to start in a file that already exists when there is no state to resume from.",
)
ROTATED_GLOB: Final = Setting(
    dest="rotated_glob",
    flag="--rotated-glob",
    env=("LOG_EXPORTER_ROTATED_GLOB",),
    default=None,
    metavar="GLOB",
    help="other names of the log's rotated generations (globs, comma-separated)",
    doc_value="GLOB[,GLOB...]",
    doc_default="none",
    doc="names a rotator gives the log's rotated generations besides the common ones "
    "(`NAME.N`, `NAME-DATE`, lumberjack's `STEM-TIMESTAMP.EXT`, each also `.gz`): shell globs "
    "of file names in the log's directory, comma-separated (`app.*.log`); a match is also "
    "found gzip-compressed, with `.gz` added (`docs/tailing.md`).",
    problem=lambda value: None if value is None or globs(value) else "names no glob",
)
STATE: Final = Setting(
    dest="state",
    flag="--state",
    env=("LOG_EXPORTER_STATE",),
    default=None,
    metavar="PATH",
    help="state file",
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
    kind=seconds,
    metavar="SECONDS",
    problem=lambda seconds: None if seconds > 0 else "must be > 0",
    help="seconds between state saves",
    doc_value="SECONDS",
    doc="how often the state file is saved (also on SIGTERM/SIGINT); a finite number of seconds "
    "> 0, or a duration as Prometheus writes one (`5s`, `1m`).",
)
# Defaults that fit the shipped pod's grace period with gunicorn's graceful timeout before them
# (docs/deployment.md has the arithmetic).
DRAIN_QUIET: Final = Setting(
    dest="drain_quiet",
    flag="--drain-quiet",
    env=("LOG_EXPORTER_DRAIN_QUIET",),
    default="2",
    kind=seconds,
    metavar="SECONDS",
    problem=lambda seconds: None if seconds >= 0 else "must be >= 0",
    help="on SIGTERM/SIGINT, stop once the log has not grown for this long "
    "(env LOG_EXPORTER_DRAIN_QUIET)",
    doc_value="SECONDS",
    doc="the drain on SIGTERM/SIGINT (`docs/exporter.md`) ends once every open generation of the "
    "log has been read (and shipped) to its end and nothing was written to it for this long "
    "(seconds, or a duration such as `2s`).",
)
DRAIN_TIMEOUT: Final = Setting(
    dest="drain_timeout",
    flag="--drain-timeout",
    env=("LOG_EXPORTER_DRAIN_TIMEOUT",),
    default="20",
    kind=seconds,
    metavar="SECONDS",
    problem=lambda seconds: None if seconds >= 0 else "must be >= 0",
    help="on SIGTERM/SIGINT, stop draining after this long at most "
    "(env LOG_EXPORTER_DRAIN_TIMEOUT)",
    doc_value="SECONDS",
    doc="the longest drain: past it the exporter saves its state and exits with code 3 when "
    "lines were left unread or unshipped (the log says how many). `0` stops at once, as a "
    "second signal does. Seconds, or a duration such as `20s`.",
)
MAX_LINE: Final = Setting(
    dest="max_line_bytes",
    flag="--max-line-bytes",
    env=("LOG_EXPORTER_MAX_LINE_BYTES",),
    default=str(MAX_LINE_BYTES),
    kind=int,
    metavar="N",
    problem=lambda n: None if n >= 1 else "must be >= 1",
    help="longer lines are skipped and counted as oversized",
    doc_value="N",
    doc_default=f"`{MAX_LINE_BYTES}` (1 MiB)",
    doc="longer lines are skipped with bounded memory and counted as `oversized`.",
)
LOG_LEVEL: Final = Setting(
    dest="log_level",
    flag="--log.level",
    aliases=("--log-level",),
    env=("LOG_EXPORTER_LOG_LEVEL",),
    default="info",
    metavar="LEVEL",
    # Any case is accepted, so the levels are not argparse choices.
    problem=lambda level: None if level.lower() in LEVELS else f"unknown level {level.lower()!r}",
    help="debug, info, warn or error",
    doc_value="LEVEL",
    doc="`debug`, `info`, `warn` or `error` (`warning` too), in any case. Deprecated spelling: "
    "`--log-level`.",
)
LOG_FORMAT: Final = Setting(
    dest="log_format",
    flag="--log.format",
    env=("LOG_EXPORTER_LOG_FORMAT",),
    default="json",
    choices=FORMATS,
    metavar="FORMAT",
    help="json or logfmt",
    doc_value="json\\|logfmt",
    doc="the format of the exporter's own log lines on stderr: one JSON object per line, or "
    "logfmt `key=value` pairs as Prometheus' Go exporters write them (below).",
)


def _files_problem(paths: Sequence[str]) -> str | None:
    if "-" in paths:
        return (
            "'-' is standard output (JSON_LOG_PATH=- makes SustainBot log to stdout), not a file "
            "to tail: read the container logs the kubelet writes (--input-format cri, "
            "docs/node.md), or set LOG_EXPORTER_FILE"
        )
    return None


def _telemetry_path_problem(path: str) -> str | None:
    if not path.startswith("/") or "?" in path or "#" in path:
        return f"{path!r} is not an absolute URL path like /metrics"
    if path in RESERVED_PATHS:
        return f"{path!r} is already served ({', '.join(RESERVED_PATHS)})"
    return None


# Paths serve answers itself, which the telemetry path must not hide.
RESERVED_PATHS: Final = ("/", "/healthz", "/readyz")

SERVE: Final = (
    FILE,
    INPUT_FORMAT,
    LABEL,
    FILE_GRACE_PERIOD,
    LISTEN,
    TELEMETRY_PATH,
    SPEC,
    WEB_CONFIG,
    START_AT,
    ROTATED_GLOB,
    STATE,
    STATE_INTERVAL,
    DRAIN_QUIET,
    DRAIN_TIMEOUT,
    MAX_LINE,
    LOG_LEVEL,
    LOG_FORMAT,
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
        help=doc.replace("`", ""),
        doc=doc,
        doc_default=doc_default,
    )


CLOUDWATCH_ENABLED: Final = Setting(
    dest="cloudwatch_enabled",
    flag="--cloudwatch",
    env=("CLOUDWATCH_ENABLED",),
    default="false",
    switch=True,
    help="ship lines and metrics to CloudWatch",
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
