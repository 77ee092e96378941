"""The step clock of ``replay --format openmetrics``: the sample times, multiples of ``--step``.

``StepClock`` is the one clock: the replay's own (``cross`` takes the samples due before an
event, ``finish`` the last ones) and a worker's (``boundary_at``: where its stretch may be cut,
since a sample may fall there). The arithmetic is ``k * step`` with whole ``k`` everywhere, so
the parent and its workers agree on every boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["StepClock"]


class StepClock:
    """Samples at every multiple T of ``step`` an event passes (``emit(T)``), then at the end.

    ``cross(t)`` is a ``Steps.cross``: called before the first event stamped after the current
    boundary, it emits every sample due before ``t`` and returns the next boundary.
    """

    def __init__(self, step: float, emit: Callable[[float], None] | None = None) -> None:
        self.step = step
        self._emit = emit
        self._k = 0  # the next boundary is k * step
        self.first_time: float | None = None
        self.samples = 0

    def cross(self, t: float) -> float:
        """Every boundary before the event stamped ``t`` gets its sample; the next one is due."""
        step = self.step
        if self.first_time is None:
            self.first_time = t
            self._k = math.ceil(t / step)
        while t > self._k * step:
            self._sample(self._k * step)
            self._k += 1
        return self._k * step

    def finish(self, now: float | None) -> None:
        """The samples due up to ``now``, the last event's time, then one at ``now`` itself."""
        if now is None:
            return
        step = self.step
        while self._k * step <= now:
            self._sample(self._k * step)
            self._k += 1
        if (self._k - 1) * step != now:
            self._sample(now)

    def boundary_at(self, t: float) -> float:
        """The least multiple of ``step`` at or after ``t``, as ``k * step`` computes it."""
        step = self.step
        k = math.ceil(t / step)
        while k * step < t:
            k += 1
        while (k - 1) * step >= t:
            k -= 1
        return k * step

    def _sample(self, t: float) -> None:
        assert self._emit is not None, "a clock that samples has its emit"
        self._emit(t)
        self.samples += 1
