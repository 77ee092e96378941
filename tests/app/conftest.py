"""Fixtures for the SustainBot tests: a real app on a tmp event log, tokens, and the contract.

Every test that uses ``event_log`` has each line it wrote checked against the event contract's
JSON Schema when the test ends, so every endpoint and failure path is schema-checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sustainbot.app import create_app
from sustainbot.auth import mint_token
from sustainbot.settings import Settings
from tests.support.app import PERSON, SECRET, EventLog


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[EventLog]:
    log = EventLog(tmp_path / "logs" / "sustainbot.jsonl")
    yield log
    log.assert_valid()


@pytest.fixture
def settings(event_log: EventLog) -> Settings:
    return Settings(json_log_path=event_log.path, jwt_secret=SECRET)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def token(settings: Settings) -> Callable[..., str]:
    def make(role: str = "approver", actor: str = PERSON, ttl: int = 3600) -> str:
        return mint_token(settings, actor=actor, role=role, ttl=ttl)

    return make
