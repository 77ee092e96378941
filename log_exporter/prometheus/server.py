"""The HTTP side: the telemetry path (``/metrics``), ``/healthz``, ``/readyz`` and ``/`` over a
prometheus registry, on one address (``:PORT`` is every interface).

Dependency-free (``http.server`` parses and answers), but no client can starve the others: one
loop thread accepts every connection and reads each request's header block without blocking
(the TLS handshake included), and only a complete request takes one of a few handler threads.
So a client that sends its headers a byte at a time holds a descriptor and a small buffer, not a
thread, and is cut off after ``HEADER_TIMEOUT_SECONDS``. Connections are capped below the
process's descriptor limit, less ``reserve_fds`` left for the rest of the exporter (the tailer
must always be able to open the next generation); at the cap, the longest-waiting incomplete or
idle connection makes room for the new one. When ``accept()`` fails for want of descriptors the
loop stops accepting for a moment (up to a second) instead of spinning. Renders of ``/metrics``
run ``MAX_RENDERS`` at a time, since each holds a whole page in memory. The web config's basic
auth, when configured, guards every endpoint and its headers go on every answer; its TLS context
serves each new connection, all as in force now (``webconfig.LiveWebConfig`` re-reads them).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import html
import io
import json
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
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from log_exporter import __version__
from log_exporter.prometheus.collector import without_exemplars
from log_exporter.prometheus.encoder import OpenMetricsEncoder
from log_exporter.prometheus.webconfig import LiveWebConfig, WebConfig

DEFAULT_LISTEN = "127.0.0.1:9464"
DEFAULT_TELEMETRY_PATH = "/metrics"
# The name operators see in the "logger" field and filter on, kept when the module moved.
log = logging.getLogger("log_exporter.server")

# socketserver listened with a backlog of 5, so a burst of 20 scrapers already overflowed it; the
# kernel caps this at net.core.somaxconn.
BACKLOG = 1024
# Threads that answer complete requests; the loop thread does all the waiting for clients.
HANDLER_THREADS = 8
# A page in memory per render: a few at a time keep memory bounded under parallel scrapes.
MAX_RENDERS = 2
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
_ACCEPT_BACKOFF = (0.05, 1.0)  # first and longest pause after accept() ran out of descriptors

_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>log-exporter</title></head>
<body><h1>log-exporter {version}</h1>
<p>Metrics derived from a JSONL event log.</p>
<ul>
<li><a href="{telemetry}">{telemetry}</a>: Prometheus text, OpenMetrics on request</li>
<li><a href="/healthz">/healthz</a>: the process is alive</li>
<li><a href="/readyz">/readyz</a>: the log that existed at start has been read</li>
</ul></body></html>
"""


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``[host]:port`` (``[v6]:port`` for IPv6) and validate it; raise ``ValueError``.

    An empty host (``:9464``) is every interface, IPv6 and IPv4, as Go's ``net.Listen`` and so
    node_exporter read it; the default stays loopback, so every interface is only ever asked for.
    """
    flag = f"--web.listen-address {value!r}"
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{flag}: expected [host]:port, e.g. {DEFAULT_LISTEN} or :9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ValueError(f"{flag}: empty brackets; :PORT alone is every interface")
    elif ":" in host:
        raise ValueError(f"{flag}: write an IPv6 address in brackets, e.g. [::1]:9464")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{flag}: port must be 0..65535")
    return host, port


def bind_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int], bool]:
    """The family, address and dual-stack choice that serve ``host`` ("" is every interface)."""
    if host:
        return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port), False
    if socket.has_dualstack_ipv6():
        return socket.AF_INET6, ("::", port), True
    return socket.AF_INET, ("0.0.0.0", port), False


def accepts_gzip(header: str | None) -> bool:
    """True when an ``Accept-Encoding`` header allows gzip (``q=0`` refuses it)."""
    if not header:
        return False
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def select_encoder(accept: str) -> tuple[Callable[[CollectorRegistry], bytes], str]:
    """``choose_encoder``'s format for an Accept header, rendered without needless escaping.

    Under OpenMetrics' default ``escaping=underscores`` prometheus_client rewrites every sample
    name character by character, which more than doubles the render time of a large page.
    Escaping only changes names outside the legacy charset, and every name here is inside it
    (the spec loader accepts no other), so ``allow-utf-8`` renders the very same bytes; the
    tests pin that equality.
    """
    encoder, content_type = choose_encoder(accept)
    if not content_type.startswith("application/openmetrics-text"):
        # The text format has no exemplars: do not collect them only to be dropped.
        return _without_exemplars(encoder), content_type
    if isinstance(encoder, functools.partial) and encoder.keywords.get("escaping") in (
        "underscores",
        "allow-utf-8",
    ):
        # Our own encoder writes client_python's bytes, exemplars composed once (omencoder).
        return _openmetrics_encoder(str(encoder.keywords.get("version", "1.0.0"))), content_type
    return encoder, content_type


# One encoder per version a client asked for, kept so the names it checked are not checked
# again; the version comes from a client's header, so only a few are kept.
_OPENMETRICS: dict[str, OpenMetricsEncoder] = {}
_OPENMETRICS_KEPT = 4


def _openmetrics_encoder(version: str) -> OpenMetricsEncoder:
    encoder = _OPENMETRICS.get(version)
    if encoder is None:
        encoder = OpenMetricsEncoder(version)
        if len(_OPENMETRICS) < _OPENMETRICS_KEPT:
            _OPENMETRICS[version] = encoder
    return encoder


def _without_exemplars(
    encoder: Callable[[CollectorRegistry], bytes],
) -> Callable[[CollectorRegistry], bytes]:
    def encode(registry: CollectorRegistry) -> bytes:
        with without_exemplars():
            return encoder(registry)

    return encode


class _Handler(BaseHTTPRequestHandler):
    """Answers the one request buffered in ``rfile`` on a connection the loop handed over."""

    server: _Server  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"
    server_version = f"log-exporter/{__version__}"

    def __init__(self, conn: _Conn, server: _Server) -> None:
        # Not StreamRequestHandler's __init__, which would serve the connection to its end: the
        # loop decides what happens between requests.
        self.request = self.connection = conn.sock
        self.client_address = conn.address
        self.server = server
        self.rfile = io.BytesIO(bytes(conn.buffer))
        self.wfile = _Writer(conn.sock)  # type: ignore[assignment]

    def version_string(self) -> str:
        # http.server appends the Python version, which tells an attacker more than it helps.
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def _not_allowed(self) -> None:
        # The request body is never read, so the connection cannot be reused safely.
        self.close_connection = True
        if self._authorized():
            self._send_json(405, {"error": "method not allowed"}, {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _not_allowed

    def _dispatch(self, *, body: bool) -> None:
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path == self.server.telemetry_path:
            self._metrics(body)
        elif path == "/healthz":
            self._send_json(200, {"status": "ok"}, body=body)
        elif path == "/readyz":
            ready = self._is_ready()
            self._send_json(200 if ready else 503, {"ready": ready}, body=body)
        elif path == "/":
            telemetry = html.escape(self.server.telemetry_path)
            page = _LANDING.format(version=__version__, telemetry=telemetry).encode()
            self._send(200, page, "text/html; charset=utf-8", body=body)
        else:
            self._send_json(404, {"error": "not found", "path": path}, body=body)

    def _authorized(self) -> bool:
        config = self.server.config()
        if config is None or config.authorized(self.headers.get("Authorization")):
            return True
        self._send_json(
            401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Basic realm="log-exporter"'}
        )
        return False

    def _is_ready(self) -> bool:
        try:
            return bool(self.server.ready())
        except Exception:
            log.exception("readiness check failed")
            return False

    def _metrics(self, body: bool) -> None:
        encoder, content_type = select_encoder(self.headers.get("Accept", ""))
        try:
            with self.server.renders:
                output = encoder(self.server.registry)
        except Exception:
            log.exception("rendering /metrics failed")
            self._send_json(500, {"error": "rendering metrics failed; see the exporter's log"})
            return
        headers = {}
        if accepts_gzip(self.headers.get("Accept-Encoding")):
            # Level 1: scrape pages compress well at any level; speed matters more here.
            output = gzip.compress(output, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept, Accept-Encoding"
        self._send(200, output, content_type, headers, body=body)

    def _send_json(
        self,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        body: bool = True,
    ) -> None:
        data = (json.dumps(payload) + "\n").encode()
        self._send(status, data, "application/json", headers, body=body)

    def _send(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        *,
        body: bool = True,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        config = self.server.config()
        if config is not None:
            # http_server_config's headers, on every answer as exporter-toolkit sets them.
            for name, value in config.headers.items():
                self.send_header(name, value)
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            # An HTTP/1.0 client keeps the connection only when told so; without the header
            # it waits for the close that never comes before it takes the answer as complete.
            self.send_header("Connection", "keep-alive")
        send_body = body and self.command != "HEAD"
        if self.request_version == "HTTP/0.9":
            if send_body:
                self.wfile.write(data)
            return
        # Headers and body in one write: in two, Nagle's algorithm and the client's delayed ACK
        # held the body back 40 ms on every keep-alive scrape.
        buffered: list[bytes] = self._headers_buffer  # type: ignore[attr-defined]
        buffered.append(b"\r\n")
        if send_body:
            buffered.append(data)
        self.flush_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (malformed request line, unknown method, huge headers) get
        # the same JSON shape as ours instead of its HTML page.
        self.close_connection = True
        # A request line too broken to carry a version leaves the HTTP/0.9 default, which would
        # suppress the status line and headers; answer such clients in HTTP/1.0 instead.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        reason = message or self.responses.get(code, ("error",))[0]
        self._send_json(code, {"error": reason.lower()})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args, extra={"client": self.client_address[0]})


class _Writer:
    """The handler's ``wfile``: every write goes out whole (``sendall``) on the connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.closed = False

    def write(self, data: bytes) -> int:
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


