"""The HTTP side against readers that never read, bodies smuggled on GET, ambiguous framing,
odd negotiation headers and an exception inside one connection: real sockets on loopback
against an in-process server."""

from __future__ import annotations

import gzip
import http.client
import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from log_exporter.prometheus import connections
from log_exporter.prometheus.server import MetricsServer
from tests.support.waits import wait_for


class _Wide(Collector):
    """A page of about 1.5 MB: far more than a socket's buffers hold."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("wide_gauge", "A wide page.", labels=["series"])
        for i in range(30_000):
            family.add_metric([f"series-{i:08d}"], float(i))
        yield family


def _serve(registry: CollectorRegistry) -> MetricsServer:
    srv = MetricsServer(registry, listen="127.0.0.1:0")
    srv.start()
    return srv


@pytest.fixture
def wide() -> Iterator[MetricsServer]:
    registry = CollectorRegistry()
    registry.register(_Wide())
    srv = _serve(registry)
    yield srv
    srv.shutdown()


@pytest.fixture
def small() -> Iterator[MetricsServer]:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(3)
    srv = _serve(registry)
    yield srv
    srv.shutdown()


def _slow_reader(srv: MetricsServer, requests: int) -> socket.socket:
    """A client with a 1 KB receive buffer that pipelines ``requests`` scrapes and never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(srv.address)
    sock.settimeout(10)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * requests)
    return sock


def _get(
    srv: MetricsServer, path: str, headers: dict[str, str] | None = None, *, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*srv.address, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _raw(srv: MetricsServer, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes (bounded by the socket timeout)."""
    with socket.create_connection(srv.address, timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_health_and_scrapes_answer_while_slow_readers_hold_unsent_pages(
    wide: MetricsServer,
) -> None:
    """Eight readers that pipeline 400 scrapes each and never read hold no handler thread:
    /healthz answers at once and a normal scrape of the same page completes."""
    readers = [_slow_reader(wide, 400) for _ in range(8)]
    try:
        # Every slow reader has an answer under way before the probes start.
        for _ in range(3):
            status, _, _ = _get(wide, "/metrics", timeout=20)
            assert status == 200
        worst = 0.0
        for _ in range(20):
            started = time.monotonic()
            status, _, body = _get(wide, "/healthz", timeout=5)
            worst = max(worst, time.monotonic() - started)
            assert (status, body) == (200, b'{"status": "ok"}\n')
        assert worst < 2.0
        status, _, body = _get(wide, "/metrics", timeout=20)
        assert status == 200 and body.startswith(b"# HELP wide_gauge")
    finally:
        for sock in readers:
            sock.close()


def test_a_reader_that_never_reads_is_closed_after_the_idle_timeout(
    wide: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer not taken within the idle timeout costs the client its connection, and the
    requests it pipelined behind it are never answered."""
    monkeypatch.setattr(connections, "IDLE_TIMEOUT_SECONDS", 1.0)
    sock = _slow_reader(wide, 50)
    try:
        # The connection ends: reading now drains what was sent, then meets the close.
        wait_for(lambda: wide._loop.connection_count() == 0, "the slow reader to be closed")
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
        # What the kernel's buffers took of an answer or two at most, never fifty answers.
        assert 0 < received < 10 * 1_500_000
    finally:
        sock.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        # A body on GET that is itself a request: never answered as one.
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n"
        b"GET /nowhere HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /nowhere HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 5\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=[
        "get-body",
        "get-chunked",
        "duplicate-cl",
        "list-cl",
        "cl-and-te",
        "post-cl-and-te",
        "bad-cl",
    ],
)
def test_ambiguous_or_bodied_get_framing_is_400_and_closed(
    small: MetricsServer, request_bytes: bytes
) -> None:
    """A body on GET, duplicate or conflicting Content-Length and Content-Length with
    Transfer-Encoding get one 400 and a close: nothing after them is read as a request."""
    data = _raw(small, request_bytes)
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert data.count(b"HTTP/1.") == 1, data
    assert b"Connection: close" in data


def test_content_length_zero_on_get_keeps_the_connection(small: MetricsServer) -> None:
    """An empty body declared on GET is no body: the request is answered and the next one too."""
    data = _raw(
        small,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 OK") == 2, data


def test_folded_accept_header_is_400_not_echoed(small: MetricsServer) -> None:
    """An obs-fold header line is refused with 400, never copied into Content-Type."""
    data = _raw(
        small,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n"
        b" ;x=\r\nSet-Cookie: a=b\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert b"Set-Cookie" not in data


def test_openmetrics_with_a_version_that_is_not_one_gets_the_text_format(
    small: MetricsServer,
) -> None:
    """``version=abc`` is answered (in the text format, as with no Accept), not dropped."""
    status, headers, _ = _get(
        small, "/metrics", {"Accept": "application/openmetrics-text;version=abc"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize("header", ["gzip;Q=0", "gzip; q=0", "gzip;q=0.0", "gzip ; Q = 0"])
def test_gzip_refused_by_a_zero_quality_in_any_case(small: MetricsServer, header: str) -> None:
    """A zero q-value refuses gzip whatever the parameter's case or spacing."""
    status, headers, body = _get(small, "/metrics", {"Accept-Encoding": header})
    assert status == 200
    assert "Content-Encoding" not in headers
    assert body.startswith(b"# HELP demo_events_total")


def test_gzip_with_an_uppercase_positive_quality_is_gzipped(small: MetricsServer) -> None:
    """``gzip;Q=0.5`` still asks for gzip."""
    status, headers, body = _get(small, "/metrics", {"Accept-Encoding": "gzip;Q=0.5"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    gzip.decompress(body)


def test_an_exception_in_one_connection_closes_it_and_serving_goes_on(
    small: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception while reading one connection closes that connection, is
    counted, and the loop answers the next client."""
    complete = connections.Connection.complete

    def exploding(self: connections.Connection) -> bool:
        if b"BOOM" in self.buffer:
            raise RuntimeError("a bug in the loop")
        return complete(self)

    monkeypatch.setattr(connections.Connection, "complete", exploding)
    assert _raw(small, b"BOOM /healthz HTTP/1.1\r\n\r\n") == b""
    status, _, _ = _get(small, "/healthz")
    assert status == 200
    assert small.http_connection_errors == 1
