"""Fakes to step a ``Tailer`` in tests: a clock that moves when told, waits that take no time.

``Tailer(path, clock=clock)`` with a ``ManualClock`` makes grace periods and the forgetting of
generations gone from the directory pass when a test says so, between two ``poll()`` calls;
``wakeup=ManualWakeup(clock)`` does the same for the waits of ``run()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["ManualClock", "ManualWakeup"]


class ManualClock:
    """Monotonic seconds that stand still until ``advance()``; call it to read the time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds


class ManualWakeup:
    """A ``Tailer`` wakeup without file events whose waits pass no real time.

    Each ``wait(timeout)`` returns at once when set; otherwise it advances ``clock`` by
    ``timeout``, calls ``meanwhile(timeout)`` (where a test writes, rotates or sets the loop's
    stop event, as if during the wait) and says whether that set it.
    """

    def __init__(
        self, clock: ManualClock, meanwhile: Callable[[float], None] | None = None
    ) -> None:
        self._clock = clock
        self._meanwhile = meanwhile
        self._set = False
        self.waits: list[float] = []  # the timeout of every wait, in order

    @contextlib.contextmanager
    def watching(self, directory: str, poll_interval: float) -> Iterator[None]:
        yield

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def wait(self, timeout: float) -> bool:
        if self._set:
            return True
        self.waits.append(timeout)
        self._clock.advance(timeout)
        if self._meanwhile is not None:
            self._meanwhile(timeout)
        return self._set
