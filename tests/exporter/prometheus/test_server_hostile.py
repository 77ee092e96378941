"""The exporter's HTTP side under hostile clients: slow ones, floods, too few file descriptors.

In-process servers for what one connection shows (headers, keep-alive, the caps); real
``log-exporter serve`` processes under a low descriptor limit for floods, measured from outside
(/proc: threads, CPU time).
"""

from __future__ import annotations

import http.client
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from log_exporter.prometheus.server import MetricsServer
from tests.support.contract import contract_line
from tests.support.ports import free_port
from tests.support.serve import append, exporter_argv
from tests.support.slowclient import SlowClients
from tests.support.waits import wait_for


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(3)
    srv = MetricsServer(registry, listen="127.0.0.1:0")
    srv.start()
    yield srv
    srv.shutdown()


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on an open connection and read exactly one response (by its length)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head


def test_server_header_names_no_python_version(server: MetricsServer) -> None:
    """The Server header names the exporter and its version, not the Python that runs it."""
    conn = http.client.HTTPConnection(*server.address, timeout=30)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.getheader("Server") == f"log-exporter/{_version()}"


def _version() -> str:
    from log_exporter import __version__

    return __version__


def test_http10_keep_alive_answer_says_keep_alive(server: MetricsServer) -> None:
    """An HTTP/1.0 client asking for keep-alive is told it got it, and can send a second request."""
    request = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(server.address, timeout=30) as sock:
        head = _exchange(sock, request)
        assert b"\r\nConnection: keep-alive" in head
        assert _exchange(sock, request).startswith(b"HTTP/1.1 200")


def test_keep_alive_scrapes_are_not_held_back(server: MetricsServer) -> None:
    """Twenty scrapes on one keep-alive connection take well under Nagle's 40 ms each."""
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(server.address, timeout=30) as sock:
        _exchange(sock, request)
        started = time.monotonic()
        for _ in range(20):
            _exchange(sock, request)
        elapsed = time.monotonic() - started
    assert elapsed < 0.5, f"{elapsed:.2f} s for 20 keep-alive scrapes"


