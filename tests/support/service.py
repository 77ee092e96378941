"""``sustainbot serve`` as a real process (gunicorn), started as the operator starts it: its
console script on an ephemeral loopback port. It is waited on deterministically: it prints its
bound port, then answers /healthz. The one runner of the service for the app's HTTP tests, the
end-to-end stack beside ``log-exporter serve`` (``tests.support.serve``) and the pod tests.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import processes
from tests.support.app import SECRET as SECRET
from tests.support.app import EventLog
from tests.support.processes import clean_env, spawn, terminate
from tests.support.waits import DEADLINE, wait_for

BIN = Path(sys.executable).parent / "sustainbot"


def env_for(log_path: Path) -> dict[str, str]:
    """This process's environment with only the service settings the tests choose."""
    env = clean_env()
    env.update({"SUSTAINBOT_JWT_SECRET": SECRET, "JSON_LOG_PATH": str(log_path)})
    return env


class Service:
    """``sustainbot serve --port 0 ARGS`` writing its events to ``log_path``, with its output in
    ``tmp_path``; ``start()`` waits until it answers.

    ``answered`` counts every response this helper itself received, by (method, path, status),
    so a test comparing request totals can include the health checks made while starting.
    """

    def __init__(
        self,
        tmp_path: Path,
        log_path: Path,
        *args: str,
        workers: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.log = EventLog(log_path)
        self.log_path = log_path
        self.env = env_for(log_path)
        self.answered: Counter[tuple[str, str, int]] = Counter()
        self.output_path = tmp_path / "sustainbot-serve.out"
        argv = [str(BIN), "serve", "--port", "0", *args]
        if workers is not None:
            argv += ["--workers", str(workers)]
        if threads is not None:
            argv += ["--threads", str(threads)]
        self.proc = spawn(argv, self.output_path, env=self.env, cwd=tmp_path)
        self.port = 0

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def _running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"sustainbot serve exited during start:\n{self.output()}")

    def start(self) -> None:
        """Wait for the announced port, then for /healthz to answer 200."""

        def announced() -> int | None:
            self._running()
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.output())
            return int(match.group(1)) if match else None

        port = wait_for(announced, "sustainbot serve to announce its port")
        assert port is not None
        self.port = port

        def healthy() -> bool:
            self._running()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
            try:
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
            except OSError:
                return False
            finally:
                conn.close()
            self.answered["GET", "/healthz", status] += 1
            return status == 200

        wait_for(healthy, "sustainbot /healthz to answer 200", interval=0.1)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request on a connection of its own; the status and the JSON body (``{}`` if none)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return response.status, answer
        finally:
            conn.close()

    def token(self, role: str, actor: str = "Dana Operator") -> str:
        """A token minted by the service's own ``sustainbot token`` with its settings."""
        result = subprocess.run(
            [str(BIN), "token", "--actor", actor, "--role", role],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout.strip()

    def stop(self) -> int:
        """SIGTERM (gunicorn's graceful stop) and wait; kill only if it hangs."""
        return processes.stop(self.proc, what="sustainbot serve")

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        # SIGTERM first: a killed master would leave its workers running until they notice.
        terminate(self.proc)


@contextmanager
def running(tmp_path: Path, *args: str) -> Iterator[Service]:
    """``sustainbot serve --port 0 ARGS`` logging under ``tmp_path``: started, healthy, stopped,
    and its event log valid against the contract."""
    with Service(tmp_path, tmp_path / "logs" / "sustainbot.jsonl", *args) as service:
        service.start()
        yield service
    service.log.assert_valid()
