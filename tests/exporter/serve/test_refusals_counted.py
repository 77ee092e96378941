"""Failed scrapes are visible: every answer counted by status code, every failed TLS handshake
by reason, and one log line per kind of failure at a bounded rate (real TLS clients on
loopback, real certificates)."""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Counter

from log_exporter.prometheus.connections import RateLimitedLog
from log_exporter.prometheus.server import MetricsServer
from log_exporter.prometheus.webconfig import load_web_config
from tests.support.certs import CertSet, make_certs
from tests.support.waits import wait_for


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _serve(tmp_path: Path, text: str) -> MetricsServer:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(2)
    path = tmp_path / "web.yml"
    path.write_text(text, encoding="utf-8")
    srv = MetricsServer(registry, listen="127.0.0.1:0", web_config=load_web_config(path))
    srv.start()
    return srv


@pytest.fixture
def mtls(tmp_path: Path, certs: CertSet) -> Iterator[MetricsServer]:
    srv = _serve(
        tmp_path,
        f"tls_server_config:\n"
        f"  cert_file: {certs.server_cert}\n"
        f"  key_file: {certs.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {certs.ca}\n",
    )
    yield srv
    srv.shutdown()


@pytest.fixture
def with_auth(tmp_path: Path) -> Iterator[MetricsServer]:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    srv = _serve(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    yield srv
    srv.shutdown()


def _status(srv: MetricsServer, path: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_answers_are_counted_by_status_code(with_auth: MetricsServer) -> None:
    """A 401 for missing or wrong credentials, a 200 with valid ones and the probes' 200s
    are each counted under their code."""
    good = "Basic " + base64.b64encode(b"prometheus:secret").decode()
    bad = "Basic " + base64.b64encode(b"prometheus:wrong").decode()
    assert _status(with_auth, "/metrics") == 401
    assert _status(with_auth, "/metrics", {"Authorization": bad}) == 401
    assert _status(with_auth, "/metrics", {"Authorization": good}) == 200
    assert _status(with_auth, "/healthz") == 200
    assert _status(with_auth, "/nowhere", {"Authorization": good}) == 404
    assert with_auth.http_requests == {"401": 2, "200": 2, "404": 1}


def _handshake(srv: MetricsServer, context: ssl.SSLContext) -> None:
    """A TLS client's attempt at one request; whatever the server refuses is swallowed."""
    try:
        with (
            socket.create_connection(srv.address, timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            tls.recv(1024)
    except (OSError, ssl.SSLError):
        pass


def test_tls_handshake_failures_are_counted_by_reason(
    mtls: MetricsServer, certs: CertSet, tmp_path: Path
) -> None:
    """A client without a certificate, one with a certificate of another CA and plain HTTP
    on the TLS port are each counted under their reason."""
    other = make_certs(tmp_path)
    no_cert = ssl.create_default_context(cafile=str(certs.ca))
    foreign = ssl.create_default_context(cafile=str(certs.ca))
    foreign.load_cert_chain(str(other.client_cert), str(other.client_key))
    _handshake(mtls, no_cert)
    _handshake(mtls, foreign)
    with socket.create_connection(mtls.address, timeout=10) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while plain.recv(1024):
                pass
        except ConnectionResetError:
            pass  # the TLS side's alert, then the close
    failures = wait_for(
        lambda: mtls.tls_handshake_failures,
        "three failed handshakes",
        until=lambda f: f is not None and sum(f.values()) >= 3,
    )
    assert failures == {"no_client_certificate": 1, "bad_certificate": 1, "plain_http_on_tls": 1}


def test_one_log_line_per_kind_a_minute_with_the_count_since(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Repeated failures of one kind log one line a minute, which says how many there were since
    the previous line; another kind logs its own line."""
    now = [1000.0]
    limited = RateLimitedLog("refused", interval=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="log_exporter.server"):
        for _ in range(5):
            limited.note("http_401")
        limited.note("http_400")
        now[0] += 61.0
        limited.note("http_401")
    lines = [(r.getMessage(), getattr(r, "count_since_last_line", None)) for r in caplog.records]
    assert lines == [("refused: http_401", 1), ("refused: http_400", 1), ("refused: http_401", 5)]


def test_a_tcp_probe_on_the_tls_port_is_not_a_handshake_failure(mtls: MetricsServer) -> None:
    """A connection closed without a handshake (a kubelet tcpSocket probe) is not counted; the
    plain HTTP request after it is."""
    socket.create_connection(mtls.address, timeout=10).close()
    with socket.create_connection(mtls.address, timeout=10) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while plain.recv(1024):
                pass
        except ConnectionResetError:
            pass
    failures = wait_for(
        lambda: mtls.tls_handshake_failures,
        "the plain HTTP request's failure",
        until=lambda f: f is not None and sum(f.values()) >= 1,
    )
    assert failures == {"plain_http_on_tls": 1}
