"""Requests in flight when a process dies: the sidecar's gauge returns to what is really in flight.

Real ``sustainbot serve`` (gunicorn) and ``log-exporter serve`` processes, killed with real
signals. A request is held in flight by sending its headers and not its body: the app has
written ``http.request_started`` and waits for the body (up to its 10 s body deadline), so each
case checks that the kill landed before that request could end on its own.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sustainbot.auth import mint_token
from sustainbot.settings import Settings
from tests.support.app import EventLog
from tests.support.serve import Exporter, sample
from tests.support.service import SECRET, Service
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

GAUGE = "sustainbot_active_requests"


@contextmanager
def held(port: int, trace_ids: list[str]) -> Iterator[list[socket.socket]]:
    """One authenticated POST per trace id whose body never comes: in flight until closed."""
    token = mint_token(Settings(jwt_secret=SECRET), actor="Dana Operator", role="analyst")
    socks = []
    try:
        for trace_id in trace_ids:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            socks.append(sock)
            sock.sendall(
                (
                    "POST /governance/validate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: 64\r\nX-Request-ID: {trace_id}\r\n\r\n"
                ).encode()
            )
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _started_pids(log: EventLog, trace_ids: list[str]) -> dict[str, int]:
    """trace id -> the pid that wrote its http.request_started, for those written so far."""
    return {
        e["trace_id"]: e["pid"]
        for e in log.of("http.request_started")
        if e["trace_id"] in trace_ids
    }


def _ended(log: EventLog, trace_ids: list[str]) -> list[str]:
    return [e["trace_id"] for e in log.of("http.request") if e["trace_id"] in trace_ids]


def _gauge(exporter: Exporter) -> float | None:
    return sample(exporter.metrics(), GAUGE)


def _wait_gauge(exporter: Exporter, value: float, what: str) -> None:
    wait_for(
        lambda: _gauge(exporter),
        f"{GAUGE} == {value:g} ({what})",
        until=lambda v: v == value,
        explain=exporter.diagnosis,
    )


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_worker_killed_mid_request_is_forgotten_also_after_exporter_restart(
    tmp_path: Path,
) -> None:
    """kill -9 of the worker serving 3 requests while the exporter is stopped: restarted from its
    state file, the exporter reads 0, not 3, and then counts the new worker's requests exactly."""
    log = EventLog(tmp_path / "sustainbot.jsonl")
    args = ["--file", str(log.path), "--state", "state.json"]
    with Service(tmp_path, log.path, workers=1, threads=1) as app:
        app.start()
        ids = [f"held-{i}" for i in range(3)]
        with Exporter(tmp_path, args) as exporter, held(app.port, ids):
            exporter.wait_healthy()
            pids = wait_for(
                lambda: _started_pids(log, ids), "3 requests in flight", until=lambda p: len(p) == 3
            )
            _wait_gauge(exporter, 3, "3 requests held")
            # The state file now holds the 3 in flight, under the worker's pid.
            assert exporter.stop() == 0
            (worker,) = set(pids.values())
            _kill(worker)
            wait_for(
                lambda: [e["pid"] for e in log.of("app.worker_exited")],
                "the master to report the dead worker",
                until=lambda exited: worker in exited,
            )
            assert _ended(log, ids) == [], "a held request ended before the kill"
        with Exporter(tmp_path, args) as exporter:
            exporter.wait_healthy()
            _wait_gauge(exporter, 0, "the dead worker's requests forgotten")
            wait_for(lambda: log.of("app.worker_started"), "the master to start a new worker")
            with held(app.port, ["held-new"]):
                _wait_gauge(exporter, 1, "one request in the new worker")
            wait_for(lambda: _ended(log, ["held-new"]), "the closed request to end")
            _wait_gauge(exporter, 0, "idle")
            assert exporter.stop() == 0
    log.assert_valid()


def test_service_killed_mid_request_then_restarted_reads_zero(tmp_path: Path) -> None:
    """kill -9 of gunicorn's master and workers with 2 requests in flight: the gauge keeps 2 (no
    process said otherwise) until the service starts again, then reads 0."""
    log = EventLog(tmp_path / "sustainbot.jsonl")
    ids = ["held-a", "held-b"]
    with Exporter(tmp_path, ["--file", str(log.path), "--state", "state.json"]) as exporter:
        exporter.wait_healthy()
        with Service(tmp_path, log.path, workers=2, threads=1) as app:
            app.start()
            with held(app.port, ids):
                pids = wait_for(
                    lambda: _started_pids(log, ids),
                    "2 requests in flight",
                    until=lambda p: len(p) == 2,
                )
                _wait_gauge(exporter, 2, "2 requests held")
                # Master first, so no one is left to report the workers' deaths.
                _kill(app.proc.pid)
                app.proc.wait(timeout=60)
                for pid in set(pids.values()):
                    _kill(pid)
                assert _ended(log, ids) == [], "a held request ended before the kill"
        assert _gauge(exporter) == 2
        (tmp_path / "again").mkdir()
        with Service(tmp_path / "again", log.path, workers=2, threads=1) as app:
            app.start()
            _wait_gauge(exporter, 0, "the new start forgot the crashed service's requests")
            assert app.stop() == 0
        assert exporter.stop() == 0
    log.assert_valid()


def test_request_outliving_the_graceful_timeout_is_forgotten_at_stop(tmp_path: Path) -> None:
    """SIGTERM to gunicorn with a request in flight, its worker then killed as gunicorn kills it
    once the graceful timeout passes: the gauge reads 0 once the service has stopped."""
    log = EventLog(tmp_path / "sustainbot.jsonl")
    ids = ["held-late"]
    with Exporter(tmp_path, ["--file", str(log.path), "--state", "state.json"]) as exporter:
        exporter.wait_healthy()
        with Service(tmp_path, log.path, workers=1, threads=1) as app:
            app.start()
            with held(app.port, ids):
                pids = wait_for(lambda: _started_pids(log, ids), "a request in flight")
                _wait_gauge(exporter, 1, "1 request held")
                app.proc.send_signal(signal.SIGTERM)
                # What gunicorn does itself when the graceful timeout (30 s) runs out.
                _kill(pids["held-late"])
                assert app.proc.wait(timeout=60) == 0
                assert _ended(log, ids) == [], "the held request ended before the kill"
        assert [e["event"] for e in log.events()[-2:]] == ["app.worker_exited", "app.stopped"]
        _wait_gauge(exporter, 0, "the stopped service's requests forgotten")
        assert exporter.stop() == 0
    log.assert_valid()
