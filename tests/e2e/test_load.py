"""The whole stack under load: real gunicorn workers writing events while the real sidecar tails.

16 client threads on keep-alive connections send a few thousand mixed requests (successes,
workflow failures, 401/403/422, validate, the catalogue) to ``sustainbot serve`` while
``log-exporter serve`` tails the same JSONL file and is scraped as Prometheus would. What a user
would check afterwards must hold: no 5xx, the log is whole lines of JSON, and the sidecar counts
exactly the requests, workflow executions and audit entries the clients saw completed.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sustainbot.auth import mint_token
from sustainbot.governance import DRAG_MODES
from sustainbot.settings import Settings
from tests.support.serve import Exporter
from tests.support.service import SECRET, Service
from tests.support.waits import DEADLINE, wait_for

pytestmark = pytest.mark.slow

REQUESTS = 3000
CLIENTS = 16
EXECUTE = "/workflows/governed/execute"
VALIDATE = "/governance/validate"
WORKFLOWS = frozenset({"generate_report", "summarise_incident", "carbon_audit", "deploy_staging"})
# A long input makes events larger than PIPE_BUF, where interleaved writes could tear a line.
LONG_TEXT = "You should always check the meters before the audit. " * 120

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Call:
    kind: str
    method: str
    path: str
    expect: int
    role: str | None = None
    body: dict[str, Any] | None = None
    token: str = "valid"  # "valid", "none" or "forged"


def _aim(workflow: str, mode: str, text: str, mission: str = "e2e load") -> dict[str, Any]:
    return {
        "workflow_name": workflow,
        "drag_mode": mode,
        "aim": {"actor": "governed assistant", "input": text, "mission": mission},
    }


KINDS: tuple[Call, ...] = (
    Call("deploy", "POST", EXECUTE, 200, "approver",
         _aim("deploy_staging", "execute", "Deploy api@1.4.2 and web@2.0.0. You must check it.")),
    Call("carbon", "POST", EXECUTE, 200, "analyst",
         _aim("carbon_audit", "analysis", "We used 1,200 kWh and drove 340 km.")),
    Call("report", "POST", EXECUTE, 200, "engineer", _aim("generate_report", "draft", LONG_TEXT)),
    Call("incident", "POST", EXECUTE, 200, "admin",
         _aim("summarise_incident", "research", "Sev1 outage at 09:14. Restored at 09:52.")),
    Call("no_data", "POST", EXECUTE, 200, "analyst",
         _aim("carbon_audit", "grunt", "Nothing measurable happened this week.")),
    Call("simulated", "POST", EXECUTE, 200, "admin",
         _aim("generate_report", "execute", "Board summary #simulate-failure")),
    Call("forbidden", "POST", EXECUTE, 403, "engineer",
         _aim("deploy_staging", "execute", "Deploy api@1.4.2")),
    Call("bad_mode", "POST", EXECUTE, 422, "analyst",
         _aim("generate_report", "nonsense", "Quarterly figures.")),
    Call("unknown_workflow", "POST", EXECUTE, 422, "approver",
         _aim("launch_rockets", "draft", "Countdown.")),
    Call("no_token", "POST", EXECUTE, 401, None, _aim("generate_report", "draft", "x"),
         token="none"),
    Call("forged_token", "POST", EXECUTE, 401, "admin", _aim("generate_report", "draft", "x"),
         token="forged"),
    Call("validate_ok", "POST", VALIDATE, 200, "analyst",
         _aim("carbon_audit", "analysis", "We used 90 therms.")),
    Call("validate_bad", "POST", VALIDATE, 422, "engineer",
         _aim("carbon_audit", "execute", "We used 90 therms.", mission="")),
    Call("catalogue", "GET", "/workflows", 200),
)  # fmt: skip


@dataclass
class Tally:
    """What the clients saw completed, in the sidecar's label terms."""

    http: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    executions: Counter[tuple[str, str]] = field(default_factory=Counter)
    audit: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: Call, status: int, answer: dict[str, Any]) -> None:
        with self.lock:
            self.http[call.method, call.path, str(status)] += 1
            self.statuses[call.kind, status] += 1
            if call.path == EXECUTE and "outcome" in answer:
                assert call.body is not None
                mode = call.body["drag_mode"]
                workflow = call.body["workflow_name"]
                outcome = answer["outcome"]
                # The app writes these label values for a mode or workflow it does not know.
                self.executions[workflow if workflow in WORKFLOWS else "unregistered", outcome] += 1
                self.audit[outcome, mode if mode in DRAG_MODES else "other"] += 1


