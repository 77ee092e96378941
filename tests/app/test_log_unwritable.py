"""When the event log cannot be written, nothing runs without its audit record."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from sustainbot.app import create_app
from sustainbot.events import EventWriter
from sustainbot.settings import Settings
from tests.support.app import SECRET, EventLog, bearer, body

EXECUTE = "/workflows/governed/execute"


class CountingRegistry(dict):  # type: ignore[type-arg]
    """The real registry, counting lookups, to prove no workflow was run."""

    def __init__(self, real) -> None:
        super().__init__(real)
        self.lookups = 0

    def __getitem__(self, key):
        self.lookups += 1
        return super().__getitem__(key)


def test_execute_is_503_when_log_path_is_blocked(tmp_path: Path, token: Callable[..., str]) -> None:
    """With the log path unusable, execute answers 503 and runs no workflow."""
    from sustainbot.workflows import default_registry

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the log directory should be")
    settings = Settings(json_log_path=blocked / "sustainbot.jsonl", jwt_secret=SECRET)
    registry = CountingRegistry(default_registry())
    client = create_app(settings, registry=registry).test_client()
    response = client.post(EXECUTE, json=body(), headers=bearer(token()))
    assert response.status_code == 503
    assert response.json["error"] == "event_log_unavailable"
    # makedirs reports EEXIST for a file in the way; either way the errno name is given.
    assert response.json["event_log_error"] in {"EEXIST", "ENOTDIR"}
    assert registry.lookups == 0


def test_healthz_reports_unwritable_log(tmp_path: Path) -> None:
    """/healthz answers 503 and names the problem when events cannot be written."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    settings = Settings(json_log_path=Path("/dev/full"), jwt_secret=SECRET)
    client = create_app(settings).test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "event_log": "unwritable", "error": "ENOSPC"}


def test_execute_recovers_when_log_is_writable_again(
    tmp_path: Path, token: Callable[..., str]
) -> None:
    """Once the blocker is gone, execute and /healthz work again without a restart."""
    log_dir = tmp_path / "logs"
    log_dir.write_text("blocker")
    settings = Settings(json_log_path=log_dir / "sustainbot.jsonl", jwt_secret=SECRET)
    client = create_app(settings, writer=EventWriter(settings.json_log_path)).test_client()
    assert client.get("/healthz").status_code == 503
    log_dir.unlink()
    assert client.get("/healthz").status_code == 200
    response = client.post(EXECUTE, json=body(), headers=bearer(token()))
    assert response.status_code == 200
    log = EventLog(settings.json_log_path)
    assert [e["outcome"] for e in log.of("audit.entry")] == ["success"]
    log.assert_valid()


def test_healthz_ok_when_log_writable(client: FlaskClient, event_log: EventLog) -> None:
    """/healthz answers 200 when the event log is writable, without authentication."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "event_log": "writable"}


def test_result_withheld_when_audit_write_fails_after_workflow_ran(
    tmp_path: Path, token: Callable[..., str]
) -> None:
    """If the disk fills while the workflow runs, its result is withheld with 503, not answered."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    from sustainbot.workflows import Workflow

    log_path = tmp_path / "sustainbot.jsonl"

    def fill_disk(text: str) -> str:
        # Point the log path at a full device mid-request: the writer follows the path (as it
        # does on rotation), so workflow.completed and audit.entry meet ENOSPC.
        log_path.rename(tmp_path / "sustainbot.jsonl.1")
        log_path.symlink_to("/dev/full")
        return "a result that must not reach the client without its audit record"

    settings = Settings(json_log_path=log_path, jwt_secret=SECRET)
    registry = {"generate_report": Workflow("generate_report", "fills the disk", fill_disk)}
    client = create_app(settings, registry=registry).test_client()
    response = client.post(EXECUTE, json=body(), headers=bearer(token()))
    assert response.status_code == 503
    assert response.json["error"] == "event_log_unavailable"
    assert response.json["event_log_error"] == "ENOSPC"
    assert "output" not in response.json
    before = EventLog(tmp_path / "sustainbot.jsonl.1")
    assert [e["event"] for e in before.events()][-1] == "aim.request"
    before.assert_valid()
    assert client.get("/healthz").status_code == 503
