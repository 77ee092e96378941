"""The exporter's own logs: one JSON object per line on stderr.

A sidecar's logs are read by machines first, so every record is a single JSON line with the
fields ``ts``, ``level``, ``logger``, ``msg`` plus whatever was passed as ``extra=``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

# What ``configure`` accepts, least severe first.
LEVELS: Final = ("debug", "info", "warning", "error")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted.
_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; never raises on odd ``extra`` values."""

    def format(self, record: logging.LogRecord) -> str:
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
            entry["exc"] = self.formatException(record.exc_info)
        # default=str: an unserialisable extra (a Path, an exception) must not lose the record.
        return json.dumps(entry, default=str, ensure_ascii=False)


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure`` installed, so a second call replaces only it."""


def configure(level: str = "info", stream: IO[str] | None = None) -> logging.Logger:
    """Write every log record as a JSON line to ``stream`` (stderr); return the package logger.

    The exporter's own loggers log at ``level``. Libraries (watchdog, botocore) and Python
    warnings go through the same handler at WARNING and above, so every line on stderr is JSON.
    Called once by the CLI; library code only calls ``logging.getLogger(__name__)``.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(old)
    handler = _JsonHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    package = logging.getLogger("log_exporter")
    package.setLevel(level.upper())
    return package
