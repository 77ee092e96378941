"""The web config under hostile or mistaken input: authentication that never queues, failed
checks that all last alike, hashes checked by form and capped cost, and reloads that run beside
serving and survive any typo, FIFO or oversized file, against real sockets and files."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import ssl
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from log_exporter.prometheus import webconfig
from log_exporter.prometheus.server import MetricsServer
from log_exporter.prometheus.webconfig import (
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_web_config,
)
from tests.support.certs import CertSet, make_certs
from tests.support.serve import run_cli
from tests.support.waits import wait_for

# Fast enough for a test, slow enough that a refusal after a check is told from one without.
COST = 4
# A request on loopback answers in milliseconds; before the fix, one waited a full second for a
# hash slot, and a reload in the accept loop froze every request for seconds.
PROMPT_SECONDS = 0.5


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=COST)).decode()


@pytest.fixture
def servers() -> Iterator[list[MetricsServer]]:
    started: list[MetricsServer] = []
    yield started
    for srv in started:
        srv.shutdown()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(2)
    return registry


def _serve(path: Path, servers: list[MetricsServer]) -> MetricsServer:
    srv = MetricsServer(_registry(), listen="127.0.0.1:0", web_config=load_web_config(path))
    srv.start()
    servers.append(srv)
    return srv


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _get(srv: MetricsServer, auth: str | None = None, ca: Path | None = None) -> tuple[int, float]:
    """Status and seconds of one GET /metrics on a new connection (TLS when ``ca`` is given)."""
    started = time.perf_counter()
    conn: http.client.HTTPConnection
    if ca is None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.address[1], timeout=10)
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("localhost", srv.address[1], context=ctx, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={} if auth is None else {"Authorization": auth})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def _config_in_force(srv: MetricsServer) -> WebConfig:
    live = srv._site.web_config
    assert live is not None
    return live.current()[0]


def _tls_text(cert: Path | str, key: Path | str, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n{extra}"


# -- authentication ---------------------------------------------------------------------------


def test_wrong_password_is_refused_at_once_when_every_hash_slot_is_busy(
    tmp_path: Path, servers: list[MetricsServer], hashed: str
) -> None:
    """With every bcrypt slot taken (as by a flood), a wrong password gets its 401 at once
    instead of waiting in a handler thread, and cached valid credentials still pass."""
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: {hashed}\n")
    srv = _serve(path, servers)
    good = _basic("alice", "right")
    assert _get(srv, good)[0] == 200  # cached from now on
    config = _config_in_force(srv)
    for _ in range(webconfig.MAX_CONCURRENT_CHECKS):
        assert config.checks.acquire(timeout=1)
    try:
        status, seconds = _get(srv, _basic("alice", "wrong"))
        assert status == 401
        assert seconds < PROMPT_SECONDS, seconds
        status, seconds = _get(srv, good)
        assert status == 200
        assert seconds < PROMPT_SECONDS, seconds
    finally:
        for _ in range(webconfig.MAX_CONCURRENT_CHECKS):
            config.checks.release()


def _median_refusal(config: WebConfig, header: str) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        assert not config.authorized(header)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_a_user_hashed_at_a_lower_cost_is_refused_as_slowly_as_an_unknown_one() -> None:
    """A wrong password for a user hashed at cost 4 takes as long as one for an unknown user
    (checked at the highest cost, 11), so the answer time does not single out that user."""
    low = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()
    high = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=11)).decode()
    config = parse_web_config(
        {"basic_auth_users": {"alice": low, "bob": high}}, source="web.yml", base_dir=Path(".")
    )
    unknown = _median_refusal(config, _basic("mallory", "wrong"))
    alice = _median_refusal(config, _basic("alice", "wrong"))
    # Cost 4 is 1/128 of the work of cost 11; padded to the same floor they differ by noise.
    assert alice > 0.5 * unknown, (alice, unknown)


def test_hashes_are_checked_by_form_without_a_bcrypt_check_per_user(
    hashed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading nine users runs no bcrypt check at all: a reload costs one dummy hash, not one
    check per user."""
    checks: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        checks.append(hashed_password)
        return real(password, hashed_password)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    users = {f"user{i}": hashed for i in range(9)}
    config = parse_web_config({"basic_auth_users": users}, source="web.yml", base_dir=Path("."))
    assert len(config.users) == 9
    assert checks == []


