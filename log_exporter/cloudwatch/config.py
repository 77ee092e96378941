"""CloudWatch shipping settings checked into a :class:`CloudWatchConfig`, the value CloudWatch gets.

The settings (flags, variables, defaults) are rows of log_exporter.settings, read by its rule: a
flag wins over its variable. Every error names the variable and the flag, so a bad deployment
fails at start, not at the first shipment.
"""

from __future__ import annotations

import argparse
import math
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from log_exporter import settings
from log_exporter.settings import CLOUDWATCH

INSTALL_HINT: Final = (
    "install the cloudwatch extra: pip install 'sustainbot-observability[cloudwatch]'"
    " (in a checkout: pip install -e '.[cloudwatch]')"
)

METRICS_MODES: Final = ("putmetricdata", "emf")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})

# The documented character sets of CloudWatch Logs names; checking them here turns a
# deployment typo into a start-up error instead of an endless retry loop.
_GROUP_RE = re.compile(r"^[\.\-_/#A-Za-z0-9]{1,512}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


class ConfigError(ValueError):
    """A CloudWatch setting is invalid; the message names the variable and flag."""


@dataclass(frozen=True, slots=True)
class CloudWatchConfig:
    """Everything the shipper needs to know, fixed for the life of the process."""

    enabled: bool = False
    namespace: str = "AIWF/SustainBot"
    region: str = "eu-west-1"
    log_group: str = "/aiwf/sustainbot"
    log_stream: str = ""
    flush_seconds: float = 60.0
    metrics_mode: str = "putmetricdata"

    @property
    def emf_log_stream(self) -> str:
        """Stream for Embedded Metric Format documents, kept apart from the raw event lines."""
        return f"{self.log_stream}-emf"


# CloudWatchConfig's field -> its row in the settings table.
_SETTINGS: Final = {setting.dest.removeprefix("cloudwatch_"): setting for setting in CLOUDWATCH}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--cloudwatch*`` flags; defaults stay ``None`` so the environment can fill in."""
    group = parser.add_argument_group("CloudWatch (needs the cloudwatch extra)")
    settings.add_arguments(group, CLOUDWATCH)


def _name(field: str) -> str:
    setting = _SETTINGS[field]
    return f"{' / '.join(setting.env)} (flag {setting.flag})"


def load(environ: Mapping[str, str], args: argparse.Namespace | None = None) -> CloudWatchConfig:
    """Build the config from ``environ`` overlaid by flags in ``args``; raise ConfigError."""
    # The text of every setting, its default when unset or blank.
    raw: dict[str, str] = {}
    for field, setting in _SETTINGS.items():
        flag = None if args is None else getattr(args, setting.dest, None)
        value = settings.lookup(setting, None if flag is None else str(flag), environ)
        # Surrounding blanks are a quoting slip in a deployment file, not part of a name.
        raw[field] = (value or "").strip() or (setting.default or "")

    enabled_text = raw["enabled"].lower()
    if enabled_text in _TRUE:
        enabled = True
    elif enabled_text in _FALSE:
        enabled = False
    else:
        raise ConfigError(f"{_name('enabled')}: expected true or false, got {raw['enabled']!r}")

    namespace = raw["namespace"]
    if len(namespace) > 255 or ":" in namespace or not namespace.isascii():
        raise ConfigError(
            f"{_name('namespace')}: at most 255 ASCII characters without ':', got {namespace!r}"
        )
    if namespace.startswith("AWS/"):
        raise ConfigError(f"{_name('namespace')}: the AWS/ prefix is reserved, got {namespace!r}")

    region = raw["region"]
    if not _REGION_RE.match(region):
        raise ConfigError(f"{_name('region')}: not a region name like eu-west-1, got {region!r}")

    log_group = raw["log_group"]
    if not _GROUP_RE.match(log_group):
        raise ConfigError(
            f"{_name('log_group')}: 1-512 characters from [A-Za-z0-9._/#-], got {log_group!r}"
        )

    log_stream = raw["log_stream"] or socket.gethostname() or "log-exporter"
    # "-emf" is appended for the EMF stream, so leave room for it within the 512 limit.
    if len(log_stream) > 508 or ":" in log_stream or "*" in log_stream:
        raise ConfigError(
            f"{_name('log_stream')}: at most 508 characters without ':' or '*', got {log_stream!r}"
        )

    flush_text = raw["flush_seconds"]
    try:
        flush_seconds = float(flush_text)
    except ValueError:
        flush_seconds = math.nan
    if not (math.isfinite(flush_seconds) and flush_seconds > 0):
        raise ConfigError(
            f"{_name('flush_seconds')}: expected a positive number of seconds, got {flush_text!r}"
        )

    metrics_mode = raw["metrics_mode"].lower()
    if metrics_mode not in METRICS_MODES:
        raise ConfigError(
            f"{_name('metrics_mode')}: expected one of {', '.join(METRICS_MODES)}, "
            f"got {raw['metrics_mode']!r}"
        )

    return CloudWatchConfig(
        enabled=enabled,
        namespace=namespace,
        region=region,
        log_group=log_group,
        log_stream=log_stream,
        flush_seconds=flush_seconds,
        metrics_mode=metrics_mode,
    )
