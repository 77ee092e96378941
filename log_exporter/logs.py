"""The exporter's own logs: one JSON object per line on stderr.

A sidecar's logs are read by machines first, so every record is a single JSON line with the
fields ``ts``, ``level``, ``logger``, ``msg`` plus whatever was passed as ``extra=``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

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


def configure(level: str = "info", stream: IO[str] | None = None) -> logging.Logger:
    """Route the ``log_exporter`` loggers to ``stream`` (stderr) as JSON lines and return the root.

    Called once by the CLI; library code only calls ``logging.getLogger(__name__)``.
    """
    root = logging.getLogger("log_exporter")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The exporter's records must not be printed a second time by a root handler someone added.
    root.propagate = False
    return root