def test_a_cost_above_the_cap_is_refused_naming_the_user(tmp_path: Path, hashed: str) -> None:
    """A hash at cost 15 (each wrong try 1.5 s of a core) is refused at load, naming the user
    and the cap, without ever being checked."""
    too_costly = hashed[:4] + "15" + hashed[6:]
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  carol: '{too_costly}'\n")
    started = time.perf_counter()
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    assert time.perf_counter() - started < PROMPT_SECONDS
    message = str(err.value)
    assert str(path) in message and "'carol'" in message
    assert f"cost 15 is outside 4..{webconfig.MAX_BCRYPT_COST}" in message


@pytest.mark.parametrize(
    "malformed",
    [
        "$2b$10$" + "!" * 53,  # outside bcrypt's alphabet
        "$2b$1x$" + "a" * 53,  # no cost
        "$2b$10$" + "a" * 52,  # one character short
        "$2x$10$" + "a" * 53,  # not a version htpasswd writes
    ],
)
def test_a_malformed_hash_is_refused_naming_the_user(malformed: str) -> None:
    """Hashes that are not bcrypt's form are refused at load, naming the user."""
    with pytest.raises(WebConfigError, match="field 'dave': must be a bcrypt hash"):
        parse_web_config(
            {"basic_auth_users": {"dave": malformed}}, source="web.yml", base_dir=Path(".")
        )


# -- reloads ----------------------------------------------------------------------------------


def _live(tmp_path: Path, certs: CertSet, users: str = "") -> tuple[Path, Path]:
    live = tmp_path / "live"
    live.mkdir()
    shutil.copyfile(certs.server_cert, live / "tls.crt")
    shutil.copyfile(certs.server_key, live / "tls.key")
    path = live / "web.yml"
    path.write_text(_tls_text("tls.crt", "tls.key") + users)
    return live, path


def _reloads(srv: MetricsServer) -> dict[str, int]:
    reloads = srv.web_config_reloads
    assert reloads is not None
    return reloads


@pytest.mark.parametrize(
    "typo",
    [
        "  client_auth_type: [NoClientCert]\n",
        "  min_version: [TLS12]\n",
        "  prefer_server_cipher_suites: {yes: no}\n",
    ],
)
def test_a_typo_in_a_reloaded_tls_config_keeps_serving_and_is_counted(
    tmp_path: Path, servers: list[MetricsServer], certs: CertSet, typo: str
) -> None:
    """A value of the wrong type in a reloaded TLS config is a counted failed reload: the port
    keeps answering with the config in force, and the fixed file is taken."""
    _, path = _live(tmp_path, certs)
    srv = _serve(path, servers)
    path.write_text(_tls_text("tls.crt", "tls.key", typo))
    reloads = _reloads(srv)
    wait_for(lambda: _get(srv, ca=certs.ca)[0] == 200 and reloads["failure"], "the failed reload")
    assert _get(srv, ca=certs.ca)[0] == 200
    path.write_text(_tls_text("tls.crt", "tls.key", "  client_auth_type: NoClientCert\n"))
    wait_for(lambda: _get(srv, ca=certs.ca)[0] == 200 and reloads["success"], "the fixed file")
    assert reloads["failure"] == 1


def test_deep_yaml_in_a_reloaded_plain_config_is_counted_and_logged(
    tmp_path: Path,
    servers: list[MetricsServer],
    hashed: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """5000-deep YAML reloaded over plain HTTP is a failed reload, counted and logged at error,
    while the users in force keep being served."""
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: {hashed}\n")
    srv = _serve(path, servers)
    good = _basic("alice", "right")
    path.write_text("basic_auth_users: " + "[" * 5000 + "]" * 5000 + "\n")
    reloads = _reloads(srv)
    wait_for(lambda: _get(srv, good)[0] == 200 and reloads["failure"], "the failed reload")
    assert _get(srv, _basic("alice", "wrong"))[0] == 401
    failures = [r for r in caplog.records if r.getMessage().startswith("web config reload failed")]
    assert failures and failures[0].levelname == "ERROR"
    assert "nested too deeply" in str(failures[0].__dict__["error"])


def test_a_certificate_renewal_with_nine_costly_users_does_not_freeze_serving(
    tmp_path: Path, servers: list[MetricsServer], certs: CertSet
) -> None:
    """With nine users at bcrypt cost 12, a certificate renewal is reloaded beside serving:
    every request made meanwhile is answered promptly."""
    costly = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=12)).decode()
    users = "basic_auth_users:\n" + "".join(f"  user{i}: '{costly}'\n" for i in range(9))
    live, path = _live(tmp_path, certs, users)
    srv = _serve(path, servers)
    good = _basic("user0", "right")
    assert _get(srv, good, certs.ca)[0] == 200  # cached from now on
    shutil.copyfile(certs.server_cert, live / "tls.crt.tmp")
    os.replace(live / "tls.crt.tmp", live / "tls.crt")  # renewed: a new file at the path
    reloads = _reloads(srv)
    slowest = 0.0
    for _ in range(2000):  # bounded: a reload takes a second or two at most
        status, seconds = _get(srv, good, certs.ca)
        assert status == 200
        slowest = max(slowest, seconds)
        if reloads["success"]:
            break
    assert reloads["success"] == 1
    assert slowest < 1.0, slowest


