"""The connection loop under the HTTP routes: one thread accepts every connection and reads each
request's header block without blocking (the TLS handshake included), and only a complete request
takes one of a few handler threads, which ``answer`` it into the connection's outgoing buffer.
The loop owns that buffer and sends it as fast as the client reads, so a client that never reads
holds no thread either; it is not read from while its answer is unsent (one answer per connection
at a time), and is closed when the answer is not taken within ``IDLE_TIMEOUT_SECONDS``. Requests
``inline`` claims (the health endpoints, a few bytes each) are answered by the loop itself, so
they never wait behind renders. An exception in one connection closes that connection, logged
and counted (``connection_errors``), never the loop.

So a client that sends its headers a byte at a time holds a descriptor and a small buffer, not a
thread, and is cut off after ``HEADER_TIMEOUT_SECONDS``. Connections are capped below the
process's descriptor limit, less ``reserve_fds`` left for the rest of the exporter (the tailer
must always be able to open the next generation); at the cap, the longest-waiting incomplete or
idle connection makes room for the new one. When ``accept()`` fails for want of descriptors the
loop stops accepting for a moment (up to a second) instead of spinning. The loop knows nothing of
HTTP but where a header block ends; ``server`` answers the requests.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BACKLOG",
    "HANDLER_THREADS",
    "HEADER_TIMEOUT_SECONDS",
    "IDLE_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "RESERVE_FDS",
    "Connection",
    "ConnectionLoop",
    "RateLimitedLog",
    "bind_address",
    "descriptor_budget",
    "handshake_failure_reason",
]

# The name operators see in the "logger" field and filter on, kept from when the loop and the
# routes were one module.
log = logging.getLogger("log_exporter.server")

# socketserver listened with a backlog of 5, so a burst of 20 scrapers already overflowed it; the
# kernel caps this at net.core.somaxconn.
BACKLOG = 1024
# Threads that answer complete requests; the loop thread does all the waiting for clients.
HANDLER_THREADS = 8
# From a connection's first byte (or its accept) to the end of its header block.
HEADER_TIMEOUT_SECONDS = 10.0
# An idle keep-alive connection, and a client that stalls reading its answer.
IDLE_TIMEOUT_SECONDS = 30.0
# Descriptors the server leaves to the rest of the process: the tailer's log and its rotated
# generation, inotify, the state file's save, logging, CloudWatch's connections.
RESERVE_FDS = 32
# Never more connections than this, whatever the descriptor limit.
MAX_CONNECTIONS = 1024
# A header block larger than http.server accepts (a 64 KiB line) is answered from what arrived.
MAX_HEAD_BYTES = 65536 + 8192
_END_OF_HEAD = re.compile(rb"\n\r?\n")
# Bytes handed to one TLS write: a record's worth of work per turn, so others are served between.
_SEND_CHUNK = 256 * 1024
_ACCEPT_BACKOFF = (0.05, 1.0)  # first and longest pause after accept() ran out of descriptors


def bind_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int], bool]:
    """The family, address and dual-stack choice that serve ``host`` ("" is every interface)."""
    if host:
        return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port), False
    if socket.has_dualstack_ipv6():
        return socket.AF_INET6, ("::", port), True
    return socket.AF_INET, ("0.0.0.0", port), False


@dataclass(eq=False)
class Connection:
    """One client connection, owned by the loop while it waits and by a thread while answered.

    ``buffer`` holds what arrived and is not answered yet: a whole header block (and whatever
    the client sent after it) once the connection is handed to ``answer``.
    """

    sock: socket.socket
    address: Any
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    handshaking: bool = False
    busy: bool = False  # with a handler thread, not in the selector
    # An answer's bytes not sent yet, in order; the loop writes them as the client reads, and
    # reads nothing more of the connection until they are gone.
    outgoing: list[memoryview] = field(default_factory=list)
    close_after: bool = False  # close once ``outgoing`` is sent
    eof: bool = False  # the client sent all it will send
    arrived: float = 0.0  # when the request being answered was complete (the loop's clock)

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the loop to send (no copy: a shared page stays one page)."""
        if data:
            self.outgoing.append(memoryview(data))

    def unsent(self) -> int:
        return sum(len(b) for b in self.outgoing)

    def complete(self) -> bool:
        if self.eof:
            return bool(self.buffer.strip())
        return _END_OF_HEAD.search(self.buffer) is not None or len(self.buffer) > MAX_HEAD_BYTES


