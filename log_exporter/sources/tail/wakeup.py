"""What ends the tailer loop's wait early: a file event in the log's directory, or ``wake()``.

``Tailer.run`` waits between polls on a ``Wakeup``. ``FileEvents`` is the real one, a
``threading.Event`` set by watchdog (inotify and the like) and by ``Tailer.wake()``;
``log_exporter.testing.ManualWakeup`` replaces it where a test steps the loop without waiting.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

__all__ = ["FileEvents", "Wakeup"]

# The name the tailer logged under as one module: log queries select on it.
log = logging.getLogger("log_exporter.tail")

# watchdog event types that can mean new bytes or a new generation; our own opens and
# no-write closes must not wake the loop.
_WAKING_EVENTS = frozenset({"modified", "created", "moved", "deleted", "closed"})


class Wakeup(Protocol):
    """Set by file events and ``wake()``; waited on between polls."""

    def watching(self, directory: str, poll_interval: float) -> AbstractContextManager[None]:
        """File events in ``directory`` set the wakeup while the context is open."""
        ...

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def wait(self, timeout: float) -> bool:
        """Block until set or ``timeout`` seconds have passed; True when set."""
        ...


class _Waker:
    """watchdog handler (duck-typed: the observer only calls ``dispatch``)."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def dispatch(self, event: object) -> None:
        if getattr(event, "event_type", "modified") in _WAKING_EVENTS:
            self._event.set()


class FileEvents:
    """A ``Wakeup`` set by watchdog events on the directory and by ``set()``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    @contextlib.contextmanager
    def watching(self, directory: str, poll_interval: float) -> Iterator[None]:
        observer = self._start_observer(directory, poll_interval)
        try:
            yield
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)

    def _start_observer(self, directory: str, poll_interval: float) -> Any:
        try:
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a declared dependency
            return None
        observer = Observer()
        try:
            # The observer only ever calls dispatch(); a subclass would tie this module to watchdog.
            handler = cast(Any, _Waker(self._event))
            observer.schedule(handler, directory, recursive=False)
            observer.start()
        except OSError as exc:
            if observer.is_alive():
                observer.stop()
            # The directory may not exist yet; the periodic stat still finds the file.
            log.info("no file events for %s (%s); polling every %ss", directory, exc, poll_interval)
            return None
        return observer
