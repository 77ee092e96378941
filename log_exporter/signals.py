"""Process signals relayed to a thread of their own: the handler only writes the signal's number to
a pipe, and the relay thread makes the request the signal stands for.

A Python signal handler runs in the main thread between two bytecodes of whatever that thread was
doing, which may be holding the very lock the request needs: waking serve's tail loop sets an
``Event``, whose lock the tail loop holds for an instant in each of its waits. A handler taking
that lock there would wait for its own thread, for ever, and the process would ignore every later
signal. Writing to a pipe takes no lock; the relay thread takes the locks as any other thread does,
waiting at most until the main thread lets go.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType

__all__ = ["relay"]

log = logging.getLogger(__name__)

Action = Callable[[], None]


def relay(actions: Mapping[int, Action]) -> None:
    """From now on each signal of ``actions`` makes its action run in the relay thread, one at a
    time, in the order the signals came. Call from the main thread, as ``signal.signal`` asks."""
    read_fd, write_fd = os.pipe()
    # The handler must never block: a full pipe already holds thousands of requests not yet made,
    # so dropping one more loses nothing.
    os.set_blocking(write_fd, False)
    thread = threading.Thread(
        target=_run, args=(read_fd, dict(actions)), name="signal-relay", daemon=True
    )
    thread.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(write_fd, bytes([signum]))

    for signum in actions:
        signal.signal(signum, on_signal)


def _run(read_fd: int, actions: Mapping[int, Action]) -> None:
    while True:
        received = os.read(read_fd, 64)
        if not received:
            return
        for signum in received:
            try:
                actions[signum]()
            except Exception:
                # The next signal must still be relayed.
                log.exception("handling %s failed", signal.Signals(signum).name)
