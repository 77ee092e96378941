"""A one-line progress bar on a terminal: bytes done of the total, events per second, ETA.

It draws only when its stream is a terminal, and at most ``rate`` times per second, so a hot loop
may call ``update`` as often as it likes at the cost of one clock read.
"""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["ProgressBar"]

_WIDTH = 24


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _human_duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}:{s % 60:02d}"


class ProgressBar:
    """Draws ``[####----]  12.0 MiB / 40.0 MiB  150,000 events/s  ETA 0:03`` on ``stream``."""

    def __init__(self, stream: TextIO, total_bytes: int, *, enabled: bool, rate: float = 5.0):
        # A progress bar in a log file or a pipe is noise: draw only on a terminal.
        self.enabled = enabled and stream.isatty()
        self._stream = stream
        self._total = max(total_bytes, 1)
        self._interval = 1.0 / rate
        self._start = time.monotonic()
        self._next_draw = self._start
        self._drawn = False

    def update(self, done_bytes: int, events: int) -> None:
        """Note progress; redraws when the last drawing is older than the throttle interval."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next_draw:
            return
        self._next_draw = now + self._interval
        self._draw(now, done_bytes, events)

    def _draw(self, now: float, done: int, events: int) -> None:
        elapsed = max(now - self._start, 1e-9)
        frac = min(done / self._total, 1.0)
        filled = int(frac * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        rate = events / elapsed
        # ETA from the byte rate: bytes are what is known for the whole input in advance.
        byte_rate = done / elapsed
        eta = "--:--" if byte_rate <= 0 else _human_duration((self._total - done) / byte_rate)
        line = (
            f"[{bar}] {_human_bytes(done)} / {_human_bytes(self._total)}"
            f"  {rate:,.0f} events/s  ETA {eta}"
        )
        # \r plus clear-to-end-of-line: a shorter line must not leave the tail of a longer one.
        self._stream.write(f"\r{line}\x1b[K")
        self._stream.flush()
        self._drawn = True

    def finish(self, done_bytes: int, events: int) -> None:
        """Draw the final state and end the line, so later messages start on a fresh one."""
        if not self.enabled:
            return
        self._draw(time.monotonic(), done_bytes, events)
        self._stream.write("\n")
        self._stream.flush()
