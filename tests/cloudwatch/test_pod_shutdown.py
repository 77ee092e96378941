"""A pod's shutdown with real processes: SustainBot under 16 concurrent clients, the exporter
shipping to moto's server, SIGTERM in the orders Kubernetes sends it.

Native sidecar (Kubernetes >= 1.29): the app is signalled first and the exporter only once the app
has exited; older clusters signal both at once. Either way every line of the log must be in
CloudWatch Logs before the exporter exits, and the CloudWatch metric sums must be exact.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from log_exporter.limits import EXIT_DRAIN_INCOMPLETE, EXIT_OK
from sustainbot.auth import mint_token
from sustainbot.settings import Settings
from tests.support.cloudwatch import SHIPPING_DEADLINE, clients, messages
from tests.support.ports import free_port
from tests.support.serve import Exporter, sample
from tests.support.service import SECRET, Service
from tests.support.waits import DEADLINE, wait_for

pytestmark = pytest.mark.slow

CLIENTS = 16
GROUP = "/aiwf/pod"
STREAM = "pod-a"
BODY = json.dumps(
    {
        "workflow_name": "carbon_audit",
        "drag_mode": "analysis",
        "aim": {"actor": "assistant", "input": "We used 1,200 kWh.", "mission": "shutdown"},
    }
).encode()
AIM_DIMS = {"DRAGMode": "analysis", "ActorRole": "analyst", "WorkflowName": "carbon_audit"}


@dataclass
class Load:
    """16 keep-alive clients sending the same governed execution until the app stops answering."""

    port: int
    token: str
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)
    # Bounded: a client stops at this many requests even if the app never stops.
    limit: int = 2000

    def start(self) -> None:
        for _ in range(CLIENTS):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _client(self) -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            for _ in range(self.limit):
                try:
                    conn.request("POST", "/workflows/governed/execute", BODY, headers)
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException):
                    return  # the app is shutting down: what it answered is in its log
                with self.lock:
                    self.answered += 1
        finally:
            conn.close()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(DEADLINE)
        assert not any(t.is_alive() for t in self.threads), "a client hung"


def _exporter(tmp_path: Path, log: Path, module: str = "log_exporter", **env: str) -> Exporter:
    return Exporter(
        tmp_path,
        ["--file", str(log), "--state", "state.json"],
        module=module,
        env={
            "CLOUDWATCH_ENABLED": "true",
            "CLOUDWATCH_LOG_GROUP": GROUP,
            "CLOUDWATCH_LOG_STREAM": STREAM,
            # Longer than the test: only the drain can send the open interval.
            "CLOUDWATCH_FLUSH_SECONDS": "3600",
            **env,
        },
    )


def _aim_sum(cw: Any) -> float:
    now = datetime.now(UTC)
    resp = cw.get_metric_statistics(
        Namespace="AIWF/SustainBot",
        MetricName="AIMRequests",
        Dimensions=[{"Name": k, "Value": v} for k, v in AIM_DIMS.items()],
        StartTime=now - timedelta(hours=2),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["Sum"],
    )
    return float(sum(p["Sum"] for p in resp["Datapoints"]))


def _file_lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines()


def _run_app_under_load(tmp_path: Path, log: Path, exporter: Exporter) -> tuple[Service, Load]:
    app = Service(tmp_path, log, workers=2, threads=4)
    app.start()
    exporter.wait_healthy()
    token = mint_token(Settings(jwt_secret=SECRET), actor="Ada Lovelace", role="analyst")
    load = Load(app.port, token)
    load.start()
    # Mid-load: the clients are busy and the log is growing when the signal comes.
    wait_for(lambda: load.answered, "the clients to get answers", until=lambda n: n >= 300)
    return app, load


def _check_everything_shipped(log: Path, exporter: Exporter) -> None:
    logs, cw = clients()
    lines = _file_lines(log)
    shipped = messages(logs, GROUP, STREAM)
    # Read back once: the exporter has exited, so nothing may arrive later.
    assert sorted(shipped) == sorted(lines), (
        f"{len(shipped)} of {len(lines)} lines in CloudWatch Logs\n{exporter.diagnosis()}"
    )
    aim = sum(1 for line in lines if json.loads(line).get("event") == "aim.request")
    assert aim > 300
    assert _aim_sum(cw) == aim


def test_native_sidecar_order_ships_every_line_written_during_the_apps_drain(
    aws_env: str, tmp_path: Path
) -> None:
    """App first, exporter after the app exited: every line reaches CloudWatch, sums exact."""
    log = tmp_path / "sustainbot.jsonl"
    with _exporter(tmp_path, log) as exporter:
        app, load = _run_app_under_load(tmp_path, log, exporter)
        with app:
            at_signal = log.stat().st_size
            assert app.stop() == 0
        load.join()
        written = len(_file_lines(log))
        during_app_drain = log.read_bytes()[at_signal:].count(b"\n")
        started = time.monotonic()
        code = exporter.stop()
        drain_seconds = time.monotonic() - started
        assert code == EXIT_OK, exporter.diagnosis()
    (stopped,) = [r for r in exporter.log_records() if r.get("msg") == "stopped"]
    assert stopped["drain"] == "quiet" and stopped["unshipped_lines"] == 0
    assert stopped["unsent_metric_intervals"] == 0
    # The closing note's figures (shown with -s).
    print(
        f"native order: {written} lines written, {during_app_drain} of them after the app's"
        f" SIGTERM, all shipped; exporter drain {drain_seconds:.1f} s"
    )
    _check_everything_shipped(log, exporter)


def test_both_signalled_at_once_exporter_reads_past_the_apps_last_write(
    aws_env: str, tmp_path: Path
) -> None:
    """Older clusters signal both together: the exporter reads on past the app's last write and
    ships it all within its drain timeout."""
    log = tmp_path / "sustainbot.jsonl"
    with _exporter(tmp_path, log, LOG_EXPORTER_DRAIN_TIMEOUT="60") as exporter:
        app, load = _run_app_under_load(tmp_path, log, exporter)
        with app:
            at_signal = log.stat().st_size
            app.proc.send_signal(signal.SIGTERM)
            exporter.send(signal.SIGTERM)
            assert app.proc.wait(timeout=DEADLINE) == 0
        load.join()
        assert exporter.proc.wait(timeout=SHIPPING_DEADLINE) == EXIT_OK, exporter.diagnosis()
    (stopped,) = [r for r in exporter.log_records() if r.get("msg") == "stopped"]
    assert stopped["drain"] == "quiet" and stopped["unshipped_lines"] == 0
    assert stopped["unsent_metric_intervals"] == 0
    # The app went on writing after the signal, and the exporter stopped after its last line.
    assert log.stat().st_size > at_signal
    last_event = max(json.loads(line)["timestamp"] for line in _file_lines(log))
    assert stopped["ts"] > last_event
    _check_everything_shipped(log, exporter)


def test_drain_timeout_passes_unnoticed_while_cloudwatch_is_unreachable(
    aws_env: str, tmp_path: Path
) -> None:
    """A drain that cannot ship ends at its timeout: exit 3, the unshipped lines in the log."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(b"".join(b'{"event":"http.request","n":%d}\n' % i for i in range(12)))
    dead = f"http://127.0.0.1:{free_port()}"
    with _exporter(
        tmp_path, log, AWS_ENDPOINT_URL=dead, LOG_EXPORTER_DRAIN_TIMEOUT="1"
    ) as exporter:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/readyz")[0] == 200, "the metrics to hold the log")
        started = time.monotonic()
        exporter.send(signal.SIGTERM)
        assert exporter.proc.wait(timeout=SHIPPING_DEADLINE) == EXIT_DRAIN_INCOMPLETE
        assert time.monotonic() - started < 30
    (stopped,) = [r for r in exporter.log_records() if r.get("unshipped_lines") is not None]
    assert stopped["drain"] == "timeout" and stopped["unshipped_lines"] == 12
    assert stopped["level"] == "warning" and "12 lines not shipped" in stopped["msg"]


