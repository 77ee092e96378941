"""Missing AWS credentials while serving: logged at error level, counted, and retried until they
appear (docs/cloudwatch.md, "Credentials")."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import boto3
import botocore.session
import pytest

from log_exporter.cloudwatch.client import Backoff, CloudWatchApi, Stopped
from log_exporter.cloudwatch.config import CloudWatchConfig
from log_exporter.cloudwatch.stats import ShipperStats
from tests.support.waits import DEADLINE, wait_for

CONFIG = CloudWatchConfig(enabled=True, log_stream="test-stream", region="eu-west-1")


def _clients_without_credentials(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """Real boto3 clients whose credential chain finds nothing: no variables, no files, no
    instance metadata; the endpoint is a closed port on loopback should signing ever succeed."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    session = boto3.session.Session(botocore_session=botocore.session.Session())
    kw: dict[str, Any] = {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}
    return session.client("logs", **kw), session.client("cloudwatch", **kw)


def _counted(stats: ShipperStats) -> int:
    requests = stats.snapshot().requests
    return sum(n for (_, result), n in requests.items() if result == "NoCredentialsError")


def test_missing_credentials_are_an_error_counted_and_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without credentials serve's shipper logs each failed call at error level naming
    NoCredentialsError, counts it by result, and keeps retrying rather than giving up."""
    logs, metrics = _clients_without_credentials(monkeypatch)
    stats = ShipperStats()
    stop = threading.Event()
    api = CloudWatchApi(logs, metrics, CONFIG, stats, stop, backoff=Backoff(base=0.001, cap=0.01))
    caplog.set_level(logging.INFO, logger="log_exporter")

    def ship() -> None:
        with contextlib.suppress(Stopped):  # how the shipper's loop ends on a stop
            api.ensure_stream("stream")

    worker = threading.Thread(target=ship, daemon=True)
    worker.start()
    try:
        wait_for(lambda: _counted(stats), "three failed calls", until=lambda n: n >= 3)
    finally:
        stop.set()
        worker.join(DEADLINE)
    assert not worker.is_alive()
    failures = [r for r in caplog.records if "NoCredentialsError" in r.getMessage()]
    assert len(failures) >= 3
    assert {r.levelno for r in failures} == {logging.ERROR}
