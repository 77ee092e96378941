"""Real programs for the tests: finding them (or skipping), starting them with their output in a
file, and stopping them with bounded waits so a hung child fails the test instead of hanging it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.waits import DEADLINE

# The Debian package that provides each program the tests may skip without.
_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "logrotate": "logrotate",
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
    "nginx": "nginx",
}
# Settings of SustainBot, the exporter and its CloudWatch shipping that the environment may hold.
_SETTINGS_PREFIXES = ("SUSTAINBOT_", "LOG_EXPORTER_", "CLOUDWATCH_")
# The AWS SDKs' region variables, which the exporter reads when CLOUDWATCH_REGION is unset.
_SETTINGS = frozenset({"JSON_LOG_PATH", "AWS_REGION", "AWS_DEFAULT_REGION"})


def binary(name: str) -> str:
    """The path of a real program the test needs; skip naming its package when it is missing.

    Called before the test opens anything: a skip must leave no open file behind, which
    warnings-as-errors would turn into a failure of whatever test runs next."""
    path = shutil.which(name)
    if path is None:
        package = _PACKAGES.get(name, name)
        pytest.skip(f"{name} is not installed (Debian package '{package}' provides it)")
    return path


def clean_env() -> dict[str, str]:
    """This process's environment without any setting that would change what the programs do."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SETTINGS_PREFIXES) and k not in _SETTINGS
    }


def run(args: Sequence[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and capture its output as text."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


def spawn(
    argv: Sequence[str],
    output: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its stderr (and its stdout unless ``stdout`` is False) in ``output``.

    The child keeps its own copy of the descriptor; this process's copy is closed at once, so
    nothing is left open whatever happens to the test."""
    with output.open("wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out if stdout else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if stdout else out,
            env=None if env is None else dict(env),
            cwd=cwd,
        )


def stop(proc: subprocess.Popen[Any], signum: int = signal.SIGTERM, *, what: str) -> int:
    """Send ``signum`` to ``proc`` if it still runs and return its exit code; if it does not exit
    within the deadline, kill it and fail naming ``what``."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            return proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=DEADLINE)
            raise AssertionError(f"{what} ignored {signal.Signals(signum).name}") from None
    return proc.returncode


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM a process still running and wait for it; kill it only if it hangs (for cleanup,
    where how it exits is not the test's business)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=DEADLINE)
