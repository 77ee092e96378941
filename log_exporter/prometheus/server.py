"""The HTTP side: the telemetry path (``/metrics``), ``/healthz``, ``/readyz`` and ``/`` over a
prometheus registry, on one address (``:PORT`` is every interface).

Dependency-free (``http.server`` parses and answers each request, framed as RFC 9112 asks of a
server that takes no bodies), over the non-blocking ``connections`` loop, which hands this
module only complete requests and sends the answers. The health probes are answered in the loop
thread (``_Site.inline``); ``/metrics`` in a handler thread, concurrent scrapes of one page
sharing one render (``SharedRenders``), ``MAX_RENDERS`` different pages at a time, since each
holds a whole page in memory; the format is the request's (``negotiate``). The web config's
basic auth, when configured, guards every endpoint but the probes, and its headers go on every
answer; its TLS context serves each new connection, all as in force now
(``webconfig.LiveWebConfig`` re-reads them).
"""

from __future__ import annotations

import gzip
import html
import io
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CollectorRegistry

from log_exporter import __version__
from log_exporter.prometheus.connections import (
    RESERVE_FDS,
    Connection,
    ConnectionLoop,
    RateLimitedLog,
    bind_address,
)
from log_exporter.prometheus.negotiate import accepts_gzip, select_encoder
from log_exporter.prometheus.webconfig import LiveWebConfig, WebConfig

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_TELEMETRY_PATH",
    "MAX_RENDERS",
    "MetricsServer",
    "SharedRenders",
    "parse_listen",
]

DEFAULT_LISTEN = "127.0.0.1:9464"
DEFAULT_TELEMETRY_PATH = "/metrics"
# The name operators see in the "logger" field and filter on, kept when the module moved.
log = logging.getLogger("log_exporter.server")

# A page in memory per render: a few at a time keep memory bounded under parallel scrapes.
MAX_RENDERS = 2

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


class _Flight:
    __slots__ = ("done", "error", "finished", "page", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.page = b""
        self.error: BaseException | None = None
        self.waiters = 0
        self.finished = 0.0


class SharedRenders:
    """One render at a time per kind of page: scrapes asking for a page (same format, same
    gzip choice) while it is being rendered wait for that render and share its bytes, so 50
    scrapers at once cost one render, one gzip and one page in memory, not 50.

    A scrape whose request arrived before the last render of its page finished, but found no
    handler thread until after, takes that page too: it was concurrent with the render. A
    request that arrives after a page was finished always gets a new one, so a scrape never
    sees older data than its own arrival.
    """

    # The finished pages kept, one per kind: a client names the version in the content type.
    _KEPT = 8
    _KEPT_SECONDS = 10.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, bool], _Flight] = {}
        self._last: dict[tuple[str, bool], _Flight] = {}
        self._clock = clock
        self.renders = 0  # pages rendered, for tests

    def waiting(self) -> int:
        """Scrapes waiting for a render under way to share its page."""
        with self._lock:
            return sum(f.waiters for f in self._flights.values())

    def get(
        self, key: tuple[str, bool], render: Callable[[], bytes], arrived: float | None = None
    ) -> bytes:
        """The page of ``key``: the one being rendered, the last one if the request
        (``arrived``, on this object's clock) came before it was finished, or a new one."""
        with self._lock:
            now = self._clock()
            for old in [k for k, f in self._last.items() if now - f.finished > self._KEPT_SECONDS]:
                del self._last[old]
            last = self._last.get(key)
            if last is not None and arrived is not None and arrived <= last.finished:
                return last.page
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                flight.waiters += 1
        if leader:
            try:
                flight.page = render()
            except BaseException as exc:
                flight.error = exc
            finally:
                with self._lock:
                    del self._flights[key]
                    self.renders += 1
                    flight.finished = self._clock()
                    self._last.pop(key, None)
                    if flight.error is None and len(self._last) < self._KEPT:
                        self._last[key] = flight
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.page


