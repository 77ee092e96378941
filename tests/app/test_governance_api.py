"""The governance endpoints: AIM validation, the DRAG policy, and client mistakes as 4xx."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sustainbot.governance import DRAG_MODES, MAX_INPUT_CHARS, POLICY, ROLES
from tests.support.app import EventLog, bearer, body

EXECUTE = "/workflows/governed/execute"
VALIDATE = "/governance/validate"


def test_validate_accepts_complete_request(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """A complete AIM request validates as {"valid": true} and is recorded as one aim.request."""
    response = client.post(VALIDATE, json=body(mode="research"), headers=bearer(token("analyst")))
    assert response.status_code == 200
    assert response.json["valid"] is True
    requests = event_log.of("aim.request", response.headers["X-Request-ID"])
    assert [(e["drag_mode"], e["actor_role"], e["workflow_name"]) for e in requests] == [
        ("research", "analyst", "generate_report")
    ]
    # validate never runs a workflow nor writes an audit record.
    assert event_log.of("workflow.completed") == [] and event_log.of("audit.entry") == []


def test_validate_reports_every_reason(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """A request failing several checks gets 422 listing every reason, one event per reason."""
    bad = {
        "workflow_name": "nope",
        "drag_mode": "yolo",
        "aim": {"input": "x" * (MAX_INPUT_CHARS + 1)},
    }
    response = client.post(VALIDATE, json=bad, headers=bearer(token("engineer")))
    assert response.status_code == 422
    expected = [
        "missing_actor",
        "missing_mission",
        "invalid_mode",
        "unknown_workflow",
        "input_too_long",
    ]
    assert response.json["reasons"] == expected
    trace = response.headers["X-Request-ID"]
    assert [e["failure_reason"] for e in event_log.of("aim.validation_failed", trace)] == expected


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("mode", DRAG_MODES)
def test_policy_table_enforced_per_role_and_mode(
    client: FlaskClient, token: Callable[..., str], role, mode
) -> None:
    """Each role may use exactly the DRAG modes the policy table grants it."""
    response = client.post(EXECUTE, json=body(mode=mode), headers=bearer(token(role)))
    if role in POLICY[mode]:
        assert response.status_code == 200, response.json
        assert response.json["outcome"] == "success"
    else:
        assert response.status_code == 403
        assert response.json["reasons"] == ["role_not_permitted"]


def test_execute_mode_denied_to_engineer_is_403_and_audited(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """An engineer asking for execute mode is refused 403, and the attempt is still audited."""
    response = client.post(EXECUTE, json=body(mode="execute"), headers=bearer(token("engineer")))
    assert response.status_code == 403
    assert response.json["error"] == "role_not_permitted"
    trace = response.headers["X-Request-ID"]
    (completed,) = event_log.of("workflow.completed", trace)
    assert completed["outcome"] == "rejected" and completed["drag_mode"] == "execute"
    (audit,) = event_log.of("audit.entry", trace)
    assert audit["decision"] == "deny" and audit["reasons"] == ["role_not_permitted"]
    assert audit["actor_role"] == "engineer"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (body(actor=""), "missing_actor"),
        (body(text="   "), "missing_input"),
        (body(mission=""), "missing_mission"),
        (body(mode="EXECUTE"), "invalid_mode"),
        (body(workflow="rm_rf"), "unknown_workflow"),
        (body(text="y" * (MAX_INPUT_CHARS + 1)), "input_too_long"),
        ({"workflow_name": "generate_report", "drag_mode": "draft"}, "missing_actor"),
        ({**body(), "aim": {"actor": 7, "input": "x", "mission": "m"}}, "missing_actor"),
    ],
    ids=[
        "empty_actor",
        "blank_input",
        "empty_mission",
        "mode_wrong_case",
        "workflow_not_registered",
        "input_too_long",
        "aim_missing",
        "actor_not_a_string",
    ],
)
def test_execute_invalid_aim_is_422_and_rejected(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog, payload, reason
) -> None:
    """An invalid AIM request is 422 with its reason and a rejected workflow.completed."""
    response = client.post(EXECUTE, json=payload, headers=bearer(token("admin")))
    assert response.status_code == 422
    assert reason in response.json["reasons"]
    assert response.json["outcome"] == "rejected"
    trace = response.headers["X-Request-ID"]
    assert reason in [e["failure_reason"] for e in event_log.of("aim.validation_failed", trace)]
    assert [e["outcome"] for e in event_log.of("workflow.completed", trace)] == ["rejected"]
    assert [e["outcome"] for e in event_log.of("audit.entry", trace)] == ["rejected"]


def test_unregistered_workflow_name_never_becomes_a_label(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """A client-invented workflow name is written as 'unregistered', the raw name kept aside."""
    name = "x" * 500
    response = client.post(EXECUTE, json=body(workflow=name), headers=bearer(token()))
    assert response.status_code == 422
    trace = response.headers["X-Request-ID"]
    for event_type in ("aim.request", "aim.validation_failed", "workflow.completed", "audit.entry"):
        for event in event_log.of(event_type, trace):
            assert event["workflow_name"] == "unregistered"
    (request,) = event_log.of("aim.request", trace)
    assert request["requested_workflow"] == name[:64]


def test_invalid_drag_mode_is_written_as_other(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """A client-invented DRAG mode is written as 'other' and an absent one as null."""
    weird = client.post(EXECUTE, json=body(mode="turbo-" * 20), headers=bearer(token()))
    absent_body = body()
    del absent_body["drag_mode"]
    absent = client.post(EXECUTE, json=absent_body, headers=bearer(token()))
    modes = {
        r.headers["X-Request-ID"]: {
            e["drag_mode"]
            for e in event_log.of("workflow.completed")
            if e["trace_id"] == r.headers["X-Request-ID"]
        }
        for r in (weird, absent)
    }
    assert modes == {
        weird.headers["X-Request-ID"]: {"other"},
        absent.headers["X-Request-ID"]: {None},
    }


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"workflow_name": ', "malformed_json"),
        (b"", "malformed_json"),
        (b"\xff\xfe not utf-8", "malformed_json"),
        (b'{"a": NaN}', "malformed_json"),
        (b"[1, 2, 3]", "body_not_object"),
        (b'"just a string"', "body_not_object"),
    ],
    ids=["truncated", "empty", "invalid_utf8", "nan_literal", "array", "string"],
)
def test_malformed_body_is_400_not_500(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog, data, error
) -> None:
    """A body that is not a JSON object is a 400 with a JSON error, and no AIM events."""
    response = client.post(
        EXECUTE, data=data, content_type="application/json", headers=bearer(token())
    )
    assert response.status_code == 400
    assert response.json["error"] == error
    trace = response.headers["X-Request-ID"]
    assert event_log.of("aim.request", trace) == []
    assert [e["status_code"] for e in event_log.of("http.request", trace)] == [400]


def test_body_over_64_kib_is_413(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """A request body over 64 KiB is refused with 413 before any workflow runs."""
    payload = body(text="z" * (64 * 1024))
    response = client.post(EXECUTE, json=payload, headers=bearer(token()))
    assert response.status_code == 413
    assert response.json["error"] == "body_too_large"
    assert event_log.of("workflow.completed") == []


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)], ids=["at_limit", "one_over"])
def test_body_limit_is_exactly_64_kib(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog, extra, status
) -> None:
    """A body of exactly 64 KiB is served and one byte more is 413: the limit is not off by one."""
    payload = json.dumps(body()).encode()
    data = payload + b" " * (64 * 1024 - len(payload) + extra)
    response = client.post(
        EXECUTE, data=data, content_type="application/json", headers=bearer(token())
    )
    assert response.status_code == status


def test_unknown_path_is_404_with_unmatched_endpoint(
    client: FlaskClient, event_log: EventLog
) -> None:
    """A request for an unknown path is a JSON 404 recorded with endpoint 'unmatched'."""
    response = client.get("/admin/../../etc/passwd-" + "a" * 300)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    trace = response.headers["X-Request-ID"]
    assert [e["endpoint"] for e in event_log.for_trace(trace)] == ["unmatched", "unmatched"]


def test_unusual_method_is_recorded_as_other(client: FlaskClient, event_log: EventLog) -> None:
    """A method outside the standard set is recorded as 'other', never as the client spelled it."""
    response = client.open("/healthz", method="PROPFIND")
    assert response.status_code == 405
    trace = response.headers["X-Request-ID"]
    assert {e["method"] for e in event_log.for_trace(trace)} == {"other"}


def test_wrong_method_on_known_route_is_405_json(client: FlaskClient, event_log: EventLog) -> None:
    """GET on the execute route answers a JSON 405 naming the allowed method."""
    response = client.get(EXECUTE)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.json["error"] == "method_not_allowed"


def test_route_template_is_the_endpoint(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """http.request events name the route template, and a request_started precedes each."""
    client.get("/workflows")
    client.post(EXECUTE, json=body(), headers=bearer(token()))
    started = [(e["method"], e["endpoint"]) for e in event_log.of("http.request_started")]
    finished = [(e["method"], e["endpoint"]) for e in event_log.of("http.request")]
    assert started == finished == [("GET", "/workflows"), ("POST", EXECUTE)]
    assert all(isinstance(e["status_code"], int) for e in event_log.of("http.request"))
    assert all(isinstance(e["duration_seconds"], float) for e in event_log.of("http.request"))


def test_workflows_listing_needs_no_token(client: FlaskClient) -> None:
    """GET /workflows lists the registry and the policy without authentication."""
    response = client.get("/workflows")
    assert response.status_code == 200
    names = {w["name"] for w in response.json["workflows"]}
    assert {"generate_report", "summarise_incident", "carbon_audit", "deploy_staging"} <= names
    assert response.json["policy"]["execute"] == ["admin", "approver"]


def test_trace_id_taken_from_traceparent(client: FlaskClient, event_log: EventLog) -> None:
    """A W3C traceparent header's trace-id becomes the trace_id of every event of the request."""
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = client.get("/healthz", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    assert response.headers["X-Request-ID"] == trace
    assert len(event_log.for_trace(trace)) == 2


def test_bad_request_id_replaced_by_fresh_uuid(client: FlaskClient, event_log: EventLog) -> None:
    """An X-Request-ID with unsafe characters is not trusted; a fresh trace id is used instead."""
    response = client.get("/healthz", headers={"X-Request-ID": "evil\u202e id with spaces"})
    trace = response.headers["X-Request-ID"]
    assert len(trace) == 32 and int(trace, 16) >= 0
    good = client.get("/healthz", headers={"X-Request-ID": "req-123.abc"})
    assert good.headers["X-Request-ID"] == "req-123.abc"


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "workflow_name": _json_values | st.sampled_from(["generate_report", "carbon_audit"]),
        "drag_mode": _json_values | st.sampled_from(list(DRAG_MODES)),
        "aim": _json_values
        | st.fixed_dictionaries(
            {}, optional={"actor": _json_values, "input": _json_values, "mission": _json_values}
        ),
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=_bodies)
def test_arbitrary_json_body_never_a_server_error(
    client: FlaskClient, token: Callable[..., str], payload
) -> None:
    """Whatever JSON object a client sends, execute answers a governed result, never a 5xx."""
    response = client.post(EXECUTE, json=payload, headers=bearer(token("admin")))
    assert response.status_code in {200, 422}, response.json
    assert response.json["outcome"] in {"success", "failure", "rejected"}


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_body_is_4xx(client: FlaskClient, token: Callable[..., str], raw) -> None:
    """Arbitrary bytes as a body give a 4xx JSON error or a governed answer, never a 5xx."""
    response = client.post(
        EXECUTE, data=raw, content_type="application/json", headers=bearer(token("admin"))
    )
    assert response.status_code < 500
    assert response.is_json


def test_validate_flags_role_not_permitted_as_422(
    client: FlaskClient, token: Callable[..., str], event_log: EventLog
) -> None:
    """validate tells an engineer that execute mode is not theirs: 422 role_not_permitted."""
    response = client.post(VALIDATE, json=body(mode="execute"), headers=bearer(token("engineer")))
    assert response.status_code == 422
    assert response.json == {
        "valid": False,
        "reasons": ["role_not_permitted"],
        "trace_id": response.headers["X-Request-ID"],
    }
    (failed,) = event_log.of("aim.validation_failed", response.headers["X-Request-ID"])
    assert (failed["failure_reason"], failed["drag_mode"]) == ("role_not_permitted", "execute")