def test_a_fifo_named_as_cert_file_does_not_hang_serving(
    tmp_path: Path, servers: list[MetricsServer], certs: CertSet
) -> None:
    """A FIFO named as cert_file on reload is refused naming the file; serving goes on."""
    live, path = _live(tmp_path, certs)
    fifo = live / "fifo.crt"
    os.mkfifo(fifo)
    srv = _serve(path, servers)
    try:
        path.write_text(_tls_text("fifo.crt", "tls.key"))
        reloads = _reloads(srv)
        wait_for(lambda: _get(srv, ca=certs.ca)[0] == 200 and reloads["failure"], "the refusal")
        status, seconds = _get(srv, ca=certs.ca)
        assert status == 200 and seconds < PROMPT_SECONDS
        with pytest.raises(WebConfigError, match=r"fifo\.crt is not a regular file"):
            load_web_config(path).ssl_context()
    finally:
        # Should a reader be blocked opening it, a writer lets it go.
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "directory"])
def test_a_web_config_that_is_not_a_regular_file_is_refused_naming_it(
    tmp_path: Path, special: str
) -> None:
    """/dev/zero, a FIFO or a directory as the web config is a config error naming the path,
    read no further than its first bytes."""
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "web.yml"
        os.mkfifo(path)
    elif special == "directory":
        path = tmp_path
    with pytest.raises(WebConfigError, match="not a regular file") as err:
        load_web_config(path)
    assert str(path) in str(err.value)


def test_an_oversized_web_config_is_refused(tmp_path: Path) -> None:
    """A web config over the size bound is refused naming it, not parsed."""
    path = tmp_path / "web.yml"
    path.write_text("# padding\n" * (getattr(webconfig, "MAX_FILE_BYTES", 1 << 20) // 10 + 1))
    with pytest.raises(WebConfigError, match="larger than"):
        load_web_config(path)


def test_a_typo_at_start_exits_2_with_one_line_naming_file_and_field(tmp_path: Path) -> None:
    """`client_auth_type: [NoClientCert]` at start stops serve with exit 2 and one log line
    naming the file and field, no traceback."""
    config = tmp_path / "web.yml"
    config.write_text(_tls_text("a.crt", "a.key", "  client_auth_type: [NoClientCert]\n"))
    result = run_cli(["serve", "--file", "x", "--web.config.file", str(config)], cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    message = json.loads(lines[0])["msg"]
    assert str(config) in message and "client_auth_type" in message


# -- the loader against any structure ---------------------------------------------------------

_FIELDS = sorted(
    webconfig._TOP_KEYS | webconfig._TLS_KEYS | webconfig._HTTP_KEYS | set(webconfig._HEADERS)
    | set(webconfig._NOT_SUPPORTED) | {"alice"}
)  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.sampled_from(["NoClientCert", "TLS12", "TLS13", "CurveP256", "nosniff", "x.crt"])
)
_yaml_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)


@given(
    st.dictionaries(st.sampled_from(sorted(webconfig._TOP_KEYS)), _yaml_values, max_size=3)
    | _yaml_values
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_yaml_structure_gives_a_config_or_an_error_naming_file_and_field(
    tmp_path_factory: pytest.TempPathFactory, data: Any
) -> None:
    """Any YAML document gives a config or a WebConfigError naming the file, never another
    exception: the reload catching config errors can rely on it."""
    path = tmp_path_factory.mktemp("fuzz") / "web.yml"
    path.write_text(yaml.safe_dump(data))
    try:
        config = load_web_config(path)
    except WebConfigError as exc:
        # Either outcome is right; an error must name the file (pytest.raises cannot say "or").
        assert str(exc).startswith(f"{path}: "), exc  # noqa: PT017
        return
    assert isinstance(config, WebConfig)
