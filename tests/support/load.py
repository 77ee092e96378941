"""Governed requests sent to a real SustainBot by a few keep-alive clients, and a real Prometheus
scraping the sidecar beside it every second: the end-to-end tests' shared traffic and scraper."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.support.prometheus import Prometheus
from tests.support.waits import DEADLINE

EXECUTE = "/workflows/governed/execute"
# (role, workflow, DRAG mode, input text): one governed execution.
Body = tuple[str, str, str, str]


def _client(
    port: int,
    tokens: dict[str, str],
    bodies: Sequence[Body],
    requests: int,
    offset: int,
    health: bool,
    errors: list[str],
) -> None:
    """One keep-alive client: ``requests`` governed executions, a health check after each with
    ``health``; every non-200 and every exception noted in ``errors``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        for i in range(requests):
            role, workflow, mode, text = bodies[(i + offset) % len(bodies)]
            aim = {"actor": "a", "input": text, "mission": "e2e"}
            body = {"workflow_name": workflow, "drag_mode": mode, "aim": aim}
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {tokens[role]}",
            }
            conn.request("POST", EXECUTE, json.dumps(body).encode(), headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"{response.status} for {workflow}")
            if health:
                conn.request("GET", "/health")
                conn.getresponse().read()
    except Exception as exc:  # reported by the caller
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def send_governed(
    port: int,
    tokens: dict[str, str],
    bodies: Sequence[Body],
    *,
    clients: int,
    requests: int,
    health: bool = False,
) -> None:
    """Run ``clients`` clients of ``requests`` executions each to the end (bounded by the
    deadline); AssertionError naming the first failures, or a client that hung."""
    errors: list[str] = []
    threads = [
        threading.Thread(target=_client, args=(port, tokens, bodies, requests, n, health, errors))
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=4 * DEADLINE)
    assert not errors, errors[:5]
    assert not any(t.is_alive() for t in threads), "a client hung"


def scraping_sidecar(
    binary: str, directory: Path, port: int, flags: tuple[str, ...] = ()
) -> Prometheus:
    """A real Prometheus in ``directory`` scraping the sidecar on ``port`` every second (job
    ``sidecar``), with its other ``flags``."""
    directory.mkdir()
    return Prometheus(
        binary,
        directory,
        config={
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "sidecar",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            ],
        },
        flags=flags,
    )
