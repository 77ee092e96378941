"""The web config's TLS policy and headers as exporter-toolkit documents them, judged by a real
TLS client (Python's ssl) against real certificates, and its reload when the files change."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from log_exporter.prometheus import webconfig
from log_exporter.prometheus.server import MetricsServer
from log_exporter.prometheus.webconfig import WebConfigError, load_web_config
from tests.support.certs import CertSet, make_certs
from tests.support.waits import wait_for


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    """Certificates of a second, unrelated CA."""
    return make_certs(tmp_path_factory.mktemp("other"))


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(2)
    return registry


def _serve(tmp_path: Path, text: str) -> MetricsServer:
    path = tmp_path / "web.yml"
    path.write_text(text, encoding="utf-8")
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(path))
    srv.start()
    return srv


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[MetricsServer]]:
    started: list[MetricsServer] = []
    yield started
    for srv in started:
        srv.shutdown()


def _tls(certs: CertSet, **extra: str) -> str:
    lines = [f"  cert_file: {certs.server_cert}", f"  key_file: {certs.server_key}"]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "tls_server_config:\n" + "\n".join(lines) + "\n"


def _client(
    ca: Path,
    cert: CertSet | None = None,
    *,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.client_cert), str(cert.client_key))
    if maximum is not None:
        ctx.maximum_version = maximum
    if minimum is not None:
        ctx.minimum_version = minimum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def _get(
    srv: MetricsServer, ctx: ssl.SSLContext, path: str = "/metrics"
) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection("localhost", srv.address[1], context=ctx, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def _refused(srv: MetricsServer, ctx: ssl.SSLContext) -> bool:
    """True when the handshake (or the first read after it, for TLS 1.3 client certs) fails."""
    try:
        _get(srv, ctx)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected):
        return True
    return False


def test_require_and_verify_accepts_a_cert_of_another_ca(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet, other_certs: CertSet
) -> None:
    """RequireAndVerifyClientCert: no certificate and a certificate from another CA are refused,
    one signed by client_ca_file is served."""
    srv = _serve(tmp_path, _tls(certs, client_auth_type="RequireAndVerifyClientCert",
                                client_ca_file=str(certs.ca)))  # fmt: skip
    serve.append(srv)
    assert _get(srv, _client(certs.ca, certs)).status == 200
    assert _refused(srv, _client(certs.ca))
    assert _refused(srv, _client(certs.ca, other_certs))


def test_verify_if_given_serves_no_cert_or_a_good_one_and_refuses_a_foreign_one(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet, other_certs: CertSet
) -> None:
    """VerifyClientCertIfGiven: no certificate is served, a good one too, another CA's refused."""
    srv = _serve(tmp_path, _tls(certs, client_auth_type="VerifyClientCertIfGiven",
                                client_ca_file=str(certs.ca)))  # fmt: skip
    serve.append(srv)
    assert _get(srv, _client(certs.ca)).status == 200
    assert _get(srv, _client(certs.ca, certs)).status == 200
    assert _refused(srv, _client(certs.ca, other_certs))


def test_min_version_tls13_serves_a_tls12_client(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet
) -> None:
    """min_version: TLS13 refuses a client that speaks at most TLS 1.2 and serves TLS 1.3."""
    srv = _serve(tmp_path, _tls(certs, min_version="TLS13"))
    serve.append(srv)
    assert _refused(srv, _client(certs.ca, maximum=ssl.TLSVersion.TLSv1_2))
    assert _get(srv, _client(certs.ca)).status == 200


def test_max_version_tls12_serves_a_tls13_only_client(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet
) -> None:
    """max_version: TLS12 refuses a client that insists on TLS 1.3."""
    srv = _serve(tmp_path, _tls(certs, max_version="TLS12"))
    serve.append(srv)
    assert _refused(srv, _client(certs.ca, minimum=ssl.TLSVersion.TLSv1_3))
    assert _get(srv, _client(certs.ca, maximum=ssl.TLSVersion.TLSv1_2)).status == 200