@dataclass(eq=False)
class _Conn:
    """One client connection, owned by the loop while it waits and by a thread while answered."""

    sock: socket.socket
    address: Any
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    handshaking: bool = False
    busy: bool = False  # with a handler thread, not in the selector

    def complete(self) -> bool:
        return _END_OF_HEAD.search(self.buffer) is not None or len(self.buffer) > MAX_HEAD_BYTES


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


class _Server:
    """The listening socket, the loop that waits for clients, and the threads that answer."""

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        *,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        web_config: LiveWebConfig | None,
        telemetry_path: str = DEFAULT_TELEMETRY_PATH,
        dualstack: bool = False,
        max_connections: int | None,
        reserve_fds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry, self.ready, self.web_config = registry, ready, web_config
        self.telemetry_path = telemetry_path
        self.tls = web_config is not None and web_config.tls
        self.renders = threading.BoundedSemaphore(MAX_RENDERS)
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
        self._conns: dict[int, _Conn] = {}  # by descriptor, waiting and busy alike
        self._returned: list[tuple[_Conn, bool]] = []
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

    def config(self) -> WebConfig | None:
        """The web config in force (re-read when its files changed), or None."""
        return None if self.web_config is None else self.web_config.current()[0]

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
        if self.web_config is not None and self.tls:
            # The context of the config in force: a renewed certificate serves the next client.
            context = self.web_config.current()[1]
            assert context is not None
            try:
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                return
            handshaking = True
        conn = _Conn(sock, address, self.clock() + HEADER_TIMEOUT_SECONDS, handshaking=handshaking)
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        self._advance(conn)

    def _on_ready(self, conn: _Conn, events: int) -> None:
        self._advance(conn)

    def _advance(self, conn: _Conn) -> None:
        """Move a waiting connection on as far as its bytes allow, without blocking."""
        try:
            if conn.handshaking:
                assert isinstance(conn.sock, ssl.SSLSocket)
                try:
                    conn.sock.do_handshake()
                except ssl.SSLWantReadError:
                    self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
                    return
                except ssl.SSLWantWriteError:
                    self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
                    return
                conn.handshaking = False
                self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            while True:
                try:
                    data = conn.sock.recv(65536)
                except (BlockingIOError, ssl.SSLWantReadError):
                    break
                except ssl.SSLWantWriteError:
                    self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
                    return
                if not data:
                    # The client is done sending: answer what arrived, if anything did.
                    if conn.buffer.strip():
                        self._dispatch(conn)
                    else:
                        self._close(conn)
                    return
                if not conn.buffer.strip():
                    # First byte of a request: its header block is due within the timeout.
                    conn.deadline = self.clock() + HEADER_TIMEOUT_SECONDS
                conn.buffer += data
                if conn.complete():
                    self._dispatch(conn)
                    return
                if not (isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending()):
                    break
        except (OSError, ValueError):
            # A reset, a TLS alert, plain HTTP spoken to TLS: not worth a traceback.
            log.debug("connection error", extra={"client": str(conn.address)}, exc_info=True)
            self._close(conn)

    def _dispatch(self, conn: _Conn) -> None:
        self._selector.unregister(conn.sock)
        conn.busy = True
        self._pool.submit(self._answer, conn)

    def _answer(self, conn: _Conn) -> None:
        """In a handler thread: answer the buffered request, then give the connection back."""
        keep = False
        try:
            conn.sock.settimeout(IDLE_TIMEOUT_SECONDS)
            handler = _Handler(conn, self)
            handler.close_connection = True
            handler.handle_one_request()
            keep = not handler.close_connection
            conn.buffer = bytearray(handler.rfile.read())
        except Exception:
            log.debug("connection error", extra={"client": str(conn.address)}, exc_info=True)
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
            if not keep or self._stop.is_set():
                self._close(conn, registered=False)
                continue
            try:
                conn.sock.setblocking(False)
                conn.deadline = self.clock() + (
                    HEADER_TIMEOUT_SECONDS if conn.buffer.strip() else IDLE_TIMEOUT_SECONDS
                )
                self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            except (OSError, ValueError):
                self._close(conn, registered=False)
                continue
            if conn.complete():
                self._dispatch(conn)
            elif isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
                self._advance(conn)

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if not c.busy and c.deadline <= now]:
            self._close(conn)

    def _close(self, conn: _Conn, *, registered: bool = True) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        if registered:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")


