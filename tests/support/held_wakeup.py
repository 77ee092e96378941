"""``log-exporter`` with one race made certain, run as ``python -m tests.support.held_wakeup ARGS``.

Once serve has announced its drain, its main thread takes the lock of the tail loop's wakeup (the
lock a stop request takes to wake the loop, and the loop itself holds for an instant in each of
its waits) and keeps it until a second stop request has been made: a second signal then always
arrives at the instant that is otherwise rare. A request made in the main thread, by a signal
handler, waits for that lock for ever; one made in any other thread gets it once let go.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from log_exporter import cli
from log_exporter.serve import Service

# Bounded, so a stop request that never comes cannot keep the process for ever.
HOLD_SECONDS = 120.0

_after_tick = Service._after_tick
_held: set[int] = set()


def _hold_until_forced(service: Service, at_end: bool) -> None:
    _after_tick(service, at_end)
    if not service._drain_announced or service.drain.forced or id(service) in _held:
        return
    _held.add(id(service))
    wakeup: Any = service.tailer._wakeup
    lock: threading.Condition = wakeup._event._cond
    end = time.monotonic() + HOLD_SECONDS
    with lock:
        while not service.drain.forced and time.monotonic() < end:
            time.sleep(0.01)


if __name__ == "__main__":
    Service._after_tick = _hold_until_forced  # type: ignore[method-assign, assignment]
    sys.exit(cli.main())