def test_listen_backlog_is_not_socketservers_five(server: MetricsServer) -> None:
    """The listening socket queues a burst of scrapers (socketserver's backlog was 5)."""
    assert server.backlog >= 128
    ss = shutil.which("ss")
    if ss is not None:
        # For a listening socket ss shows the backlog the kernel applies as its Send-Q.
        out = subprocess.run(
            [ss, "-ltnH", f"sport = :{server.address[1]}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
        assert int(out[2]) >= 128, out


def test_at_the_connection_cap_the_longest_waiting_makes_room(
    registry_with_counter: CollectorRegistry,
) -> None:
    """With every slot held by idle connections, a new scraper is answered; the oldest goes."""
    srv = MetricsServer(registry_with_counter, listen="127.0.0.1:0", max_connections=4)
    srv.start()
    idle = []
    try:
        for _ in range(4):
            idle.append(socket.create_connection(srv.address, timeout=30))
        conn = http.client.HTTPConnection(*srv.address, timeout=30)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200 and b"demo_events_total 3.0" in response.read()
        conn.close()
        # The first idle connection was closed to make room: it reads end-of-file.
        assert idle[0].recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
        srv.shutdown()


@pytest.fixture
def registry_with_counter() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(3)
    return registry


def test_concurrent_renders_are_bounded() -> None:
    """Many parallel scrapes of different pages of /metrics (formats, gzip) render at most two
    pages at a time (scrapes of one page share its render)."""
    inside = threading.Semaphore(0)
    release = threading.Event()
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    class Slow:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            inside.release()
            release.wait(timeout=60)
            with lock:
                state["now"] -= 1
            yield GaugeMetricFamily("slow_gauge", "A slow collector.", value=1.0)

    registry = CollectorRegistry()
    registry.register(Slow())
    srv = MetricsServer(registry, listen="127.0.0.1:0")
    srv.start()
    statuses: list[int] = []

    def scrape(headers: dict[str, str]) -> None:
        request = urllib.request.Request(srv.url, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            statuses.append(response.status)

    om = "application/openmetrics-text; version="
    pages: list[dict[str, str]] = [
        {},
        {"Accept-Encoding": "gzip"},
        {"Accept": om + "1.0.0"},
        {"Accept": om + "1.0.0", "Accept-Encoding": "gzip"},
        {"Accept": om + "1.0.1"},
    ]
    threads = [threading.Thread(target=scrape, args=(headers,)) for headers in pages]
    try:
        for thread in threads:
            thread.start()
        assert inside.acquire(timeout=30) and inside.acquire(timeout=30)
        # A third render would start at once if renders were not bounded.
        assert not inside.acquire(timeout=1.0)
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=60)
        srv.shutdown()
    assert state["peak"] == 2
    assert statuses == [200] * 5


# -- floods against a real process under a low descriptor limit --------------------------------


def _limit_descriptors(n: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def _get(url: str, timeout: float = 15) -> tuple[int, bytes, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read(), time.monotonic() - started


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_500_slow_connections_under_128_descriptors_leave_scrapes_exact(tmp_path: Path) -> None:
    """500 slow clients against an exporter limited to 128 descriptors: scrapes answered, exact
    counts, a bounded number of threads, and no core spent spinning on accept()."""
    log = tmp_path / "sustainbot.jsonl"
    append(log, contract_line("auth.failed", failure_type="expired") * 300)
    port = free_port()
    stderr = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen(
        exporter_argv("serve", "--file", str(log), "--web.listen-address", f"127.0.0.1:{port}"),
        stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path,
        preexec_fn=lambda: _limit_descriptors(128),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), "the exporter to be ready")
        with SlowClients(port, 500, interval=0.5, max_seconds=120) as slow:
            slow.wait_connected(500)
            cpu_before, window_start = _cpu_seconds(proc.pid), time.monotonic()
            for _ in range(3):
                status, body, elapsed = _get(base + "/metrics")
                assert status == 200 and elapsed < 5.0, f"{elapsed:.1f} s"
                expected = b'sustainbot_authentication_failures_total{failure_type="expired"} 300.0'
                assert expected in body
            assert _threads(proc.pid) < 150
            # A measuring window, not a wait for something to happen.
            time.sleep(max(0.0, 3.0 - (time.monotonic() - window_start)))
            cpu = _cpu_seconds(proc.pid) - cpu_before
            window = time.monotonic() - window_start
        assert cpu < 0.5 * window, f"{cpu:.2f} s of CPU in {window:.1f} s"
        assert proc.poll() is None
    finally:
        _stop(proc)
        stderr.close()


def _ready(base: str) -> bool:
    try:
        return _get(base + "/readyz")[0] == 200
    except OSError:
        return False


_EMFILE_SCRIPT = """
import resource, sys, time
from prometheus_client import CollectorRegistry
from log_exporter.prometheus.server import MetricsServer
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
# No descriptors held in reserve and a connection cap above the limit: accept() runs out.
server = MetricsServer(
    CollectorRegistry(), listen="127.0.0.1:0", max_connections=1000, reserve_fds=0
)
server.start()
print(server.address[1], flush=True)
sys.stdin.read()
server.shutdown()
"""


@pytest.mark.slow
def test_accept_out_of_descriptors_backs_off_instead_of_spinning() -> None:
    """When accept() fails with EMFILE the server pauses accepting: its CPU time stays low."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _EMFILE_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with SlowClients(port, 200, interval=0.5, max_seconds=60) as slow:
            slow.wait_connected(200)
            cpu_before, started = _cpu_seconds(proc.pid), time.monotonic()
            time.sleep(3.0)  # a measuring window
            cpu = _cpu_seconds(proc.pid) - cpu_before
            window = time.monotonic() - started
        assert cpu < 0.3 * window, f"{cpu:.2f} s of CPU in {window:.1f} s"
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