def _headers(call: Call, tokens: dict[str, str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json"} if call.body is not None else {}
    if call.token == "valid" and call.role is not None:
        headers["Authorization"] = f"Bearer {tokens[call.role]}"
    elif call.token == "forged":
        forged = Settings(jwt_secret="an-attacker-secret-that-is-long-enough!!")
        headers["Authorization"] = f"Bearer {mint_token(forged, actor='Mallory', role='admin')}"
    return headers


def _client(port: int, calls: Iterator[Call], tokens: dict[str, str], tally: Tally) -> None:
    """One keep-alive connection sending calls until none are left."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        while True:
            with tally.lock:
                call = next(calls, None)
            if call is None:
                return
            payload = json.dumps(call.body).encode() if call.body is not None else None
            headers = _headers(call, tokens)
            for attempt in (1, 2):
                reused = conn.sock is not None
                try:
                    conn.request(call.method, call.path, body=payload, headers=headers)
                    response = conn.getresponse()
                    raw = response.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()
                    # Only an idle keep-alive connection the server closed before reading the
                    # request is retried; a fresh connection failing is a real failure.
                    if not reused or attempt == 2:
                        raise
                    with tally.lock:
                        tally.reconnects += 1
            tally.record(call, response.status, json.loads(raw) if raw else {})
    except Exception as exc:  # reported by the test, which must not hang on a dead thread
        with tally.lock:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def _series(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Every series of one metric, keyed by the given label values in order."""
    return {
        tuple(dict(pairs)[label] for label in labels): value
        for (sample_name, pairs), value in samples.items()
        if sample_name == name and value
    }


def _requests_total(samples: Samples) -> dict[tuple[str, ...], float]:
    return _series(samples, "sustainbot_http_requests_total", "method", "endpoint", "status_code")


class Scraper(threading.Thread):
    """Scrapes /metrics while the load runs, as Prometheus would; counters must never go down."""

    def __init__(self, exporter: Exporter) -> None:
        super().__init__(daemon=True)
        self.exporter = exporter
        self.done = threading.Event()
        self.scrapes = 0
        self.problems: list[str] = []

    def run(self) -> None:
        previous = 0.0
        while not self.done.wait(0.5):
            try:
                total = sum(_requests_total(self.exporter.metrics()).values())
            except Exception as exc:  # reported by the test
                self.problems.append(f"{type(exc).__name__}: {exc}")
                return
            if total < previous:
                self.problems.append(f"request total went down: {previous} -> {total}")
            previous = total
            self.scrapes += 1


def test_sidecar_counts_match_clients_under_concurrent_load(tmp_path: Path) -> None:
    """Under 16 concurrent clients: no 5xx, no torn line, and /metrics counts what clients got."""
    log = tmp_path / "logs" / "sustainbot.jsonl"
    settings = Settings(jwt_secret=SECRET)
    tokens = {
        role: mint_token(settings, actor="Dana Operator", role=role)
        for role in ("engineer", "analyst", "approver", "admin")
    }
    rng = random.Random(7)  # a fixed mix, so a failure reproduces
    plan = [KINDS[i % len(KINDS)] for i in range(REQUESTS)]
    rng.shuffle(plan)
    calls = iter(plan)
    tally = Tally()

    # The sidecar starts first and waits for the log, as it does beside a new deployment.
    with (
        Exporter(tmp_path, ["--file", str(log)]) as exporter,
        Service(tmp_path, log, workers=3, threads=4) as service,
    ):
        exporter.wait_healthy()
        service.start()
        scraper = Scraper(exporter)
        scraper.start()
        clients = [
            threading.Thread(target=_client, args=(service.port, calls, tokens, tally))
            for _ in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=240)
        scraper.done.set()
        scraper.join(timeout=DEADLINE)

        assert not tally.errors, tally.errors[:5]
        assert not any(alive.is_alive() for alive in clients), "a client thread hung"
        assert sum(tally.http.values()) == REQUESTS
        server_errors = {key: n for key, n in tally.http.items() if key[2].startswith("5")}
        assert not server_errors, server_errors
        expected = {(c.kind, c.expect) for c in KINDS}
        assert set(tally.statuses) == expected, tally.statuses
        assert not scraper.problems, scraper.problems
        assert scraper.scrapes > 0, "the sidecar was never scraped during the load"

        want_http = tally.http.copy()
        for (method, path, status), n in service.answered.items():
            want_http[method, path, str(status)] += n
        wait_for(
            lambda: _requests_total(exporter.metrics()) == dict(want_http),
            "the sidecar's request counts to equal the clients'",
        )
        wait_for(
            lambda: exporter.metrics()[("log_exporter_bytes_read_total", ())] == log.stat().st_size,
            "the sidecar to read the whole log",
        )
        samples = exporter.metrics()
        # Stopping writes the workers' exits and app.stopped after this scrape.
        lines_scraped = log.read_bytes().count(b"\n")
        assert service.stop() == 0

    data = log.read_bytes()
    assert data.endswith(b"\n"), "the log ends in a partial line"
    lines = data.splitlines()
    events = [json.loads(line) for line in lines]  # a torn line would not parse
    assert all(isinstance(e, dict) for e in events)
    assert _series(samples, "log_exporter_lines_total", "result") == {("parsed",): lines_scraped}
    assert _series(
        samples, "sustainbot_workflow_executions_total", "workflow_name", "outcome"
    ) == dict(tally.executions)
    assert _series(samples, "sustainbot_audit_log_entries_total", "outcome", "drag_mode") == dict(
        tally.audit
    )
    assert samples[("sustainbot_active_requests", ())] == 0.0
