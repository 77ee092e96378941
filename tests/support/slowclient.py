"""Slow HTTP clients for tests: N loopback connections that trickle a request and never finish it.

``SlowClients`` opens its connections without blocking (a server whose accept queue is full
makes a blocking connect hang), then one background thread sends each connection the next byte
of a request every ``interval`` seconds: the header block a byte at a time (slowloris) or, with
``body=True``, the headers at once and then a body that never completes. A connection the server
closes is opened again, as a real attacker would, at most ``reconnects_per_second`` and
``max_reconnects`` times in all. The helper stops by itself after ``max_seconds``, and only
ever connects to a loopback address.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

# A request that is never complete: the blank line ending the header block is never sent.
HEADERS = (
    b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-client\r\n"
    b"Accept: */*\r\nX-Padding: " + b"a" * 200 + b"\r\n"
)
_FILLER = b"X-More: a\r\n"


@dataclass
class _Conn:
    sock: socket.socket
    sent: int = 0
    connected: bool = False


@dataclass
class Stats:
    opened: int = 0  # connections whose connect completed
    closed_by_server: int = 0  # connections the server closed or reset
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


class SlowClients:
    """``count`` connections to ``host:port`` that each send one byte every ``interval`` s."""

    def __init__(
        self,
        port: int,
        count: int,
        *,
        host: str = "127.0.0.1",
        interval: float = 0.5,
        request: bytes = HEADERS,
        body: bool = False,
        max_seconds: float = 120.0,
        max_reconnects: int = 20_000,
        reconnects_per_second: float = 200.0,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"slow clients only connect to loopback addresses, not {host}")
        if body:
            # Headers complete at once, then a body announced as 1 MiB that trickles in.
            request = (
                b"POST /workflows/governed/execute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n" + b" " * 10_000
            )
        self.port, self.count, self.host = port, count, host
        self.interval, self.request, self.body = interval, request, body
        self.max_seconds, self.max_reconnects = max_seconds, max_reconnects
        self.reconnects_per_second = reconnects_per_second
        self._to_reopen = 0
        self.stats = Stats()
        self._conns: dict[int, _Conn] = {}
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for conn in list(self._conns.values()):
            self._close(conn)
        self._selector.close()

    def wait_connected(self, at_least: int, timeout: float = 60.0) -> int:
        """Wait until ``at_least`` connects completed (in all, reconnects included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats.opened >= at_least:
                return self.stats.opened
            time.sleep(0.02)
        raise AssertionError(f"only {self.stats.opened} of {at_least} slow connections opened")

    @property
    def open_now(self) -> int:
        return sum(1 for conn in list(self._conns.values()) if conn.connected)

    def _open(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setblocking(False)
        code = sock.connect_ex((self.host, self.port))
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            self.stats.errors.append(errno.errorcode.get(code, str(code)))
            return
        conn = _Conn(sock)
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_WRITE)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _lost(self, conn: _Conn) -> None:
        self.stats.closed_by_server += 1
        self._close(conn)
        # Reopened at the next drip, at a bounded rate: a client reconnecting in a tight loop
        # would measure how fast the two processes can trade connections, not the server.
        self._to_reopen += 1

    # The one selector loop over every client's states (connect, drip, reconnect).
    def _run(self) -> None:  # noqa: C901
        deadline = time.monotonic() + self.max_seconds
        next_drip = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            timeout = max(0.0, min(next_drip - time.monotonic(), 0.05))
            for key, _ in self._selector.select(timeout):
                conn = self._conns.get(key.fd)
                if conn is None:
                    continue
                if not conn.connected:
                    if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        self._lost(conn)
                        continue
                    conn.connected = True
                    self.stats.opened += 1
                    # From now on only the server closing the connection is of interest.
                    self._selector.modify(conn.sock, selectors.EVENT_READ)
                    self._send(conn, first=True)
                    continue
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._lost(conn)
            if time.monotonic() >= next_drip:
                next_drip = time.monotonic() + self.interval
                for conn in list(self._conns.values()):
                    if conn.connected:
                        self._send(conn)
                budget = max(1, int(self.reconnects_per_second * self.interval))
                while self._to_reopen and budget and self.stats.reconnects < self.max_reconnects:
                    self._to_reopen -= 1
                    budget -= 1
                    self.stats.reconnects += 1
                    self._open()

    def _send(self, conn: _Conn, *, first: bool = False) -> None:
        if first and self.body:
            chunk = self.request[: self.request.index(b"\r\n\r\n") + 4]
        elif conn.sent < len(self.request):
            chunk = self.request[conn.sent : conn.sent + 1]
        else:
            # The whole prefix is out: keep the connection busy with filler that never ends the
            # header block (it starts each line with a letter) or completes the body.
            i = (conn.sent - len(self.request)) % len(_FILLER)
            chunk = b" " if self.body else _FILLER[i : i + 1]
        try:
            sent = conn.sock.send(chunk)
        except BlockingIOError:
            return
        except OSError:
            self._lost(conn)
            return
        conn.sent += sent
