"""The exporter's own logs on stderr: one JSON object per line, or logfmt ``key=value`` lines.

A sidecar's logs are read by machines first, so every record is a single line with the fields
``ts``, ``level``, ``logger``, ``msg`` plus whatever was passed as ``extra=``. JSON is the default;
``--log.format=logfmt`` writes the same fields the way go-kit's and slog's logfmt handlers do, as
Prometheus' own exporters log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

# What ``configure`` accepts, least severe first. ``warn`` is the Prometheus tools' spelling,
# ``warning`` Python's; both mean the same level.
LEVELS: Final = ("debug", "info", "warn", "warning", "error")
FORMATS: Final = ("json", "logfmt")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted.
_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
# A logfmt value needs quotes when it is empty or holds a blank, a quote, '=' or a control byte.
_NEEDS_QUOTES = re.compile(r'[\s"=\\]|[\x00-\x1f\x7f]')


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """The record's fields in the order both formats write them."""
    entry: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            entry[key] = value
    if record.exc_info:
        entry["exc"] = formatter.formatException(record.exc_info)
    return entry


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; never raises on odd ``extra`` values."""

    def format(self, record: logging.LogRecord) -> str:
        # default=str: an unserialisable extra (a Path, an exception) must not lose the record.
        return json.dumps(_fields(record, self), default=str, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """Formats a record as one logfmt line (``ts=... level=info msg="..." key=value``)."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{key}={_logfmt_value(value)}" for key, value in _fields(record, self).items()
        )


def _logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool | int | float | list | tuple | dict):
        text = json.dumps(value, default=str, ensure_ascii=False)  # true, 3, [1, 2], ...
    else:
        text = str(value)  # a Path, an exception: its text, as the JSON format writes it
    if text and not _NEEDS_QUOTES.search(text):
        return text
    # json.dumps quotes and escapes a string as logfmt readers expect (\" \\ \n).
    return json.dumps(text, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure`` installed, so a second call replaces only it."""


def configure(
    level: str = "info", stream: IO[str] | None = None, fmt: str = "json"
) -> logging.Logger:
    """Write every log record as one ``fmt`` line (json or logfmt) to ``stream`` (stderr);
    return the package logger.

    The exporter's own loggers log at ``level``. Libraries (watchdog, botocore) and Python
    warnings go through the same handler at WARNING and above, so every line on stderr has the
    one format. Called once by the CLI; library code only calls ``logging.getLogger(__name__)``.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LogfmtFormatter() if fmt == "logfmt" else JsonFormatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    package = logging.getLogger("log_exporter")
    package.setLevel("WARNING" if level.lower() == "warn" else level.upper())
    return package
