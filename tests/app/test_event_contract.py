"""Every line the service writes, on every endpoint and failure path, holds to the contract."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable

from flask.testing import FlaskClient

from sustainbot import emit
from tests.support.app import PERSON, SCHEMA_PATH, EventLog, bearer, body, schema_validator

EXECUTE = "/workflows/governed/execute"


def _drive_every_path(client: FlaskClient, token: Callable[..., str]) -> None:
    client.get("/healthz")
    client.get("/workflows")
    client.get("/nowhere")
    client.open("/healthz", method="BREW")
    client.post("/governance/validate", json=body(), headers=bearer(token("analyst")))
    client.post("/governance/validate", json={"drag_mode": 3}, headers=bearer(token("analyst")))
    client.post(EXECUTE, json=body(text="Ensure you never skip audits."), headers=bearer(token()))
    client.post(EXECUTE, json=body(text="#simulate-failure"), headers=bearer(token()))
    client.post(EXECUTE, json=body(mode="execute"), headers=bearer(token("engineer")))
    client.post(EXECUTE, json=body(workflow="??", mode=None), headers=bearer(token()))
    client.post(EXECUTE, json=body())
    client.post(EXECUTE, json=body(), headers=bearer("garbage"))
    client.post(EXECUTE, json=body(), headers=bearer("a.b.c"))
    client.post(EXECUTE, data=b"{", content_type="application/json", headers=bearer(token()))
    client.post(EXECUTE, json=body(text="q" * 70_000), headers=bearer(token()))


def test_every_line_validates_against_schema(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """Lines from every endpoint and failure path validate against docs/events.schema.json."""
    _drive_every_path(client, token)
    events = event_log.events()
    validator = schema_validator()
    bad = [(e, [x.message for x in validator.iter_errors(e)]) for e in events]
    assert [b for b in bad if b[1]] == []
    # The drive really covered every event type, so the check above is not vacuous.
    assert {e["event"] for e in events} == {
        "app.started",
        "http.request_started",
        "http.request",
        "auth.jwt_validated",
        "auth.failed",
        "aim.request",
        "aim.validation_failed",
        "workflow.completed",
        "audit.entry",
        "prescriptive_language.detected",
    }


def test_each_event_type_has_one_emitter() -> None:
    """sustainbot.emit has one public function per event type of the schema, named after it."""
    types = json.loads(SCHEMA_PATH.read_text())["properties"]["event"]["enum"]
    emitters = {
        name
        for name, member in vars(emit).items()
        if inspect.isfunction(member)
        and member.__module__ == emit.__name__
        and not name.startswith("_")
    }
    assert emitters == {event_type.replace(".", "_") for event_type in types}


def test_schema_rejects_contract_violations() -> None:
    """The schema itself catches a wrong timestamp, a string status code or a missing field."""
    validator = schema_validator()
    good = {
        "timestamp": "2026-02-01T14:30:00.123Z",
        "level": "INFO",
        "logger": "sustainbot.http",
        "message": "m",
        "event": "http.request",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "schema_version": 1,
        "method": "GET",
        "endpoint": "/healthz",
        "status_code": 200,
        "duration_seconds": 0.01,
        "pid": 4242,
    }
    assert validator.is_valid(good)
    # The pid tells the exporter which process's requests in flight this one counts in.
    assert not validator.is_valid({k: v for k, v in good.items() if k != "pid"})
    assert not validator.is_valid({**good, "timestamp": "2026-02-01T14:30:00+00:00"})
    assert not validator.is_valid({**good, "status_code": "200"})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "endpoint"})
    failure = {
        **good,
        "event": "workflow.completed",
        "workflow_name": "carbon_audit",
        "outcome": "failure",
        "drag_mode": "draft",
    }
    assert not validator.is_valid(failure)  # a failure without error_type
    assert validator.is_valid({**failure, "error_type": "NoActivityData"})


def test_person_name_only_in_actor_field(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """The person's name appears in no field but audit.entry's actor, and no event type else."""
    _drive_every_path(client, token)
    found = 0
    for event in event_log.events():
        for key, value in event.items():
            if PERSON in json.dumps(value):
                assert (event["event"], key) == ("audit.entry", "actor")
                found += 1
    assert found == len(event_log.of("audit.entry"))


def test_request_events_share_one_trace_and_bracket_the_request(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """A request's events share its trace id, between request_started and http.request."""
    response = client.post(EXECUTE, json=body(text="Run it."), headers=bearer(token()))
    trace = response.json["trace_id"]
    kinds = [e["event"] for e in event_log.for_trace(trace)]
    assert kinds[0] == "http.request_started" and kinds[-1] == "http.request"
    assert kinds[1:5] == ["auth.jwt_validated", "aim.request", "workflow.completed", "audit.entry"]
    assert set(kinds[5:-1]) == {"prescriptive_language.detected"}
    (audit,) = event_log.of("audit.entry", trace)
    assert "Run it." not in json.dumps(audit)  # the input itself is never logged, only its hash
    assert len(audit["input_sha256"]) == 64
