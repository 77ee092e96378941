"""The service half of the end-to-end stack: ``sustainbot serve`` as a real process, beside the
``log-exporter serve`` of ``tests.support.serve`` on the same log.

It is started as the operator starts it (its console script, an ephemeral loopback port) and
waited on deterministically: it prints its bound port, then answers /healthz.
"""

from __future__ import annotations

import http.client
import re
import sys
from collections import Counter
from pathlib import Path

from tests.support import processes
from tests.support.processes import clean_env, spawn, terminate
from tests.support.waits import DEADLINE, wait_for

BIN = Path(sys.executable).parent / "sustainbot"
SECRET = "e2e-secret-that-is-long-enough-for-hs256!"


def service_env(log_path: Path) -> dict[str, str]:
    """This process's environment with only the service settings this stack chooses."""
    env = clean_env()
    env.update({"SUSTAINBOT_JWT_SECRET": SECRET, "JSON_LOG_PATH": str(log_path)})
    return env


class Service:
    """A ``sustainbot serve`` subprocess (gunicorn) on an ephemeral loopback port.

    ``answered`` counts every response this helper itself received, by (method, path, status),
    so a test comparing request totals can include the health checks made while starting.
    """

    def __init__(self, tmp_path: Path, log_path: Path, *, workers: int, threads: int) -> None:
        self.log_path = log_path
        self.answered: Counter[tuple[str, str, int]] = Counter()
        self.output_path = tmp_path / "sustainbot-serve.out"
        self.proc = spawn(
            [
                str(BIN),
                "serve",
                "--port",
                "0",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ],
            self.output_path,
            env=service_env(log_path),
            cwd=tmp_path,
        )
        self.port = 0

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def start(self) -> None:
        """Wait for the announced port, then for /healthz to answer 200."""

        def announced() -> int | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"sustainbot serve exited during start:\n{self.output()}")
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.output())
            return int(match.group(1)) if match else None

        self.port = wait_for(announced, "sustainbot serve to announce its port")

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"sustainbot serve exited during start:\n{self.output()}")
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

        wait_for(healthy, "sustainbot /healthz to answer 200")

    def stop(self) -> int:
        """SIGTERM (gunicorn's graceful stop) and wait; kill only if it hangs."""
        return processes.stop(self.proc, what="sustainbot serve")

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        # SIGTERM first: a killed master would leave its workers running until they notice.
        terminate(self.proc)
