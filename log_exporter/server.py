"""The HTTP side: ``/metrics``, ``/healthz``, ``/readyz`` and ``/`` over a prometheus registry.

Dependency-free (``http.server``), one thread per connection so a slow scraper never blocks
another. TLS handshakes run in the connection's thread, not in the accept loop, so a client that
stalls mid-handshake cannot stop others from connecting. Basic auth, when configured, guards every
endpoint.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from log_exporter import __version__
from log_exporter.webconfig import WebConfig

DEFAULT_LISTEN = "127.0.0.1:9464"
log = logging.getLogger(__name__)

_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>log-exporter</title></head>
<body><h1>log-exporter {version}</h1>
<p>Metrics derived from a JSONL event log.</p>
<ul>
<li><a href="metrics">/metrics</a>: Prometheus text, OpenMetrics on request</li>
<li><a href="healthz">/healthz</a>: the process is alive</li>
<li><a href="readyz">/readyz</a>: the log that existed at start has been read</li>
</ul></body></html>
"""


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) and validate it; raise ``ValueError``."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"--listen {value!r}: expected host:port, e.g. {DEFAULT_LISTEN}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"--listen {value!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"--listen {value!r}: port must be 0..65535")
    # An empty host would bind every interface; that must be asked for explicitly (0.0.0.0 / ::).
    if not host:
        raise ValueError(f"--listen {value!r}: a host is required (use 0.0.0.0 for all interfaces)")
    return host, port


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
    if isinstance(encoder, functools.partial) and encoder.keywords.get("escaping") == "underscores":
        keywords = {**encoder.keywords, "escaping": "allow-utf-8"}
        return functools.partial(encoder.func, *encoder.args, **keywords), content_type
    return encoder, content_type


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Set by MetricsServer before serving; class attributes keep the handler's access typed.
    registry: CollectorRegistry
    ready: Callable[[], bool]
    web_config: WebConfig | None
    ssl_context: ssl.SSLContext | None

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can hang without DNS; not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(_Handler.timeout)
        # wrap_socket detaches the plain socket, so the TLS one must be closed here explicitly.
        tls = self.ssl_context.wrap_socket(request, server_side=True)
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops the connection or speaks plain HTTP to TLS is not worth a traceback.
        log.debug("connection error", extra={"client": str(client_address)}, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = f"log-exporter/{__version__}"
    # Bounds how long an idle keep-alive connection or a stalled client holds a thread.
    timeout = 30

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
        if path == "/metrics":
            self._metrics(body)
        elif path == "/healthz":
            self._send_json(200, {"status": "ok"}, body=body)
        elif path == "/readyz":
            ready = self._is_ready()
            self._send_json(200 if ready else 503, {"ready": ready}, body=body)
        elif path == "/":
            page = _LANDING.format(version=__version__).encode()
            self._send(200, page, "text/html; charset=utf-8", body=body)
        else:
            self._send_json(404, {"error": "not found", "path": path}, body=body)

    def _authorized(self) -> bool:
        config = self.server.web_config
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
        self.end_headers()
        if body and self.command != "HEAD":
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


class MetricsServer:
    """Serves a registry over HTTP(S) in a background thread until ``shutdown()``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        listen: str = DEFAULT_LISTEN,
        ready: Callable[[], bool] = lambda: True,
        web_config: WebConfig | None = None,
    ) -> None:
        host, port = parse_listen(listen)
        ssl_context = web_config.ssl_context() if web_config is not None else None
        server_class = type(
            "_BoundServer",
            (_Server,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        self._httpd: _Server = server_class((host, port), _Handler)
        self._httpd.registry = registry
        self._httpd.ready = ready
        self._httpd.web_config = web_config
        self._httpd.ssl_context = ssl_context
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def scheme(self) -> str:
        return "https" if self._httpd.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{port}/metrics"

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
