"""Helpers to run ``log-exporter serve`` (as a process or in-process) and wait on it."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from log_exporter.serve import ServeOptions, Service
from tests.support import processes
from tests.support.ports import free_port
from tests.support.processes import clean_env, spawn
from tests.support.tail import append as append
from tests.support.waits import DEADLINE, wait_for


def exporter_argv(*args: str) -> list[str]:
    """The command line of ``log-exporter ARGS`` as the tests run it: this interpreter's module,
    so the checkout under test runs whatever console scripts the environment holds."""
    return [sys.executable, "-m", "log_exporter", *args]


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition as ``{(name, sorted labels): value}``."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def saved_offsets(state: Path) -> list[int]:
    """Every read offset a state file holds (each file's and its rotated generations')."""
    found: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "offset" in node and "fingerprint" in node:
                found.append(node["offset"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        walk(json.loads(state.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []
    return found


def saved_label_sets(state: Path) -> list[dict[str, str]] | None:
    """The labels of every label set a many-file state file holds; None while it does not read
    (not written yet, or written by a one-file exporter)."""
    try:
        saved = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if "sections" not in saved or "files" not in saved["sections"]:
        return None
    return [dict(s["labels"]) for s in saved["sections"]["files"]["sets"]]


class Exporter:
    """A ``log-exporter serve`` subprocess on an ephemeral loopback port."""

    def __init__(
        self,
        tmp_path: Path,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        scheme: str = "http",
        context: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
        module: str = "log_exporter",
    ) -> None:
        """``module``: what ``python -m`` runs, ``log_exporter`` or a test's launcher of it."""
        self.port = port if port is not None else free_port()
        self.scheme = scheme
        # Used by every request this helper makes (health waits included) against TLS/auth.
        self.context = context
        self.auth_header = (
            {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}
            if auth
            else {}
        )
        self.stderr_path = tmp_path / f"exporter-{self.port}.log"
        state = list(args)[list(args).index("--state") + 1] if "--state" in args else None
        self.state_path = None if state is None else tmp_path / state
        full_env = clean_env()
        full_env.update(env or {})
        cmd = [sys.executable, "-m", module, "serve", *args]
        given = any(a.split("=")[0] in ("--listen", "--web.listen-address") for a in args)
        if not given and "LOG_EXPORTER_LISTEN" not in full_env:
            cmd += ["--web.listen-address", f"127.0.0.1:{self.port}"]
        # Its stdout carries nothing; stderr is the JSON log the tests read back.
        self.proc = spawn(cmd, self.stderr_path, env=full_env, cwd=tmp_path, stdout=False)

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr().splitlines() if line.strip()]

    def get(
        self,
        path: str,
        headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.base + path, headers={**self.auth_header, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(
                request, timeout=30, context=context or self.context
            ) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"exporter exited with {self.proc.returncode} during start:\n{self.stderr()}"
                )
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False

        wait_for(healthy, "/healthz to answer 200")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body.decode())

    def wait_metric(self, name: str, value: float, **labels: str) -> None:
        """Poll /metrics until ``name{labels}`` equals ``value``; on timeout say what it was,
        so a loss (below) tells itself apart from a double count (above)."""
        wait_for(
            lambda: sample(self.metrics(), name, **labels),
            f"{name}{labels} == {value}",
            until=lambda last: last == value,
            explain=self.diagnosis,
        )

    def diagnosis(self) -> str:
        """The state file and the exporter's log, for a failure message."""
        parts = []
        if self.state_path is not None:
            try:
                parts.append(f"state file: {self.state_path.read_text(encoding='utf-8')}")
            except OSError as exc:
                parts.append(f"state file: {exc}")
        parts.append(f"exporter log:\n{self.stderr()}")
        return "\n".join(parts)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and wait for the exit code (killing it only if it hangs)."""
        return processes.stop(self.proc, signum, what="the exporter")

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=DEADLINE)


def run_cli(
    args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``log-exporter ARGS`` to completion (for commands that must exit on their own)."""
    full_env = clean_env()
    full_env.update(env or {})
    return subprocess.run(
        exporter_argv(*args),
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=DEADLINE,
        check=False,
    )


def in_process_service(
    log: Path, *, state: Path | None = None, state_interval: float = 5.0
) -> Service:
    """``serve`` built in this process on an ephemeral port, so a test can wrap its parts."""
    return Service(
        ServeOptions(
            file=str(log),
            listen="127.0.0.1:0",
            spec=None,
            web_config=None,
            start_at="beginning",
            state=None if state is None else str(state),
            state_interval=state_interval,
            max_line_bytes=1 << 20,
        )
    )


def run_beside(service: Service, beside: Callable[[], None]) -> int:
    """Run ``service`` here while ``beside`` runs in a thread; its exit code."""
    thread = threading.Thread(target=beside)
    thread.start()
    try:
        return service.run()
    finally:
        service.request_stop()
        thread.join()


def run_until(service: Service, condition: Callable[[], object], what: str) -> int:
    """Run ``service`` until ``condition`` holds (named ``what`` on timeout); its exit code."""

    def stop_once() -> None:
        try:
            wait_for(condition, what)
        finally:
            service.request_stop()

    return run_beside(service, stop_once)
