"""``sustainbot serve`` for real: gunicorn workers over loopback HTTP, writing one shared log."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.app import REPO, EventLog
from tests.support.processes import terminate
from tests.support.service import BIN, Service, env_for, running

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running(tmp_path, "--workers", "2", "--threads", "4") as svc:
        yield svc


def _payload(mode: str, text: str, workflow: str = "generate_report") -> bytes:
    return json.dumps(
        {
            "workflow_name": workflow,
            "drag_mode": mode,
            "aim": {"actor": "reporting assistant", "input": text, "mission": "load test"},
        }
    ).encode()


def test_serve_refuses_to_start_without_jwt_key(tmp_path: Path) -> None:
    """Without a JWT secret or key, serve exits non-zero with a message saying what to set."""
    env = env_for(tmp_path / "e.jsonl")
    del env["SUSTAINBOT_JWT_SECRET"]
    result = subprocess.run(
        [str(BIN), "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "SUSTAINBOT_JWT_SECRET" in result.stderr


def test_smoke_over_real_http(service: Service) -> None:
    """Over real HTTP: token from the CLI, execute succeeds, and the events land in the log."""
    status, answer = service.request(
        "POST",
        "/workflows/governed/execute",
        body=_payload("execute", "You must always deploy on Fridays."),
        headers={"Authorization": f"Bearer {service.token('approver')}"},
    )
    assert status == 200 and answer["outcome"] == "success"
    kinds = Counter(e["event"] for e in service.log.for_trace(answer["trace_id"]))
    assert kinds["workflow.completed"] == kinds["audit.entry"] == 1
    assert kinds["prescriptive_language.detected"] >= 2
    assert [e["event"] for e in service.log.events()].count("app.started") == 1
    # A body over 64 KiB is refused by the real server too, not turned into a 500.
    status, answer = service.request(
        "POST",
        "/workflows/governed/execute",
        body=_payload("draft", "z" * 70_000),
        headers={"Authorization": f"Bearer {service.token('admin')}"},
    )
    assert status == 413


def test_chunked_body_over_64_kib_is_413_not_400(service: Service) -> None:
    """A chunked body (no Content-Length) over 64 KiB is 413 like any other, not cut and 400."""
    chunk = b" " * 8192
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        conn.request(
            "POST",
            "/workflows/governed/execute",
            body=iter([_payload("draft", "x")] + [chunk] * 9),
            headers={
                "Authorization": f"Bearer {service.token('admin')}",
                "Content-Type": "application/json",
            },
            encode_chunked=True,
        )
        response = conn.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        conn.close()
    assert (status, answer["error"]) == (413, "body_too_large")


def test_oversized_token_is_401_and_past_header_limit_431_not_500(service: Service) -> None:
    """Over real HTTP an oversized token is 401 with its events; past the header limit, 431."""
    payload = _payload("draft", "x")
    status, answer = service.request(
        "POST", "/workflows/governed/execute", payload, {"Authorization": "Bearer " + "a" * 6000}
    )
    assert (status, answer["failure_type"]) == (401, "oversized_token")
    failed = service.log.of("auth.failed", answer["trace_id"])
    assert [e["failure_type"] for e in failed] == ["oversized_token"]
    # gunicorn refuses a header field over 8190 bytes before the app sees the request: a 4xx,
    # but no event can be written for it (docs/sustainbot.md says so).
    lines_before = len(service.log.lines())
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        conn.request(
            "POST",
            "/workflows/governed/execute",
            body=payload,
            headers={"Authorization": "Bearer " + "a" * 9000},
        )
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 431
    assert len(service.log.lines()) == lines_before


def test_many_concurrent_clients_write_whole_lines(service: Service) -> None:
    """Under many concurrent clients every event is one whole line and counts match requests."""
    approver = {"Authorization": f"Bearer {service.token('approver')}"}
    engineer = {"Authorization": f"Bearer {service.token('engineer')}"}
    long_text = "You should always check the meters. " * 200  # events larger than PIPE_BUF
    plan = (
        [("ok", approver, _payload("execute", long_text))] * 60
        + [("forbidden", engineer, _payload("execute", "x"))] * 40
        + [("invalid", approver, _payload("nonsense", "x"))] * 40
        + [("unauthenticated", {}, _payload("draft", "x"))] * 40
    )
    statuses: list[tuple[str, int]] = []
    lock = threading.Lock()
    queue = list(plan)

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                kind, headers, payload = queue.pop()
            status, _ = service.request("POST", "/workflows/governed/execute", payload, headers)
            with lock:
                statuses.append((kind, status))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    expected = {"ok": 200, "forbidden": 403, "invalid": 422, "unauthenticated": 401}
    assert len(statuses) == len(plan)
    assert all(status == expected[kind] for kind, status in statuses), Counter(statuses)

    terminate(service.proc)  # all workers flushed and gone before the log is read
    lines = service.log.lines()  # asserts the file ends in a newline
    events = [json.loads(line) for line in lines]  # a torn line would not parse
    executes = [e for e in events if e.get("endpoint") == "/workflows/governed/execute"]
    kinds = Counter(e["event"] for e in executes)
    assert kinds["http.request_started"] == kinds["http.request"] == len(plan)
    counted = Counter(e["event"] for e in events)
    assert counted["audit.entry"] == counted["workflow.completed"] == 60 + 40 + 40
    assert counted["auth.failed"] == 40
    outcomes = Counter(e["outcome"] for e in events if e["event"] == "workflow.completed")
    assert outcomes == {"success": 60, "rejected": 80}
    # Each request's lines share one trace id: 200 distinct request traces.
    assert len({e["trace_id"] for e in executes}) == len(plan)


def test_rotation_while_serving_loses_no_event(service: Service) -> None:
    """Renaming the log away while serving: later events go to the new file, none are lost."""
    assert service.request("GET", "/healthz")[0] == 200
    rotated = service.log.path.with_name("sustainbot.jsonl.1")
    service.log.path.rename(rotated)
    for _ in range(10):  # enough requests to reach both workers
        assert service.request("GET", "/workflows")[0] == 200
    terminate(service.proc)
    after = EventLog(service.log.path).of("http.request")
    assert [e["endpoint"] for e in after] == ["/workflows"] * 10
    before = EventLog(rotated).of("http.request")
    assert all(e["endpoint"] == "/healthz" for e in before)


def test_demo_scenario_runs_clean(service: Service) -> None:
    """The demo scenario script drives every path against a real server and exits 0."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "demo_scenario.py"),
            f"http://127.0.0.1:{service.port}",
        ],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {int(m) for m in re.findall(r"-> (\d{3})", result.stdout)}
    assert {200, 401, 403, 422} <= statuses
    assert not any(s >= 500 for s in statuses)
