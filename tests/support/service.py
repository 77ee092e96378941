"""A real ``sustainbot serve`` in a process of its own, on a loopback port, for the HTTP tests."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.app import SECRET, EventLog
from tests.support.processes import terminate
from tests.support.waits import wait_for

BIN = Path(sys.executable).parent / "sustainbot"
STARTUP_DEADLINE = 60.0


@dataclass
class Service:
    process: subprocess.Popen[str]
    port: int
    log: EventLog
    env: dict[str, str]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def token(self, role: str, actor: str = "Dana Operator") -> str:
        result = subprocess.run(
            [str(BIN), "token", "--actor", actor, "--role", role],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout.strip()


def env_for(log_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUSTAINBOT_")}
    env.update({"SUSTAINBOT_JWT_SECRET": SECRET, "JSON_LOG_PATH": str(log_path)})
    return env


def wait_for_port(process: subprocess.Popen[str], stdout: Path) -> int:
    """Poll serve's stdout file for the 'listening on' line it prints once the socket is bound."""

    def announced() -> int | None:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", stdout.read_text())
        if match:
            return int(match.group(1))
        assert process.poll() is None, f"serve exited early: {stdout.read_text()}"
        return None

    return wait_for(announced, "sustainbot serve to report its port", timeout=STARTUP_DEADLINE)


def wait_healthy(service: Service) -> None:
    def healthy() -> bool:
        try:
            if service.request("GET", "/healthz")[0] == 200:
                return True
        except OSError:
            pass
        assert service.process.poll() is None, "serve exited during startup"
        return False

    wait_for(healthy, "/healthz to answer 200", timeout=STARTUP_DEADLINE, interval=0.1)


@contextmanager
def running(tmp_path: Path, *args: str) -> Iterator[Service]:
    """``sustainbot serve --port 0 ARGS`` logging under ``tmp_path``: started, healthy, stopped."""
    log = EventLog(tmp_path / "logs" / "sustainbot.jsonl")
    env = env_for(log.path)
    stdout = tmp_path / "serve.out"
    with stdout.open("w") as out:
        process = subprocess.Popen(
            [str(BIN), "serve", "--port", "0", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
    try:
        svc = Service(process, wait_for_port(process, stdout), log, env)
        wait_healthy(svc)
        yield svc
    finally:
        terminate(process)
    log.assert_valid()
