"""Waiting on a condition: poll it until it holds or a deadline passes, then fail saying what was
awaited and the last value seen, instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Generous: the machine is small and shared; a deadline only bounds how long a failure takes.
DEADLINE = 60.0
# A failure message quoting a whole log or every CloudWatch message would bury the reason.
_SHOWN = 2000


def wait_for(
    probe: Callable[[], T],
    what: str,
    *,
    until: Callable[[T], object] = bool,
    timeout: float = DEADLINE,
    interval: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until ``until`` holds for its value (by default: the value is truthy) and
    return that value; after ``timeout`` seconds fail naming ``what``, the last value and, when
    given, ``explain()`` (a log, a state file)."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= end:
            last = repr(value)
            if len(last) > _SHOWN:
                last = last[:_SHOWN] + "..."
            message = f"timed out after {timeout:.0f}s waiting for {what}: last value {last}"
            if explain is not None:
                message += f"\n{explain()}"
            raise AssertionError(message)
        time.sleep(interval)
