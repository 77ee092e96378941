"""The CloudWatch emulator: running it, reading back what reached it, and running the exporter
against it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support import processes
from tests.support.processes import clean_env
from tests.support.serve import exporter_argv

# What reaches moto goes through flush intervals, retries and HTTP: slower than a local exporter.
SHIPPING_DEADLINE = 120.0


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    """A real moto server in a thread on an ephemeral loopback port: its endpoint URL (the
    caller skips where moto is not installed)."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def clients(endpoint: str | None = None) -> tuple[Any, Any]:
    """Plain boto3 clients on the emulator (credentials, and by default the endpoint, from env)."""
    cfg = Config(region_name="eu-west-1", retries={"total_max_attempts": 3, "mode": "standard"})
    return (
        boto3.client("logs", config=cfg, endpoint_url=endpoint),
        boto3.client("cloudwatch", config=cfg, endpoint_url=endpoint),
    )


def messages(logs: Any, group: str, stream: str) -> list[str]:
    """Every message in ``stream``, oldest first; [] while the group or stream is missing."""
    out: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamNames": [stream]}
    try:
        while True:
            page = logs.filter_log_events(**kwargs)
            out.extend(e["message"] for e in page.get("events", []))
            token = page.get("nextToken")
            if not token:
                return out
            kwargs["nextToken"] = token
    except logs.exceptions.ResourceNotFoundException:
        return []


def serve_startup_log(log_file: Path, env: Mapping[str, str]) -> tuple[str, int]:
    """Start `log-exporter serve` on ``log_file``, read its log up to "serving", stop it with
    SIGTERM; return that log and the exit code."""
    argv = exporter_argv("serve", "--file", str(log_file), "--web.listen-address", "127.0.0.1:0")
    seen = ""
    with subprocess.Popen(
        argv, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None
        try:
            # Read until serve says it is serving (or exits): no sleeping, no guessing.
            for line in proc.stderr:
                seen += line
                if '"serving"' in line:
                    break
        finally:
            processes.stop(proc, what="log-exporter serve")
    return seen, proc.returncode


def replay_to_cloudwatch(
    path: Path, group: str, stream: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    """Run `log-exporter replay --cloudwatch [FLAGS]` on one file into ``group``/``stream``, with
    no settings inherited (CLOUDWATCH_* included), so only the flags decide where it ships."""
    env = clean_env()
    where = ["--cloudwatch-log-group", group, "--cloudwatch-log-stream", stream, *flags]
    return subprocess.run(
        exporter_argv("replay", "--cloudwatch", *where, str(path)),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