def test_cipher_suites_limit_tls_1_2(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet
) -> None:
    """cipher_suites in Go's names limits TLS 1.2: a client offering only another suite is
    refused, one offering the configured suite negotiates it."""
    suites = "[TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]"
    srv = _serve(tmp_path, _tls(certs, max_version="TLS12", cipher_suites=suites))
    serve.append(srv)
    tls12 = ssl.TLSVersion.TLSv1_2
    assert _refused(srv, _client(certs.ca, maximum=tls12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    ctx = _client(certs.ca, maximum=tls12)
    with (
        socket.create_connection(("127.0.0.1", srv.address[1]), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher = tls.cipher()
    assert cipher is not None and cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"


@pytest.mark.skipif(ssl.OPENSSL_VERSION_INFO < (3,), reason="one curve needs OpenSSL 3")
def test_curve_preference_ignored(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet
) -> None:
    """curve_preferences of one curve restricts the key exchange to it: a client offering only
    another curve is refused, one offering it is served."""
    srv = _serve(tmp_path, _tls(certs, curve_preferences="[CurveP384]"))
    serve.append(srv)
    p256, p384 = _client(certs.ca), _client(certs.ca)
    p256.set_ecdh_curve("prime256v1")
    p384.set_ecdh_curve("secp384r1")
    assert _refused(srv, p256)
    assert _get(srv, p384).status == 200


def test_configured_headers_missing_from_answers(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet
) -> None:
    """http_server_config.headers go on every answer: metrics, 404 and 401 alike."""
    import bcrypt

    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    srv = _serve(
        tmp_path,
        "http_server_config:\n  http2: false\n  headers:\n"
        "    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
        "    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\n"
        f"basic_auth_users:\n  u: '{hashed}'\n",
    )
    serve.append(srv)
    conn = http.client.HTTPConnection("127.0.0.1", srv.address[1], timeout=30)
    for path, status in (("/metrics", 401), ("/nowhere", 401)):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == status
        assert response.getheader("X-Frame-Options") == "deny"
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Strict-Transport-Security") == "max-age=31536000"
        assert response.getheader("X-XSS-Protection") is None  # blank means unset
    conn.close()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("http_server_config:\n  http2: true\n", "field 'http2': HTTP/2 is not supported"),
        ("http_server_config:\n  headers:\n    Server: x\n", "'Server' can not be configured"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "deny, sameorigin"),
        ("rate_limit:\n  burst: 1\n", "field 'rate_limit'"),
        ("tls_server_config:\n  cert: x\n  key_file: b\n", "field 'cert': inline PEM"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  curve_preferences: [X25519, CurveP256]\n",
            "field 'curve_preferences': Python's ssl can restrict the handshake to one curve",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [P256]\n",
            "unknown curve 'P256'",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
            "field 'client_allowed_sans'",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequestClientCert\n  client_ca_file: c\n",
            "RequestClientCert asks for a certificate without verifying it",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAnyClientCert\n  client_ca_file: c\n",
            "RequireAnyClientCert requires a certificate without verifying it",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
            "client_ca_file is set without a client auth policy",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [RC4]\n",
            "unknown cipher 'RC4'",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  min_version: TLS13\n  max_version: TLS12\n",
            "field 'max_version': TLS12 is below min_version TLS13",
        ),
    ],
)
def test_unsupported_field_silently_ignored(tmp_path: Path, text: str, fragment: str) -> None:
    """What Python's ssl cannot do, or the exporter does not implement, is refused at start
    naming the file and the field."""
    path = tmp_path / "web.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)


def test_tls13_suite_names_are_accepted_as_in_go(tmp_path: Path, certs: CertSet) -> None:
    """Go's TLS 1.3 suite names are accepted (and, as in Go, do not restrict TLS 1.3)."""
    path = tmp_path / "web.yml"
    path.write_text(_tls(certs, cipher_suites="[TLS_AES_128_GCM_SHA256]"), encoding="utf-8")
    assert load_web_config(path).ssl_context() is not None


# -- reload ---------------------------------------------------------------------------------


def _install(source: CertSet, live: Path) -> None:
    """Put ``source``'s server certificate and key at ``live`` as cert-manager renews a Secret:
    new files swapped in by rename."""
    for name, src in (("tls.key", source.server_key), ("tls.crt", source.server_cert)):
        shutil.copyfile(src, live / f".{name}.tmp")
        os.replace(live / f".{name}.tmp", live / name)


def _live_config(tmp_path: Path, certs: CertSet) -> tuple[Path, Path]:
    live = tmp_path / "live"
    live.mkdir()
    _install(certs, live)
    path = live / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
    return live, path


def test_renewed_certificate_needs_a_restart(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet, other_certs: CertSet
) -> None:
    """A certificate renewed on disk serves the next TLS handshake without a restart: a client
    trusting only the new CA connects, one trusting only the old CA no longer does."""
    live, path = _live_config(tmp_path, certs)
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(path))
    srv.start()
    serve.append(srv)
    assert _get(srv, _client(certs.ca)).status == 200
    _install(other_certs, live)
    wait_for(lambda: not _refused(srv, _client(other_certs.ca)), "the renewed certificate")
    assert _refused(srv, _client(certs.ca))
    assert srv.web_config_reloads is not None and srv.web_config_reloads["success"] >= 1


def test_broken_new_config_stops_serving(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet, other_certs: CertSet
) -> None:
    """An unusable new config (invalid YAML, then a key that does not match its certificate) is
    counted as a failed reload and the config in force keeps serving; once the file it names is
    fixed, it is taken."""
    live, path = _live_config(tmp_path, certs)
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(path))
    srv.start()
    serve.append(srv)
    path.write_text("tls_server_config: [\n")
    reloads = srv.web_config_reloads
    assert reloads is not None
    wait_for(lambda: _get(srv, _client(certs.ca)) and reloads["failure"], "a failed reload")
    assert _get(srv, _client(certs.ca)).status == 200
    path.write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: other.key\n")
    shutil.copyfile(other_certs.server_key, live / "other.key")
    wait_for(lambda: _get(srv, _client(certs.ca)) and reloads["failure"] >= 2, "a second failure")
    assert _get(srv, _client(certs.ca)).status == 200
    assert reloads["success"] == 0
    # Fixing the file only the new config names is enough: it is watched too.
    shutil.copyfile(certs.server_key, live / "other.key.tmp")
    os.replace(live / "other.key.tmp", live / "other.key")  # whole, as cert-manager writes
    # The files are looked at when a client connects, as exporter-toolkit reads them per request.
    wait_for(lambda: _get(srv, _client(certs.ca)) and reloads["success"], "the fixed key taken")
    assert reloads["failure"] == 2  # nothing changed between the two failures and the fix
    assert _get(srv, _client(certs.ca)).status == 200


def test_tls_switched_off_by_a_reload(
    tmp_path: Path, serve: list[MetricsServer], certs: CertSet
) -> None:
    """A new config without TLS is refused (switching TLS needs a restart): TLS keeps serving."""
    _, path = _live_config(tmp_path, certs)
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(path))
    srv.start()
    serve.append(srv)
    path.write_text("")
    reloads = srv.web_config_reloads
    assert reloads is not None
    wait_for(lambda: _get(srv, _client(certs.ca)) and reloads["failure"], "the refused reload")
    assert srv.scheme == "https"
    assert _get(srv, _client(certs.ca)).status == 200


def test_check_interval_is_short() -> None:
    """Changes are looked for at most once a second, so a renewal takes effect within about one."""
    assert webconfig.CHECK_INTERVAL_SECONDS <= 1.0