class MetricsServer:
    """Serves a registry over HTTP(S) in a background thread until ``shutdown()``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        listen: str = DEFAULT_LISTEN,
        ready: Callable[[], bool] = lambda: True,
        web_config: WebConfig | None = None,
        telemetry_path: str = DEFAULT_TELEMETRY_PATH,
        max_connections: int | None = None,
        reserve_fds: int = RESERVE_FDS,
    ) -> None:
        family, address, dualstack = bind_address(*parse_listen(listen))
        # Builds the TLS context now, so a bad certificate fails at start, named.
        live = None if web_config is None else LiveWebConfig(web_config)
        self._httpd = _Server(
            address,
            family,
            registry=registry,
            ready=ready,
            web_config=live,
            telemetry_path=telemetry_path,
            dualstack=dualstack,
            max_connections=max_connections,
            reserve_fds=reserve_fds,
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def scheme(self) -> str:
        return "https" if self._httpd.tls else "http"

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{port}{self._httpd.telemetry_path}"

    @property
    def web_config_reloads(self) -> dict[str, int] | None:
        """Reloads of the web config by result, or None without one."""
        live = self._httpd.web_config
        return None if live is None else live.reloads

    @property
    def backlog(self) -> int:
        """The listen backlog asked of the kernel (which caps it at net.core.somaxconn)."""
        return self._httpd.backlog

    @property
    def max_connections(self) -> int | None:
        """The connection cap; fixed when serving starts unless given (see descriptor_budget)."""
        return self._httpd.max_connections

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket; in-flight scrapes finish on their own."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
