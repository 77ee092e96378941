"""Slow clients over real HTTP: they cannot starve ``sustainbot serve``, and they are cut off."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sustainbot.serving import BODY_TIMEOUT_SECONDS, HEADER_TIMEOUT_SECONDS
from tests.support.service import Service, running
from tests.support.slowclient import SlowClients
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow
# Generous: the service answers in milliseconds; starved, it answered after 30 s or never.
ANSWER_BOUND = 5.0


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running(tmp_path, "--workers", "2") as svc:
        yield svc


def _timed_get(service: Service, path: str = "/healthz") -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=3 * ANSWER_BOUND)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


@pytest.mark.parametrize("count", [16, 500])
def test_normal_request_answered_while_slow_clients_hold_connections(
    service: Service, count: int
) -> None:
    """With many clients sending their headers a byte at a time, others are still answered."""
    with SlowClients(service.port, count, interval=0.5, max_seconds=120) as slow:
        slow.wait_connected(count)
        for _ in range(5):
            status, elapsed = _timed_get(service)
            assert status == 200
            assert elapsed < ANSWER_BOUND, f"{elapsed:.1f} s with {slow.open_now} slow clients"


def test_headers_that_never_end_are_cut_off(service: Service) -> None:
    """A connection whose header block never ends is closed by the server, not kept forever."""
    with SlowClients(service.port, 4, interval=0.2, max_reconnects=0, max_seconds=120) as slow:
        slow.wait_connected(4)
        wait_for(
            lambda: slow.stats.closed_by_server,
            "the server to close all four connections",
            until=lambda closed: closed >= 4,
            timeout=HEADER_TIMEOUT_SECONDS + 30,
        )
        assert slow.stats.closed_by_server == 4


def test_a_body_that_stalls_is_408_with_its_event(service: Service) -> None:
    """An authenticated body that stops arriving is answered 408, and the request is logged."""
    token = service.token("admin")
    head = (
        "POST /governance/validate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", service.port), timeout=60) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + b'{"workflow_name": ')
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - started
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 408")
    assert b"Connection: close" in head_bytes
    answer = json.loads(body)
    assert answer["error"] == "request_timeout"
    assert BODY_TIMEOUT_SECONDS - 1 <= elapsed < BODY_TIMEOUT_SECONDS + 30
    logged = service.log.of("http.request", answer["trace_id"])
    assert [e["status_code"] for e in logged] == [408]
