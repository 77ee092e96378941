"""--web-config: TLS and basic auth in the exporter-toolkit format, with real certificates."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Counter

from log_exporter.prometheus.server import MetricsServer
from log_exporter.prometheus.webconfig import WebConfigError, load_web_config
from tests.support.certs import CertSet, make_certs

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def password_hash() -> str:
    # Cost 4 keeps the suite fast; the cost factor does not change what is being tested.
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(2)
    return registry


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tls_server(tmp_path: Path, certs: CertSet, password_hash: str) -> Iterator[MetricsServer]:
    config = _write(
        tmp_path / "web.yml",
        f"tls_server_config:\n"
        f"  cert_file: {certs.server_cert}\n"
        f"  key_file: {certs.server_key}\n"
        f"basic_auth_users:\n"
        f"  prometheus: '{password_hash}'\n",
    )
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(config))
    srv.start()
    yield srv
    srv.shutdown()


def _client_context(certs: CertSet, *, with_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if with_client_cert:
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return ctx


def _get(
    url: str, ctx: ssl.SSLContext, user: str | None = None, password: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers.items()), err.read()


def _url(srv: MetricsServer, path: str) -> str:
    return f"https://localhost:{srv.address[1]}{path}"


def test_tls_with_right_password_serves_metrics(tls_server: MetricsServer, certs: CertSet) -> None:
    """Over HTTPS with the right user and password, /metrics answers 200 with the metrics."""
    status, _, body = _get(
        _url(tls_server, "/metrics"), _client_context(certs), "prometheus", PASSWORD
    )
    assert status == 200
    assert b"demo_events_total 2.0" in body


def test_wrong_password_is_401_with_basic_challenge(
    tls_server: MetricsServer, certs: CertSet
) -> None:
    """A wrong password is refused with 401 and a Basic challenge, never the metrics."""
    status, headers, body = _get(
        _url(tls_server, "/metrics"), _client_context(certs), "prometheus", "nope"
    )
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert b"demo_events" not in body


def test_unknown_user_is_401(tls_server: MetricsServer, certs: CertSet) -> None:
    """A user name that is not configured is refused even with a configured password."""
    status, _, _ = _get(_url(tls_server, "/metrics"), _client_context(certs), "mallory", PASSWORD)
    assert status == 401


@pytest.mark.parametrize("path", ["/metrics", "/", "/nowhere"])
def test_missing_credentials_are_401_on_every_endpoint_but_the_probes(
    tls_server: MetricsServer, certs: CertSet, path: str
) -> None:
    """Without credentials every endpoint but the health probes answers 401, so nothing
    leaks through a side door."""
    status, headers, body = _get(_url(tls_server, path), _client_context(certs))
    assert status == 401
    assert "WWW-Authenticate" in headers
    assert json.loads(body) == {"error": "unauthorized"}


@pytest.mark.parametrize(
    ("path", "payload"), [("/healthz", {"status": "ok"}), ("/readyz", {"ready": True})]
)
def test_health_probes_answer_without_credentials_over_tls(
    tls_server: MetricsServer, certs: CertSet, path: str, payload: dict[str, object]
) -> None:
    """/healthz and /readyz answer a client without credentials (as a kubelet probe is), over
    the same TLS, saying only that the exporter lives and is ready."""
    status, _, body = _get(_url(tls_server, path), _client_context(certs))
    assert status == 200
    assert json.loads(body) == payload


def test_garbage_authorization_header_is_401(tls_server: MetricsServer, certs: CertSet) -> None:
    """A malformed Authorization header is a 401, not a server error."""
    for header in (
        "Basic !!!not-base64!!!",
        "Bearer abc",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        # Not ASCII, so not base64 text at all: once a dropped connection instead of an answer.
        "Basic \xff\xfe",
        # Longer than bcrypt's 72 bytes, which bcrypt refuses to check: also once dropped.
        "Basic " + base64.b64encode(b"prometheus:" + b"x" * 100).decode(),
    ):
        request = urllib.request.Request(
            _url(tls_server, "/metrics"), headers={"Authorization": header}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, context=_client_context(certs), timeout=30)
        assert err.value.code == 401
        err.value.close()


def test_plain_http_against_tls_fails(tls_server: MetricsServer) -> None:
    """A client speaking plain HTTP to the TLS port gets no metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", tls_server.address[1], timeout=30)
    try:
        # Whether the request or the response fails first depends on when the TLS side hangs up.
        with pytest.raises((http.client.HTTPException, ConnectionError)):  # noqa: PT012
            conn.request("GET", "/metrics")
            conn.getresponse().read()
    finally:
        conn.close()


def test_client_not_trusting_the_ca_fails_verification(tls_server: MetricsServer) -> None:
    """The server presents the configured certificate: a client without its CA refuses it."""
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(
            _url(tls_server, "/healthz"), context=ssl.create_default_context(), timeout=30
        )
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)


