"""The nginx example spec on lines the real nginx writes: its `log_format ... escape=json`, as
the spec's comment gives it, served on loopback, then the log replayed through the example."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import binary, stop
from tests.support.serve import parse_metrics, run_cli, sample
from tests.support.waits import wait_for

EXAMPLE = Path(str(resources.files("log_exporter") / "specs" / "examples" / "nginx.toml"))

CONFIG = """
daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
{log_format}
  access_log {root}/access.json json_access;
  server {{
    listen 127.0.0.1:{port};
    location = /ok {{ return 200 "ok\\n"; }}
    location /api/ {{ return 200 "api\\n"; }}
    location = /fail {{ return 503; }}
  }}
}}
"""

# What the requests below must count as: (method, path, status).
REQUESTS = [
    ("GET", "/ok", 200),
    ("GET", "/ok", 200),
    ("HEAD", "/ok", 200),
    ("GET", "/api/orders", 200),
    ("POST", "/api/orders", 200),
    ("GET", "/fail", 503),
    ("GET", "/fail", 503),
]


def _log_format() -> str:
    """The `log_format` block exactly as the example spec's comment writes it."""
    comment = [line.removeprefix("#") for line in EXAMPLE.read_text("utf-8").splitlines()]
    start = next(i for i, line in enumerate(comment) if "log_format json_access" in line)
    block = []
    for line in comment[start:]:
        block.append(line)
        if line.rstrip().endswith(";"):
            return "\n".join(block)
    raise AssertionError("the example's log_format does not end")


@pytest.fixture
def nginx_log(tmp_path: Path) -> Path:
    """The access log of a real nginx that answered ``REQUESTS`` on loopback."""
    nginx = binary("nginx")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        CONFIG.format(root=tmp_path, port=port, log_format=_log_format()), encoding="utf-8"
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/probe")
                conn.getresponse().read()
            except OSError:
                return False
            finally:
                conn.close()
            return True

        wait_for(answers, "nginx to answer")
        for method, path, status in REQUESTS:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request(method, path, body=b"{}" if method == "POST" else None)
                response = conn.getresponse()
                response.read()
            finally:
                conn.close()
            assert response.status == status, (method, path)
    finally:
        # SIGQUIT: nginx's graceful stop, which finishes and flushes the log.
        stop(proc, signal.SIGQUIT, what="nginx")
    log = tmp_path / "access.json"
    assert log.exists(), (tmp_path / "error.log").read_text("utf-8", "replace")
    return log


def test_example_spec_counts_what_the_real_nginx_logged(nginx_log: Path) -> None:
    """Replayed through the nginx example, the real log gives the requests by method and status,
    the 5xx counter, and the latency histogram of the application's paths only."""
    lines = nginx_log.read_text("utf-8").splitlines()
    # The probe that waited for nginx, then the requests: every line a JSON object.
    assert len(lines) >= len(REQUESTS) + 1
    assert all(re.fullmatch(r"\{.*\}", line) for line in lines)
    result = run_cli(["replay", "--spec", str(EXAMPLE), str(nginx_log)])
    assert result.returncode == 0, result.stderr
    samples = parse_metrics(result.stdout)
    requests = "nginx_http_requests_total"
    assert sample(samples, requests, method="GET", status="200") == 3.0
    assert sample(samples, requests, method="HEAD", status="200") == 1.0
    assert sample(samples, requests, method="POST", status="200") == 1.0
    assert sample(samples, requests, method="GET", status="503") == 2.0
    assert sample(samples, "nginx_http_server_errors_total", status="503") == 2.0
    assert sample(samples, "nginx_http_request_duration_seconds_count") == 2.0
    assert sample(samples, "log_exporter_lines_total", result="malformed") == 0.0