class _Site:
    """What the routes answer from: the registry, readiness, the web config in force, the
    telemetry path and the render slots; ``answer`` serves one request of a connection."""

    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        web_config: LiveWebConfig | None,
        telemetry_path: str,
    ) -> None:
        self.registry, self.ready, self.web_config = registry, ready, web_config
        self.telemetry_path = telemetry_path
        self.renders = threading.BoundedSemaphore(MAX_RENDERS)
        self.shared = SharedRenders()
        self.codes: dict[int, int] = {}
        self._codes_lock = threading.Lock()
        self.failures = RateLimitedLog("refused or failed requests")

    def config(self) -> WebConfig | None:
        """The web config in force (re-read when its files changed), or None."""
        return None if self.web_config is None else self.web_config.current()[0]

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context of the web config in force (only asked when it has TLS)."""
        assert self.web_config is not None
        context = self.web_config.current()[1]
        assert context is not None
        return context

    def answered(self, code: int) -> None:
        """Count an answer by its status code (``log_exporter_http_requests_total``)."""
        with self._codes_lock:
            self.codes[code] = self.codes.get(code, 0) + 1
        if code >= 400:
            self.failures.note(f"http_{code}")

    def inline(self, conn: Connection) -> bool | None:
        """Answer a health probe in the loop thread (the loop's ``inline``): a few bytes, never
        behind the renders; None for any other request, which a handler thread answers."""
        line = bytes(conn.buffer[:64]).lstrip(b"\r\n").split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        parts = line.split()
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return None
        if parts[1].split(b"?", 1)[0] not in (b"/healthz", b"/readyz"):
            return None
        return self.answer(conn)

    def answer(self, conn: Connection) -> bool:
        """Answer the request at the head of ``conn.buffer`` (the loop's ``answer``): what
        followed it stays in the buffer; True to keep the connection."""
        handler = _Handler(conn, self)
        handler.close_connection = True
        handler.handle_one_request()
        keep = not handler.close_connection
        conn.buffer = bytearray(handler.rfile.read())
        return keep


class _Handler(BaseHTTPRequestHandler):
    """Answers the one request buffered in ``rfile`` on a connection the loop handed over."""

    protocol_version = "HTTP/1.1"
    server_version = f"log-exporter/{__version__}"

    def __init__(self, conn: Connection, site: _Site) -> None:
        # Not StreamRequestHandler's __init__, which would serve the connection to its end: the
        # loop decides what happens between requests.
        self.request = self.connection = conn.sock
        self.client_address = conn.address
        self.site = site
        self.arrived = conn.arrived
        self.rfile = io.BytesIO(bytes(conn.buffer))
        self.wfile = _Writer(conn)  # type: ignore[assignment]

    def parse_request(self) -> bool:
        """http.server's parse, then the framing RFC 9112 asks of a server that reads no body:
        a body it would otherwise take for the next request, an ambiguous length, and a folded
        header line are refused with 400 and a close."""
        if not super().parse_request():
            return False
        lengths = self.headers.get_all("Content-Length") or []
        chunked = self.headers.get_all("Transfer-Encoding") or []
        problem = None
        if any("\n" in value or "\r" in value for value in self.headers.values()):
            problem = "obsolete line folding in a header"
        elif lengths and chunked:
            problem = "both content-length and transfer-encoding"
        elif len(lengths) > 1 or any("," in v for v in lengths):
            problem = "more than one content-length"
        elif lengths and not lengths[0].strip().isdigit():
            problem = "invalid content-length"
        elif self.command in ("GET", "HEAD") and (chunked or (lengths and int(lengths[0]) > 0)):
            # This server takes no request bodies; reading past one as a request would let a
            # body smuggle requests behind a proxy that framed it differently.
            problem = "request bodies are not accepted"
        if problem is not None:
            self.send_error(400, problem)
            return False
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self.site.answered(code)
        super().send_response(code, message)

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
        path = self.path.split("?", 1)[0]
        # The probes answer without credentials, as node_exporter's and many exporters' do:
        # they reveal only that the process lives and has read its log, and a kubelet probe
        # carries no password. TLS, when on, still applies to them.
        if path == "/healthz":
            self._send_json(200, {"status": "ok"}, body=body)
            return
        if path == "/readyz":
            ready = self._is_ready()
            self._send_json(200 if ready else 503, {"ready": ready}, body=body)
            return
        if not self._authorized():
            return
        if path == self.site.telemetry_path:
            self._metrics(body)
        elif path == "/":
            telemetry = html.escape(self.site.telemetry_path)
            page = _LANDING.format(version=__version__, telemetry=telemetry).encode()
            self._send(200, page, "text/html; charset=utf-8", body=body)
        else:
            self._send_json(404, {"error": "not found", "path": path}, body=body)

    def _authorized(self) -> bool:
        config = self.site.config()
        if config is None or config.authorized(self.headers.get("Authorization")):
            return True
        self._send_json(
            401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Basic realm="log-exporter"'}
        )
        return False

    def _is_ready(self) -> bool:
        try:
            return bool(self.site.ready())
        except Exception:
            log.exception("readiness check failed")
            return False

    def _metrics(self, body: bool) -> None:
        encoder, content_type = select_encoder(self.headers.get("Accept", ""))
        compress = accepts_gzip(self.headers.get("Accept-Encoding"))

        def render() -> bytes:
            with self.site.renders:
                output = encoder(self.site.registry)
            if compress:
                # Level 1: scrape pages compress well at any level; speed matters more here.
                output = gzip.compress(output, compresslevel=1)
            return output

        try:
            # The content type names the format, its version and so whether exemplars are in.
            output = self.site.shared.get((content_type, compress), render, self.arrived)
        except Exception:
            log.exception("rendering /metrics failed")
            self._send_json(500, {"error": "rendering metrics failed; see the exporter's log"})
            return
        headers = {"Content-Encoding": "gzip"} if compress else {}
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
        config = self.site.config()
        if config is not None:
            # http_server_config's headers, on every answer as exporter-toolkit sets them.
            for name, value in config.headers.items():
                self.send_header(name, value)
        if self.close_connection and self.request_version == "HTTP/1.1":
            # RFC 9112 9.6: a server that closes after this answer says so.
            self.send_header("Connection", "close")
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            # An HTTP/1.0 client keeps the connection only when told so; without the header
            # it waits for the close that never comes before it takes the answer as complete.
            self.send_header("Connection", "keep-alive")
        send_body = body and self.command != "HEAD"
        if self.request_version == "HTTP/0.9":
            if send_body:
                self.wfile.write(data)
            return
        # Headers and body queued together (the loop sends them in one write where it can: in
        # two, Nagle's algorithm and the client's delayed ACK held the body back 40 ms on every
        # keep-alive scrape); the body is not copied, so a page shared by scrapes stays one.
        self.end_headers()
        if send_body:
            self.wfile.write(data)

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
    """The handler's ``wfile``: writes are queued on the connection, which the loop sends as
    the client reads (the handler never waits for a client)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.closed = False

    def write(self, data: bytes) -> int:
        self._conn.send(data)
        return len(data)

    def flush(self) -> None:
        pass


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
        self._site = _Site(registry, ready, live, telemetry_path)
        self._loop = ConnectionLoop(
            address,
            family,
            answer=self._site.answer,
            inline=self._site.inline,
            tls=self._site.tls_context if live is not None and live.tls else None,
            dualstack=dualstack,
            max_connections=max_connections,
            reserve_fds=reserve_fds,
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self._loop.server_address[:2]
        return str(host), int(port)

    @property
    def scheme(self) -> str:
        return "https" if self._loop.tls else "http"

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{port}{self._site.telemetry_path}"

    @property
    def web_config_reloads(self) -> dict[str, int] | None:
        """Reloads of the web config by result, or None without one."""
        live = self._site.web_config
        return None if live is None else live.reloads

    @property
    def http_requests(self) -> dict[str, int]:
        """Answers so far by status code."""
        with self._site._codes_lock:
            return {str(code): n for code, n in self._site.codes.items()}

    @property
    def http_connection_errors(self) -> int:
        """Connections closed after an unexpected error (logged with its traceback)."""
        return self._loop.connection_errors

    @property
    def tls_handshake_failures(self) -> dict[str, int] | None:
        """Failed TLS handshakes by reason, or None without TLS."""
        return dict(self._loop.tls_failures) if self._loop.tls else None

    @property
    def backlog(self) -> int:
        """The listen backlog asked of the kernel (which caps it at net.core.somaxconn)."""
        return self._loop.backlog

    @property
    def max_connections(self) -> int | None:
        """The connection cap; fixed when serving starts unless given (see descriptor_budget)."""
        return self._loop.max_connections

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket; in-flight scrapes finish on their own."""
        if self._thread is not None:
            self._loop.shutdown()
            self._thread.join()
            self._thread = None
        self._loop.server_close()
