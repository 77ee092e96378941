"""``serve --web-config`` judged by curl, the client operators reach for first."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from tests.support.certs import make_certs
from tests.support.processes import binary
from tests.support.serve import Exporter, append
from tests.support.waits import DEADLINE

pytestmark = pytest.mark.slow


@pytest.fixture
def curl() -> str:
    """The path of a real curl; skips where it is missing, before anything is started."""
    return binary("curl")


def _curl(curl: str, *args: str) -> tuple[int, str]:
    """(exit code, HTTP status or '' when no response) of one curl call."""
    result = subprocess.run(
        [curl, "--silent", "--output", "/dev/null", "--write-out", "%{http_code}",
         "--max-time", "30", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )  # fmt: skip
    return result.returncode, result.stdout.strip()


def test_curl_against_tls_and_basic_auth(
    tmp_path: Path, curl: str, contract_line: Callable[..., bytes]
) -> None:
    """curl with the CA and the password gets 200; wrong or no password 401; plain HTTP fails."""
    certs = make_certs(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.jwt_validated", outcome="success"))
    client = ssl.create_default_context(cafile=str(certs.ca))
    args = ["--file", str(log), "--web.config.file", str(web)]
    with Exporter(
        tmp_path, args, scheme="https", context=client, auth=("prometheus", "s3cret")
    ) as exporter:
        exporter.wait_healthy()
        url = f"https://localhost:{exporter.port}/metrics"
        ca = ["--cacert", str(certs.ca)]
        assert _curl(curl, *ca, "--user", "prometheus:s3cret", url) == (0, "200")
        assert _curl(curl, *ca, "--user", "prometheus:wrong", url) == (0, "401")
        assert _curl(curl, *ca, url) == (0, "401")
        # Plain HTTP to the TLS port: the handshake fails and curl gets no HTTP answer at all.
        code, status = _curl(curl, f"http://127.0.0.1:{exporter.port}/metrics")
        assert (code != 0, status) == (True, "000")
        # Without the CA, curl refuses the certificate (exit 60): the TLS is real, not a stub.
        assert _curl(curl, "--user", "prometheus:s3cret", url)[0] == 60
        assert exporter.stop() == 0
