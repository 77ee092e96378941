"""Limits and exit codes shared by every stage and command, named once, and the bounded read of
a named file that every reader of a configured path uses.

Part of the interface: the line limit is a documented default, the overflow label value appears
on /metrics and in CloudWatch, and the exit codes are what scripts and Kubernetes see.
"""

from __future__ import annotations

import errno
import os
import stat
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
    "open_regular",
    "read_regular",
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


def open_regular(path: str | os.PathLike[str]) -> int:
    """A descriptor of ``path``, opened only if it is a regular file; OSError otherwise.

    Opened without blocking, then checked: a FIFO given as a file would otherwise hang the
    opening thread until a writer comes, and a device such as /dev/zero never ends. The
    descriptor is blocking again once checked.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", os.fspath(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes``; OSError otherwise."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", os.fspath(path))
    return data