def test_second_signal_exits_0_with_lines_left_unshipped(aws_env: str, tmp_path: Path) -> None:
    """With CloudWatch unreachable a drain cannot finish: a second SIGTERM stops at once, with
    exit code 3 and the number of lines left unshipped in the log."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(b"".join(b'{"event":"http.request","n":%d}\n' % i for i in range(25)))
    # A closed loopback port: every request fails to connect and is retried.
    dead = f"http://127.0.0.1:{free_port()}"
    with _exporter(
        tmp_path, log, AWS_ENDPOINT_URL=dead, LOG_EXPORTER_DRAIN_TIMEOUT="600"
    ) as exporter:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/readyz")[0] == 200, "the metrics to hold the log")
        wait_for(
            lambda: sample(exporter.metrics(), "log_exporter_cloudwatch_retries_total"),
            "a failed CloudWatch request",
            explain=exporter.diagnosis,
        )
        exporter.send(signal.SIGTERM)
        # Two signals sent before the first is handled arrive as one: wait for the drain to start.
        wait_for(
            lambda: any(r["msg"].startswith("draining") for r in exporter.log_records()),
            "the exporter to begin draining",
            explain=exporter.diagnosis,
        )
        assert exporter.get("/healthz")[0] == 200  # still serving while it drains
        assert exporter.proc.poll() is None  # draining: it waits for CloudWatch
        assert exporter.stop() == EXIT_DRAIN_INCOMPLETE
    (stopped,) = [r for r in exporter.log_records() if r.get("unshipped_lines") is not None]
    assert stopped["unshipped_lines"] == 25 and stopped["drain"] == "forced"
    assert stopped["unread_lines"] == 0


def _drain_then_second_signal(exporter: Exporter) -> float:
    """SIGTERM, wait for the drain to start, SIGTERM again: when the second one was sent."""
    exporter.send(signal.SIGTERM)
    wait_for(
        lambda: any(r["msg"].startswith("draining") for r in exporter.log_records()),
        "the exporter to begin draining",
        explain=exporter.diagnosis,
    )
    assert exporter.proc.poll() is None  # draining: it waits for CloudWatch
    exporter.send(signal.SIGTERM)
    return time.monotonic()


def _exit_code(exporter: Exporter) -> int:
    """The exit code; if the exporter hangs, its threads' stacks (faulthandler on SIGABRT) in the
    failure message."""
    try:
        return exporter.proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        exporter.send(signal.SIGABRT)
        exporter.proc.wait(timeout=DEADLINE)
        raise AssertionError(
            f"the exporter ignored a second SIGTERM\n{exporter.diagnosis()}"
        ) from None


def _forced_stop_record(exporter: Exporter) -> dict[str, Any]:
    (stopped,) = [r for r in exporter.log_records() if r.get("unshipped_lines") is not None]
    assert stopped["drain"] == "forced" and stopped["unread_lines"] == 0
    return stopped


def test_second_signal_stops_even_while_the_main_thread_holds_the_lock_a_stop_request_takes(
    aws_env: str, tmp_path: Path
) -> None:
    """A second SIGTERM that comes while serve's main thread holds its tail loop's wakeup lock
    (an instant of every wait, made certain by the launcher) still stops the exporter: exit 3,
    drain forced, the unshipped lines counted."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(b"".join(b'{"event":"http.request","n":%d}\n' % i for i in range(25)))
    dead = f"http://127.0.0.1:{free_port()}"
    with _exporter(
        tmp_path,
        log,
        module="tests.support.held_wakeup",
        AWS_ENDPOINT_URL=dead,
        LOG_EXPORTER_DRAIN_TIMEOUT="600",
        PYTHONFAULTHANDLER="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    ) as exporter:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/readyz")[0] == 200, "the metrics to hold the log")
        _drain_then_second_signal(exporter)
        code = _exit_code(exporter)
        assert code == EXIT_DRAIN_INCOMPLETE, exporter.diagnosis()
    assert _forced_stop_record(exporter)["unshipped_lines"] == 25


