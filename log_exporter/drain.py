"""The shutdown drain: asked once, the readers read on until the log is quiet; asked twice, or past
the drain timeout, they stop at once.

One ``Drain`` is shared by serve's tail loop and the CloudWatch shipper; each of them keeps a
``DrainReader`` saying when it last read anything. Requests come from the thread the entry point
relays signals to (``log_exporter.signals``) while the readers look at them; nothing here takes a
lock, so a request is never kept waiting by a reader.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["Drain", "DrainReader", "Outcome"]

# How a drain ended: every reader quiet at the end of the log, the timeout passed first, or a
# second request cut it short.
Outcome = Literal["quiet", "timeout", "forced"]


class Drain:
    """The shutdown's timing: ``quiet`` seconds without a new byte end it, ``timeout`` seconds
    after the first ``request()`` it ends anyway; a second ``request()`` ends it now."""

    def __init__(
        self, *, quiet: float, timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if quiet < 0 or timeout < 0:
            raise ValueError("quiet and timeout must be >= 0")
        self.quiet = quiet
        self.timeout = timeout
        self.clock = clock
        self._requested_at: float | None = None
        self._requests = 0

    def request(self) -> None:
        """Begin draining (first call) or stop now (any later call); safe in a signal handler."""
        if self._requested_at is None:
            self._requested_at = self.clock()
        self._requests += 1

    @property
    def requested(self) -> bool:
        return self._requested_at is not None

    @property
    def requested_at(self) -> float | None:
        return self._requested_at

    @property
    def forced(self) -> bool:
        """Asked more than once: stop without waiting for the quiet period."""
        return self._requests > 1

    def remaining(self) -> float:
        """Seconds left before the timeout (infinite before any request, 0 once forced)."""
        if self._requested_at is None:
            return math.inf
        if self.forced:
            return 0.0
        return max(0.0, self._requested_at + self.timeout - self.clock())

    def cut_short(self) -> Outcome | None:
        """``"forced"`` or ``"timeout"`` when reading must stop now, else None."""
        if self._requested_at is None:
            return None
        if self.forced:
            return "forced"
        if self.clock() >= self._requested_at + self.timeout:
            return "timeout"
        return None

    def reader(self) -> DrainReader:
        return DrainReader(self)


class DrainReader:
    """One reader of the log during a drain: done once it stands at the end of every open file
    and nothing new arrived for the drain's quiet period (counted from the request at the
    earliest, so a log already quiet still gets one quiet period to show a last write)."""

    def __init__(self, drain: Drain) -> None:
        self._drain = drain
        self._last_read = -math.inf

    def read(self, nbytes: int) -> None:
        """Note a poll that consumed ``nbytes`` (0 for an idle one)."""
        if nbytes:
            self._last_read = self._drain.clock()

    def outcome(self, at_end: bool) -> Outcome | None:
        """How this reader's drain ends now, or None while it must read on."""
        drain = self._drain
        requested_at = drain.requested_at
        if requested_at is None:
            return None
        cut = drain.cut_short()
        if cut is not None:
            return cut
        since = max(self._last_read, requested_at)
        if at_end and drain.clock() - since >= drain.quiet:
            return "quiet"
        return None