def handshake_failure_reason(exc: BaseException) -> str:
    """Why a TLS handshake failed, in the few words an operator acts on."""
    reason = str(getattr(exc, "reason", "") or "").upper()
    text = str(exc).upper()
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in (reason, text) or "NO CERTIFICATE" in text:
        return "no_client_certificate"
    if reason == "HTTP_REQUEST" or "HTTP_REQUEST" in text:
        return "plain_http_on_tls"
    if "CERTIFICATE" in reason or "UNKNOWN_CA" in reason or "CERTIFICATE" in text:
        return "bad_certificate"
    return "other"


class RateLimitedLog:
    """One warning per kind of failure at most every ``interval`` seconds, with the count of
    that kind since its last line: a flood of refused clients must not flood the log."""

    def __init__(
        self, what: str, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what, self.interval, self.clock = what, interval, clock
        self._lock = threading.Lock()
        self._since: dict[str, int] = {}
        self._next: dict[str, float] = {}

    def note(self, kind: str, **extra: str) -> None:
        now = self.clock()
        with self._lock:
            count = self._since.get(kind, 0) + 1
            if now < self._next.get(kind, 0.0):
                self._since[kind] = count
                return
            self._since[kind] = 0
            self._next[kind] = now + self.interval
        log.warning(
            f"{self.what}: {kind}",
            extra={"kind": kind, "count_since_last_line": count, **extra},
        )


def descriptor_budget(reserve: int = RESERVE_FDS) -> int:
    """Connections that fit under the soft descriptor limit, leaving ``reserve`` unused.

    Counted against the descriptors open now, so call it once the rest of the process has
    opened what it keeps open (serve starts the server after the tailer).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft - in_use - reserve))


class ConnectionLoop:
    """The listening socket, the loop that waits for clients, and the threads that answer.

    ``answer(conn)`` runs in a handler thread for each complete request: it answers the request
    at the head of ``conn.buffer``, leaves in the buffer what followed it, and returns True to
    keep the connection. ``tls``, when given, is the TLS context in force for a new connection.
    """

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        *,
        answer: Callable[[Connection], bool],
        inline: Callable[[Connection], bool | None] | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
        dualstack: bool = False,
        max_connections: int | None = None,
        reserve_fds: int = RESERVE_FDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._respond = answer
        self._inline = inline
        self.connection_errors = 0
        # TLS handshakes that failed, by reason (see handshake_failure_reason).
        self.tls_failures: dict[str, int] = {}
        self._tls_log = RateLimitedLog("TLS handshakes failed")
        self._tls_context = tls
        self.tls = tls is not None
        self.max_connections = max_connections
        self.reserve_fds = reserve_fds
        self.clock = clock
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if dualstack:
                # IPv4 clients too, as mapped addresses: ":PORT" means every interface.
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.socket.bind(address)
            self.socket.listen(BACKLOG)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.backlog = BACKLOG
        self._selector = selectors.DefaultSelector()
        self._conns: dict[int, Connection] = {}  # by descriptor, waiting and busy alike
        self._returned: list[tuple[Connection, bool]] = []
        self._returned_lock = threading.Lock()
        self._loop_done = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="metrics-http")
        self._accepting = False
        self._resume_at = 0.0
        self._backoff = _ACCEPT_BACKOFF[0]
        self.accept_failures = 0
        self._next_warning = 0.0
        self._warned_at = 0
        self.evicted = 0

    def connection_count(self) -> int:
        """Connections open now (waiting, answered or being sent to)."""
        return len(self._conns)

    # -- the loop -----------------------------------------------------------------------------

    def serve_forever(self) -> None:
        if self.max_connections is None:
            self.max_connections = descriptor_budget(self.reserve_fds)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._set_accepting(True)
        next_sweep = self.clock()
        try:
            while not self._stop.is_set():
                now = self.clock()
                if not self._accepting and now >= self._resume_at:
                    self._set_accepting(self._room_for_one())
                timeout = 0.25 if self._accepting else max(0.0, min(0.25, self._resume_at - now))
                for key, events in self._selector.select(timeout):
                    if key.fileobj is self._wake_r:
                        self._take_back()
                    elif key.fileobj is self.socket:
                        self._accept()
                    else:
                        self._on_ready(key.data, events)
                now = self.clock()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 0.25
        finally:
            with self._returned_lock:
                # From now on a handler thread closes its connection itself (see _answer).
                self._loop_done = True
                returned, self._returned = self._returned, []
            for conn, _ in returned:
                self._close(conn, registered=False)
            for conn in list(self._conns.values()):
                if not conn.busy:
                    self._close(conn)
            self._selector.close()
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        self._pool.shutdown(wait=False)
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    def _set_accepting(self, on: bool) -> None:
        if on == self._accepting:
            return
        if on:
            self._selector.register(self.socket, selectors.EVENT_READ, None)
        else:
            self._selector.unregister(self.socket)
        self._accepting = on

    def _room_for_one(self) -> bool:
        assert self.max_connections is not None
        return len(self._conns) < self.max_connections or self._evict_one()

    def _evict_one(self) -> bool:
        """Close the waiting connection that has waited longest; False if all are answered."""
        waiting = [c for c in self._conns.values() if not c.busy]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.deadline)
        self.evicted += 1
        self._close(oldest)
        return True

    def _accept(self) -> None:
        # A few per turn, so the requests of connections already open are read in between.
        for _ in range(32):
            if not self._room_for_one():
                self._set_accepting(False)
                self._resume_at = self.clock()  # again as soon as a connection is back or closed
                return
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._back_off(exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            self._backoff = _ACCEPT_BACKOFF[0]
            self._open(sock, address)

    def _back_off(self, exc: OSError) -> None:
        # The connection stays in the kernel's queue; accepting again at once would fail the
        # same way in a loop taking all of a core. Free the longest-waiting descriptor too.
        self.accept_failures += 1
        now = self.clock()
        if now >= self._next_warning:
            # Once a minute at most: a flood makes this happen many times a second.
            log.warning(
                "cannot accept connections: out of file descriptors; pausing accept",
                extra={
                    "error": errno.errorcode.get(exc.errno or 0, str(exc)),
                    "failures_since_last_warning": self.accept_failures - self._warned_at,
                },
            )
            self._next_warning, self._warned_at = now + 60.0, self.accept_failures
        self._evict_one()
        self._set_accepting(False)
        self._resume_at = self.clock() + self._backoff
        self._backoff = min(_ACCEPT_BACKOFF[1], self._backoff * 2)

    def _open(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            # Answers go out in one write; no reason to hold a segment back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshaking = False
        if self._tls_context is not None:
            # The context in force: a renewed certificate serves the next client.
            context = self._tls_context()
            try:
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                return
            handshaking = True
        conn = Connection(
            sock, address, self.clock() + HEADER_TIMEOUT_SECONDS, handshaking=handshaking
        )
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        try:
            self._advance(conn)
        except Exception:
            self._failed(conn)

    def _on_ready(self, conn: Connection, events: int) -> None:
        try:
            if conn.outgoing:
                if self._flush(conn):
                    self._proceed(conn)
            else:
                self._advance(conn)
        except Exception:
            self._failed(conn)

    def _failed(self, conn: Connection) -> None:
        """Whatever went wrong with one connection costs that connection, never the loop."""
        self.connection_errors += 1
        log.warning(
            "closing a connection after an unexpected error",
            extra={"client": str(conn.address)},
            exc_info=True,
        )
        if conn.busy:
            return
        with contextlib.suppress(Exception):
            self._close(conn)

    def _watch(self, conn: Connection, events: int) -> None:
        try:
            self._selector.modify(conn.sock, events, conn)
        except KeyError:
            self._selector.register(conn.sock, events, conn)

    # One connection's state machine (handshake, read, parse, dispatch) stepped without
    # blocking; split up, its states would be spread over functions that each need them all.
    def _advance(self, conn: Connection) -> None:  # noqa: C901
        """Move a waiting connection on as far as its bytes allow, without blocking."""
        try:
            if conn.handshaking:
                assert isinstance(conn.sock, ssl.SSLSocket)
                try:
                    conn.sock.do_handshake()
                except ssl.SSLWantReadError:
                    self._watch(conn, selectors.EVENT_READ)
                    return
                except ssl.SSLWantWriteError:
                    self._watch(conn, selectors.EVENT_WRITE)
                    return
                except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
                    # Closed before or during its handshake: a TCP probe or a port scan, not
                    # a refused client.
                    raise
                except (OSError, ValueError) as exc:
                    reason = handshake_failure_reason(exc)
                    self.tls_failures[reason] = self.tls_failures.get(reason, 0) + 1
                    self._tls_log.note(reason, client=str(conn.address))
                    raise
                conn.handshaking = False
                self._watch(conn, selectors.EVENT_READ)
            while True:
                try:
                    data = conn.sock.recv(65536)
                except (BlockingIOError, ssl.SSLWantReadError):
                    break
                except ssl.SSLWantWriteError:
                    self._watch(conn, selectors.EVENT_WRITE)
                    return
                if not data:
                    # The client is done sending: answer what arrived, if anything did.
                    if conn.buffer.strip():
                        conn.eof = True
                        self._proceed(conn)
                    else:
                        self._close(conn)
                    return
                if not conn.buffer.strip():
                    # First byte of a request: its header block is due within the timeout.
                    conn.deadline = self.clock() + HEADER_TIMEOUT_SECONDS
                conn.buffer += data
                if conn.complete():
                    self._proceed(conn)
                    return
                if not (isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending()):
                    break
        except (OSError, ValueError):
            # A reset, a TLS alert, plain HTTP spoken to TLS: not worth a traceback.
            log.debug("connection error", extra={"client": str(conn.address)}, exc_info=True)
            self._close(conn)

    def _proceed(self, conn: Connection) -> None:
        """A connection with nothing left to send: answer its buffered requests one at a time
        (the quick ones here, the rest in a handler thread), else wait for more bytes."""
        while conn.complete():
            keep = self._inline(conn) if self._inline is not None else None
            if keep is None:
                self._selector.unregister(conn.sock)
                conn.busy = True
                conn.arrived = self.clock()
                self._pool.submit(self._answer, conn)
                return
            conn.close_after = not keep
            # An answer the client does not take within the idle timeout closes it.
            conn.deadline = self.clock() + IDLE_TIMEOUT_SECONDS
            if not self._flush(conn):
                return
        conn.deadline = self.clock() + (
            HEADER_TIMEOUT_SECONDS if conn.buffer.strip() else IDLE_TIMEOUT_SECONDS
        )
        self._watch(conn, selectors.EVENT_READ)
        if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
            self._advance(conn)

    def _flush(self, conn: Connection) -> bool:
        """Send what the client will take now; True when all is sent and the connection stays
        open (the caller goes on with it), False when it waits for the client or was closed."""
        sock = conn.sock
        try:
            while conn.outgoing:
                try:
                    if isinstance(sock, ssl.SSLSocket):
                        sent = sock.send(conn.outgoing[0][:_SEND_CHUNK])
                    else:
                        sent = sock.sendmsg(conn.outgoing[:8])
                except (BlockingIOError, ssl.SSLWantWriteError):
                    self._watch(conn, selectors.EVENT_WRITE)
                    return False
                except ssl.SSLWantReadError:
                    self._watch(conn, selectors.EVENT_READ)
                    return False
                while sent and conn.outgoing:
                    first = conn.outgoing[0]
                    if sent >= len(first):
                        sent -= len(first)
                        conn.outgoing.pop(0)
                    else:
                        conn.outgoing[0] = first[sent:]
                        sent = 0
        except (OSError, ValueError):
            log.debug("connection error", extra={"client": str(conn.address)}, exc_info=True)
            self._close(conn)
            return False
        if conn.close_after or self._stop.is_set():
            self._close(conn)
            return False
        return True

    def _answer(self, conn: Connection) -> None:
        """In a handler thread: answer the buffered request into ``conn.outgoing``, then give
        the connection back to the loop, which sends it; the thread never waits for a client."""
        keep = False
        try:
            keep = self._respond(conn)
        except Exception:
            log.warning(
                "answering a request failed", extra={"client": str(conn.address)}, exc_info=True
            )
            self.connection_errors += 1
        with self._returned_lock:
            if not self._loop_done:
                self._returned.append((conn, keep))
                self._wake()
                return
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _take_back(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        with self._returned_lock:
            returned, self._returned = self._returned, []
        for conn, keep in returned:
            conn.busy = False
            try:
                if not keep and not conn.outgoing:
                    self._close(conn, registered=False)
                    continue
                conn.close_after = not keep
                # The whole answer is due within the idle timeout, however slowly it is read.
                conn.deadline = self.clock() + IDLE_TIMEOUT_SECONDS
                if self._flush(conn):
                    self._proceed(conn)
            except Exception:
                self._failed(conn)

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if not c.busy and c.deadline <= now]:
            self._close(conn)

    def _close(self, conn: Connection, *, registered: bool = True) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        if registered:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
