"""The JSONL event writer: one ``os.write`` per line on an O_APPEND file, rotation-aware.

O_APPEND makes each write land at the end of the file atomically with respect to other
writers, so threads and gunicorn worker processes can share one log without tearing lines as
long as every line goes out in a single ``write()``. Like ``logging.WatchedFileHandler``, the
writer reopens the path when the file it holds was renamed or deleted (logrotate's default
``create`` mode), so rotation needs no signal. A line cut short by a full device is never
continued: the next line written, by any process, starts on a line of its own. For that each
write first reads the file's last byte, under an exclusive ``flock`` that every writer takes
for its check and write, so no writer mistakes another's write in progress for a torn line.

The path ``-`` (``STDOUT``) writes to the process's standard output instead, still one
``write()`` per line: in a container the runtime frames stdout into the node's CRI log
(docs/node.md). A pipe writes up to ``PIPE_BUF`` (4096) bytes atomically, so lines of workers
sharing the pipe never tear below that; there is no file to reopen or to check for a torn line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1
# The path that means the process's standard output.
STDOUT = "-"
# Read as well as write, to see whether the file ends mid-line; write-only where reading is denied.
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_WRITE_ONLY_FLAGS = (_OPEN_FLAGS & ~os.O_RDWR) | os.O_WRONLY


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339, UTC, millisecond precision, ``Z`` suffix, as the event contract requires."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class WriterStatus:
    writable: bool
    error: str | None  # errno name (e.g. "ENOSPC") or a short reason when not writable


class EventWriter:
    """Appends one JSON object per line; never raises on I/O, it reports failure instead."""

    def __init__(self, path: Path | str, file_mode: int = 0o644) -> None:
        self._path = os.fspath(path)
        # Standard output is the process's, inherited by every worker: never closed nor reopened.
        self._stdout = self._path == STDOUT
        self._file_mode = file_mode
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None
        self._ident: tuple[int, int] | None = None
        # Whether the file can be read back and locked (a regular file opened for reading, on a
        # file system with flock): what tells a file that ends mid-line.
        self._readable = False
        # This process cut a line short and could not end it (the device was still full).
        self._torn = False
        self._status = WriterStatus(writable=True, error=None)

    @property
    def path(self) -> str:
        return self._path

    @property
    def status(self) -> WriterStatus:
        """The result of the most recent write (or open) attempt."""
        return self._status

    def emit(
        self,
        event: str,
        *,
        trace_id: str,
        logger: str,
        message: str,
        level: str = "INFO",
        **fields: Any,
    ) -> bool:
        """Write one event line with the contract's common fields; return False if it failed."""
        record: dict[str, Any] = {
            "timestamp": utc_timestamp(),
            "level": level,
            "logger": logger,
            "message": message,
            "event": event,
            "trace_id": trace_id,
            "schema_version": SCHEMA_VERSION,
        }
        record.update(fields)
        return self.write_line(orjson.dumps(record) + b"\n")

    def write_line(self, line: bytes) -> bool:
        """Write one already-encoded line (ending in a newline) with a single ``write()``."""
        with self._lock:
            try:
                fd = self._current_fd()
                locked = self._lock_file(fd)
                try:
                    self._write_locked(fd, line)
                finally:
                    if locked:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as exc:
                self._close_locked()
                self._status = WriterStatus(writable=False, error=_describe(exc))
                return False
            self._status = WriterStatus(writable=True, error=None)
            return True

    def _write_locked(self, fd: int, line: bytes) -> None:
        # After a torn line (ours, or another worker's) the event starts on a new line: the
        # fragment is then one malformed line, not glued to this event as well.
        data = b"\n" + line if self._ends_mid_line(fd) else line
        written = os.write(fd, data)
        if written != len(data):
            # A short write (e.g. disk nearly full) leaves a partial line; end it at once if
            # the device lets us, or else at the next write (above).
            self._torn = True
            os.write(fd, b"\n")
            self._torn = False
            raise OSError(errno.ENOSPC, "short write")
        self._torn = False

    def _lock_file(self, fd: int) -> bool:
        """Take the writers' lock when the last byte will be checked; False when not taken."""
        if not self._readable:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            # No flock here (some network file systems): without it the check could see
            # another writer's line half written, so this file goes unchecked.
            self._readable = False
            return False
        return True

    def check(self) -> WriterStatus:
        """Open (or reopen) the file without writing, to report whether it can be written."""
        with self._lock:
            try:
                self._current_fd()
            except OSError as exc:
                self._close_locked()
                self._status = WriterStatus(writable=False, error=_describe(exc))
            return self._status

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _current_fd(self) -> int:
        if self._stdout:
            self._fd = 1
            return self._fd
        pid = os.getpid()
        if self._fd is not None and self._pid != pid:
            # Inherited across fork (gunicorn preloads the app): each process opens its own fd
            # so one worker's reopen never affects another; closing this copy is local.
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self._ident = None
        if self._fd is not None and not self._still_at_path():
            self._close_locked()
        if self._fd is None:
            self._open()
        assert self._fd is not None
        return self._fd

    def _still_at_path(self) -> bool:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._ident

    def _ends_mid_line(self, fd: int) -> bool:
        """True when the file's last byte is not a newline (call with the writers' lock held)."""
        if self._torn:
            return True
        if not self._readable:
            return False
        try:
            size = os.fstat(fd).st_size
            # b"": truncated meanwhile (copytruncate), so it starts afresh.
            return size > 0 and os.pread(fd, 1, size - 1) not in (b"\n", b"")
        except OSError:
            # Unknown: the write that follows reports the device's trouble, if any.
            return False

    def _open(self) -> None:
        parent = os.path.dirname(self._path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        readable = True
        try:
            fd = os.open(self._path, _OPEN_FLAGS, self._file_mode)
        except PermissionError:
            # Write permission only: torn lines of other processes cannot be seen, ours can.
            fd = os.open(self._path, _WRITE_ONLY_FLAGS, self._file_mode)
            readable = False
        st = os.fstat(fd)
        self._fd, self._pid, self._ident = fd, os.getpid(), (st.st_dev, st.st_ino)
        self._readable = readable and stat.S_ISREG(st.st_mode)

    def _close_locked(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._ident = None


def _describe(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__