def test_client_certificate_required(tmp_path: Path, certs: CertSet) -> None:
    """With client_ca_file, a scraper needs a client certificate signed by that CA."""
    config = _write(
        tmp_path / "web.yml",
        f"tls_server_config:\n"
        f"  cert_file: {certs.server_cert}\n"
        f"  key_file: {certs.server_key}\n"
        f"  client_ca_file: {certs.ca}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n",
    )
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(config))
    srv.start()
    try:
        status, _, _ = _get(_url(srv, "/metrics"), _client_context(certs, with_client_cert=True))
        assert status == 200
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            _get(_url(srv, "/metrics"), _client_context(certs))
    finally:
        srv.shutdown()


def test_basic_auth_without_tls(tmp_path: Path, password_hash: str) -> None:
    """basic_auth_users alone protects a plain HTTP listener."""
    config = _write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{password_hash}'\n")
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(config))
    srv.start()
    try:
        url = f"http://127.0.0.1:{srv.address[1]}/metrics"
        ctx = ssl.create_default_context()
        assert _get(url, ctx)[0] == 401
        assert _get(url, ctx, "prometheus", PASSWORD)[0] == 200
    finally:
        srv.shutdown()


def test_relative_cert_paths_resolve_from_the_config_directory(
    tmp_path: Path, certs: CertSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cert_file/key_file relative paths are read next to the config file, whatever the cwd."""
    conf_dir = tmp_path / "conf"
    (conf_dir / "tls").mkdir(parents=True)
    (conf_dir / "tls" / "server.crt").write_bytes(certs.server_cert.read_bytes())
    (conf_dir / "tls" / "server.key").write_bytes(certs.server_key.read_bytes())
    config = _write(
        conf_dir / "web.yml",
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n",
    )
    monkeypatch.chdir(tmp_path)
    loaded = load_web_config(config)
    assert loaded.tls is not None
    assert loaded.tls.cert_file == conf_dir / "tls" / "server.crt"
    assert loaded.ssl_context() is not None


def test_htpasswd_2y_hash_is_accepted(tmp_path: Path) -> None:
    """Hashes made by ``htpasswd -B`` ($2y$ prefix) verify like $2b$ ones."""
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
    config = load_web_config(_write(tmp_path / "web.yml", f"basic_auth_users:\n  u: '{hashed}'\n"))
    assert config.authorized("Basic " + base64.b64encode(b"u:pw").decode())
    assert not config.authorized("Basic " + base64.b64encode(b"u:px").decode())


def test_successful_check_is_cached_so_scrapes_skip_bcrypt(
    tmp_path: Path, password_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeated scrapes with the same credentials pay bcrypt once; failures are never cached."""
    config = load_web_config(
        _write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{password_hash}'\n")
    )
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    # A spy around the real bcrypt (not a stand-in): the check still runs for real.
    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    good = "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    bad = "Basic " + base64.b64encode(b"prometheus:wrong").decode()
    assert all(config.authorized(good) for _ in range(5))
    assert len(calls) == 1
    assert not any(config.authorized(bad) for _ in range(3))
    assert len(calls) == 4


def test_empty_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    """An empty web config file is valid and enables neither TLS nor auth."""
    config = load_web_config(_write(tmp_path / "web.yml", ""))
    assert config.tls is None
    assert config.ssl_context() is None
    assert config.authorized(None)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tls_config:\n  cert_file: a\n", "top level field 'tls_config'"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
            "[tls_server_config] field 'cipher_suites'",
        ),
        ("tls_server_config:\n  cert_file: a\n", "[tls_server_config] field 'key_file': required"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
            "field 'client_auth_type'",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "field 'client_ca_file': required",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS09\n",
            "field 'min_version'",
        ),
        (
            "basic_auth_users:\n  alice: hunter2\n",
            "[basic_auth_users] field 'alice': must be a bcrypt",
        ),
        ("basic_auth_users: [alice]\n", "[basic_auth_users]: must be a mapping"),
        ("- just\n- a list\n", "must be a mapping"),
        ("tls_server_config: [\n", "invalid YAML"),
    ],
)
def test_bad_config_fails_at_start_naming_file_and_field(
    tmp_path: Path, text: str, fragment: str
) -> None:
    """Each mistake in the web config is refused with the file and the field in the message."""
    path = _write(tmp_path / "web.yml", text)
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)


def test_unloadable_certificate_names_the_file(tmp_path: Path, certs: CertSet) -> None:
    """A certificate that cannot be loaded fails at start, naming the file and the field."""
    bogus = _write(tmp_path / "bogus.crt", "not a certificate\n")
    path = _write(
        tmp_path / "web.yml",
        f"tls_server_config:\n  cert_file: {bogus}\n  key_file: {certs.server_key}\n",
    )
    with pytest.raises(WebConfigError) as err:
        MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(path))
    assert str(path) in str(err.value)
    assert "cert_file" in str(err.value)
    assert str(bogus) in str(err.value)


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    """A --web-config path that does not exist fails with the path in the message."""
    with pytest.raises(WebConfigError, match="cannot read web config"):
        load_web_config(tmp_path / "absent.yml")
