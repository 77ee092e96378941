"""The state file: tail positions and metric state saved together, atomically, and read back.

A restart restores the metric values and resumes reading at the saved position, so it neither
resets nor double-counts. Each component owns one section (``metrics``, ``cloudwatch``...);
``StateKeeper`` gathers them and writes them all in one file, and ``StateSection`` is one
component's view of its own section. Format in docs/tailing.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from log_exporter.limits import read_regular

__all__ = [
    "FORMAT",
    "VERSION",
    "StateFile",
    "StateKeeper",
    "StateSection",
]

# The name operators see in the "logger" field and filter on, kept when the module moved.
log = logging.getLogger("log_exporter.state")

FORMAT = "log-exporter-state"
VERSION = 1
# A state file larger than this is not one this exporter wrote (the store's series caps bound it
# far below); it is refused before it is read to its end.
MAX_STATE_BYTES = 1 << 30
# The deepest a state file nests: a section of a section of a series holds a handful of levels.
MAX_STATE_NESTING = 16
# What orjson writes back: a number outside the 64-bit range loads as a float, or fails every
# save after it, so it is refused at load like any other damage.
_INT_MIN, _UINT_MAX = -(1 << 63), (1 << 64) - 1
_BIG = float(1 << 63)


class StateFile:
    """One state file on disk.

    ``target`` is the tailed file; a state file saved for another file is treated as foreign
    and ignored, so pointing ``--state`` at the wrong file cannot resume at a stranger's offset.
    """

    def __init__(self, path: str | os.PathLike[str], *, target: str | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.target = os.path.abspath(target) if target is not None else None
        # Why the last load() returned None ("missing" on a first start is not a failure).
        self.load_error: str | None = None
        self.load_failures = 0

    def load(self) -> dict[str, Any] | None:
        """The saved sections, or None (reason in ``load_error``); never raises for content."""
        self.load_error = None
        try:
            raw = read_regular(self.path, MAX_STATE_BYTES)
        except FileNotFoundError:
            self.load_error = "missing"
            return None
        except OSError as exc:
            return self._reject(f"unreadable: {exc}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._reject(f"not JSON: {exc}")
        beyond = _out_of_range(doc, raw)
        if beyond is not None:
            return self._reject(beyond)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return self._reject(f'not a log-exporter state file (no "format": {FORMAT!r})')
        if doc.get("version") != VERSION:
            return self._reject(f"unsupported version {doc.get('version')!r} (expected {VERSION})")
        if self.target is not None and doc.get("target") != self.target:
            return self._reject(f"belongs to {doc.get('target')!r}, not {self.target!r}")
        sections = doc.get("sections")
        if not isinstance(sections, dict):
            return self._reject("field 'sections' is not an object")
        return sections

    def _reject(self, reason: str) -> dict[str, Any] | None:
        self.load_error = reason
        self.load_failures += 1
        log.warning("ignoring state file %s, starting fresh: %s", self.path, reason)
        return None

    def save(self, sections: Mapping[str, Any]) -> None:
        """Replace the file atomically: temp file in the same directory, fsync, rename, fsync dir.

        Raises OSError (or TypeError for values JSON cannot hold); the old file stays intact.
        """
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "saved_at": time.time(),
            "sections": dict(sections),
        }
        data = orjson.dumps(doc)
        directory = os.path.dirname(self.path)
        tmp = f"{self.path}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # The rename is durable only once the directory entry is.
        dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _out_of_range(doc: Any, raw: bytes) -> str | None:
    """Why ``doc`` (loaded from ``raw``) cannot be saved back as it is, or None.

    orjson loads an integer beyond 64 bits as a float, which the float alone does not tell from
    a large gauge value; only when such a float is there is the file parsed again, by the
    standard library, which gives every integer as written.
    """
    stack: list[tuple[Any, int]] = [(doc, 1)]
    suspect = False
    while stack:
        value, depth = stack.pop()
        if depth > MAX_STATE_NESTING:
            return f"nested deeper than {MAX_STATE_NESTING} levels"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif type(value) is float and abs(value) >= _BIG:
            suspect = True
    if not suspect:
        return None
    beyond: list[int] = []

    def parse_int(text: str) -> int:
        number = int(text)
        if not _INT_MIN <= number <= _UINT_MAX:
            beyond.append(number)
        return number

    json.loads(raw, parse_int=parse_int)
    return f"number {beyond[0]} beyond 64 bits" if beyond else None


class StateKeeper:
    """Holds every component's section and writes them all together.

    A section is either a value (``set``) or a callable evaluated at save time (``provide``).
    Thread-safe. ``maybe_save()`` is cheap enough to call after every batch: it writes only when
    ``interval`` seconds have passed. ``saves_total`` holds the counts for
    ``log_exporter_state_saves_total{result}``.
    """

    def __init__(
        self,
        state_file: StateFile,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_file = state_file
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._sections: dict[str, Any] = {}
        self._providers: dict[str, Callable[[], Any]] = {}
        self._last_save = clock()
        self.saves_total: dict[str, int] = {"success": 0, "error": 0}

    def load(self) -> dict[str, Any]:
        """Read the file; its sections are kept so a save before a component restarts its own
        section does not drop it. Empty when there is nothing usable."""
        sections = self.state_file.load() or {}
        with self._lock:
            for name, value in sections.items():
                self._sections.setdefault(name, value)
        return dict(sections)

    def set(self, section: str, value: Any) -> None:
        """Replace one section's value (JSON-serialisable)."""
        with self._lock:
            self._providers.pop(section, None)
            self._sections[section] = value

    def provide(self, section: str, provider: Callable[[], Any]) -> None:
        """Compute one section at each save, in the saving thread."""
        with self._lock:
            self._providers[section] = provider

    def save(self) -> bool:
        """Write every section now; False (logged, counted) when it could not be written."""
        with self._lock:
            self._last_save = self._clock()
            try:
                sections = dict(self._sections)
                for name, provider in self._providers.items():
                    sections[name] = provider()
                self.state_file.save(sections)
            except (OSError, TypeError, ValueError) as exc:
                self.saves_total["error"] += 1
                log.warning("could not save state to %s: %s", self.state_file.path, exc)
                return False
            self.saves_total["success"] += 1
            return True

    def maybe_save(self) -> bool:
        """Save if ``interval`` seconds have passed since the last save; True when it saved."""
        if self._clock() - self._last_save < self.interval:
            return False
        return self.save()

    def run(self, stop: threading.Event) -> None:
        """Save every ``interval`` seconds until ``stop`` is set, then once more."""
        while not stop.wait(self.interval):
            self.save()
        self.save()


class StateSection:
    """One component's own section of serve's state file: what it held at start, and a save that
    writes the file at once, since a cursor saved later than the batch it follows went out would
    repeat more than one batch after a crash."""

    def __init__(self, keeper: StateKeeper, name: str, sections: Mapping[str, Any]) -> None:
        self._keeper = keeper
        self._name = name
        self._initial = sections.get(name)

    def load(self) -> Mapping[str, Any] | None:
        return self._initial if isinstance(self._initial, Mapping) else None

    def save(self, data: Mapping[str, Any]) -> None:
        self._keeper.set(self._name, dict(data))
        self._keeper.save()