class _Silent:
    """A loopback TCP server that accepts every connection and reads it, but never answers: a
    CloudWatch endpoint whose requests hang until the client's read timeout."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.requests = threading.Event()  # set once a request's bytes arrived
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                self._conns.append(conn)
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                self.requests.set()

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns:
            conn.close()


def test_second_signal_does_not_wait_for_a_request_cloudwatch_never_answers(
    aws_env: str, tmp_path: Path
) -> None:
    """With the shipper's request hanging on an endpoint that never answers, a second SIGTERM
    stops the exporter within seconds, not botocore's timeouts: exit 3, drain forced, the
    unshipped lines counted."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(b"".join(b'{"event":"http.request","n":%d}\n' % i for i in range(25)))
    silent = _Silent()
    try:
        with _exporter(
            tmp_path,
            log,
            AWS_ENDPOINT_URL=silent.url,
            LOG_EXPORTER_DRAIN_TIMEOUT="600",
            PYTHONFAULTHANDLER="1",
        ) as exporter:
            exporter.wait_healthy()
            wait_for(silent.requests.is_set, "the shipper's request to reach the endpoint")
            sent = _drain_then_second_signal(exporter)
            # Well under botocore's 60 s read timeout, and the 30 s a plain stop waits for it.
            code = _exit_code(exporter)
            took = time.monotonic() - sent
            assert code == EXIT_DRAIN_INCOMPLETE, exporter.diagnosis()
            assert took < 15, f"exited {took:.1f} s after the second SIGTERM"
    finally:
        silent.close()
    assert _forced_stop_record(exporter)["unshipped_lines"] == 25
