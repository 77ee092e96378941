"""Fixtures for the CloudWatch tests: a real moto server over HTTP and the AWS environment."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.cloudwatch import running_moto


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server in a thread on an ephemeral loopback port, shared by the session."""
    with running_moto() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Dummy credentials and the emulator endpoint through boto3's standard chain; a clean moto."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=30
    ).close()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # The exporter would ship to these regions; the tests read back from the default one.
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    # moto does not decompress gzip request bodies; CloudWatch compresses PutMetricData.
    monkeypatch.setenv("AWS_DISABLE_REQUEST_COMPRESSION", "true")
    return moto_endpoint
