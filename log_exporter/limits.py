"""Limits and exit codes shared by every stage and command, named once.

Part of the interface: the line limit is a documented default, the overflow label value appears
on /metrics and in CloudWatch, and the exit codes are what scripts and Kubernetes see.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_LABEL_VALUE_MAX_BYTES",
    "EXEMPLAR_LABELS_MAX_CHARS",
    "EXIT_CONFIG",
    "EXIT_DRAIN_INCOMPLETE",
    "EXIT_ERROR",
    "EXIT_OK",
    "MAX_LINE_BYTES",
    "OVERFLOW",
]

# A longer line is skipped and counted as oversized (serve, replay and the CloudWatch cursor).
MAX_LINE_BYTES: Final = 1 << 20

# The label (or dimension) value of the series that takes what a full series cap turns away.
OVERFLOW: Final = "__overflow__"

# An open label's (or dimension's) value longer than this, in UTF-8 bytes, becomes OVERFLOW: the
# spec's default ``label_value_max_bytes`` (docs/spec.md, "Label value length").
DEFAULT_LABEL_VALUE_MAX_BYTES: Final = 256

# OpenMetrics: an exemplar's label names and values together are at most this many characters;
# an exemplar that would be longer is skipped and counted, never sent (docs/spec.md, "Exemplars").
EXEMPLAR_LABELS_MAX_CHARS: Final = 128

# Exit codes. EXIT_ERROR: serve stopped by an unexpected error, or replay finished but a file was
# damaged (its output is still written). EXIT_CONFIG: a bad setting or input, nothing was done.
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_CONFIG: Final = 2
# serve was stopped by a second signal or its drain timeout with lines of the log not yet read
# into the metrics or not yet shipped to CloudWatch; its last log record says how many.
EXIT_DRAIN_INCOMPLETE: Final = 3
