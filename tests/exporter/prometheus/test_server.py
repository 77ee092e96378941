"""The HTTP server on its own: a real threaded server on an ephemeral port over a fresh registry."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families

from log_exporter.prometheus.negotiate import accepts_gzip, select_encoder
from log_exporter.prometheus.server import MetricsServer, parse_listen


def _request(
    server: MetricsServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    events = Counter("demo_events", "Events seen.", ["kind"], registry=registry)
    events.labels(kind="a").inc(3)
    return registry


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    srv = MetricsServer(registry, listen="127.0.0.1:0")
    srv.start()
    yield srv
    srv.shutdown()


def test_metrics_serves_prometheus_text_by_default(server: MetricsServer) -> None:
    """A scraper that sends no Accept header gets Prometheus text with the registry's values."""
    status, headers, body = _request(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("demo_events_total", (("kind", "a"),))] == 3.0


def test_metrics_openmetrics_when_accept_asks(server: MetricsServer) -> None:
    """A scraper asking for OpenMetrics gets it, terminated by the mandatory # EOF."""
    status, headers, body = _request(
        server, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b'demo_events_total{kind="a"} 3.0' in body


def test_metrics_gzip_when_accepted(server: MetricsServer) -> None:
    """A scraper that accepts gzip gets a compressed page that decompresses to the metrics."""
    status, headers, body = _request(server, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert b'demo_events_total{kind="a"} 3.0' in gzip.decompress(body)


def test_metrics_not_gzipped_when_refused_with_q0(server: MetricsServer) -> None:
    """``gzip;q=0`` means the client cannot decode gzip, so the page is sent plain."""
    status, headers, body = _request(
        server, "/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"}
    )
    assert status == 200
    assert "content-encoding" not in headers
    assert b"demo_events_total" in body


def test_accept_encoding_parsing_edge_cases() -> None:
    """Only an acceptable gzip (or wildcard) coding turns compression on."""
    assert accepts_gzip("deflate, gzip;q=0.5")
    assert accepts_gzip("*")
    assert not accepts_gzip(None)
    assert not accepts_gzip("br, deflate")
    assert not accepts_gzip("gzip;q=0.0")
    assert not accepts_gzip("gzip;q=banana")


def test_healthz_answers_while_alive(server: MetricsServer) -> None:
    """/healthz answers 200 as long as the process serves HTTP."""
    status, _, body = _request(server, "/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}


def test_readyz_503_until_the_readiness_check_passes(registry: CollectorRegistry) -> None:
    """/readyz is 503 until the exporter reports it has caught up, then 200."""
    ready = threading.Event()
    srv = MetricsServer(registry, listen="127.0.0.1:0", ready=ready.is_set)
    srv.start()
    try:
        status, _, body = _request(srv, "/readyz")
        assert (status, json.loads(body)) == (503, {"ready": False})
        ready.set()
        status, _, body = _request(srv, "/readyz")
        assert (status, json.loads(body)) == (200, {"ready": True})
    finally:
        srv.shutdown()


def test_readyz_503_when_the_readiness_check_raises(registry: CollectorRegistry) -> None:
    """A failing readiness check reports not ready instead of crashing the request."""

    def broken() -> bool:
        raise RuntimeError("tailer gone")

    srv = MetricsServer(registry, listen="127.0.0.1:0", ready=broken)
    srv.start()
    try:
        assert _request(srv, "/readyz")[0] == 503
        assert _request(srv, "/healthz")[0] == 200
    finally:
        srv.shutdown()


def test_landing_page_links_every_endpoint(server: MetricsServer) -> None:
    """The root page is HTML linking /metrics, /healthz and /readyz."""
    status, headers, body = _request(server, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    for target in (b'href="/metrics"', b'href="/healthz"', b'href="/readyz"'):
        assert target in body


def test_unknown_path_is_a_json_404(server: MetricsServer) -> None:
    """A typo in the path gets a 404 with a JSON error naming the path."""
    status, headers, body = _request(server, "/metricz?x=1")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "not found", "path": "/metricz"}


def test_post_is_refused_with_405_and_allow(server: MetricsServer) -> None:
    """Writing methods are refused with 405 and an Allow header listing GET and HEAD."""
    status, headers, body = _request(server, "/metrics", method="POST")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert json.loads(body)["error"] == "method not allowed"


def test_head_returns_headers_without_body(server: MetricsServer) -> None:
    """HEAD /metrics gives the GET headers (with its length) but no body."""
    _, get_headers, get_body = _request(server, "/metrics")
    status, headers, body = _request(server, "/metrics", method="HEAD")
    assert status == 200
    assert body == b""
    assert headers["content-length"] == str(len(get_body))
    assert headers["content-type"] == get_headers["content-type"]


def test_render_failure_is_a_500_and_the_server_lives() -> None:
    """A collector that raises yields a JSON 500 for that scrape; the next request still works."""

    class Broken:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            raise RuntimeError("boom")

    registry = CollectorRegistry()
    registry.register(Broken())
    srv = MetricsServer(registry, listen="127.0.0.1:0")
    srv.start()
    try:
        status, _, body = _request(srv, "/metrics")
        assert status == 500
        assert "error" in json.loads(body)
        assert _request(srv, "/healthz")[0] == 200
    finally:
        srv.shutdown()


def test_ipv6_loopback_listen(registry: CollectorRegistry) -> None:
    """``--listen [::1]:PORT`` serves over IPv6 loopback."""
    srv = MetricsServer(registry, listen="[::1]:0")
    srv.start()
    try:
        assert srv.address[0] == "::1"
        assert srv.url.startswith("http://[::1]:")
        status, _, body = _request(srv, "/metrics")
        assert status == 200
        assert b"demo_events_total" in body
    finally:
        srv.shutdown()


def test_shutdown_releases_the_port(registry: CollectorRegistry) -> None:
    """After shutdown the port is free again, so a restarted exporter can bind it."""
    srv = MetricsServer(registry, listen="127.0.0.1:0")
    srv.start()
    port = srv.address[1]
    srv.shutdown()
    again = MetricsServer(registry, listen=f"127.0.0.1:{port}")
    try:
        assert again.address[1] == port
    finally:
        again.shutdown()


def test_default_listen_is_loopback_only() -> None:
    """Without --listen the exporter binds 127.0.0.1, never every interface."""
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    import inspect

    default = inspect.signature(MetricsServer).parameters["listen"].default
    assert parse_listen(default)[0] == "127.0.0.1"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("9464", "expected \\[host\\]:port"),
        ("localhost:http", "expected \\[host\\]:port"),
        ("[]:9464", "empty brackets"),
        ("::1:9464", "brackets"),
        ("127.0.0.1:70000", "0..65535"),
    ],
)
def test_listen_typos_fail_with_a_clear_message(value: str, fragment: str) -> None:
    """A malformed --listen value is refused with a message saying what is expected."""
    with pytest.raises(ValueError, match=fragment):
        parse_listen(value)


def _raw(server: MetricsServer, data: bytes) -> bytes:
    host, port = server.address
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/9.9\r\n\r\n", b"505"),
        (b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"501"),
    ],
)
def test_malformed_requests_get_a_json_error(
    server: MetricsServer, request_bytes: bytes, status: bytes
) -> None:
    """A request http.server itself refuses still gets a JSON error body, not an HTML page."""
    response = _raw(server, request_bytes)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == status
    assert b"Content-Type: application/json" in head
    assert "error" in json.loads(body)


def _contract_registry() -> CollectorRegistry:
    """The golden contract fixture through the real data path, with every self-metric."""
    from log_exporter.pipeline import Pipeline
    from log_exporter.prometheus.collector import StoreCollector
    from log_exporter.spec import compile_spec, load_default_spec
    from log_exporter.store import Store
    from log_exporter.values import Batch

    data = (Path(__file__).parents[1] / "fixtures" / "contract.jsonl").read_bytes()
    spec = load_default_spec()
    store = Store(spec.definitions)
    Pipeline(compile_spec(spec), store).feed(Batch(data.split(b"\n"), bytes_read=len(data)))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    return registry


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "text/plain;version=0.0.4",
        "application/openmetrics-text; version=1.0.0",
        # What Prometheus 2.x sends.
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
        "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ],
)
def test_fast_openmetrics_renders_the_same_bytes_as_client_python(accept: str) -> None:
    """Skipping name escaping changes no byte of the page, whatever format is negotiated."""
    registry = _contract_registry()
    fast, fast_type = select_encoder(accept)
    reference, reference_type = choose_encoder(accept)
    assert fast_type == reference_type
    assert fast(registry) == reference(registry)
