"""The service's endpoints as one Flask blueprint: authenticate, read and admit a request, answer.

The views find their dependencies in ``current_app.extensions["sustainbot"]`` (a Service, put
there by ``create_app``) and the request's ``emit.Trace`` in ``g.trace`` (set by the app's
before-request hook, so requests no route matches are traced too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from sustainbot import emit, governed
from sustainbot.auth import AuthError, Principal, TokenVerifier
from sustainbot.events import EventWriter
from sustainbot.governance import DRAG_MODES, POLICY, AimRequest, validate
from sustainbot.workflows import Workflow

MAX_BODY_BYTES = 64 * 1024

blueprint = Blueprint("sustainbot", __name__)


@dataclass(frozen=True, slots=True)
class Service:
    """What the views need, built once from the settings by ``create_app``."""

    writer: EventWriter
    verifier: TokenVerifier
    registry: Mapping[str, Workflow]
    clock: Callable[[], float]  # for durations: monotonic seconds


def _service() -> Service:
    return cast(Service, current_app.extensions["sustainbot"])


def _trace() -> emit.Trace:
    return cast(emit.Trace, g.trace)


def refusal(status: int, code: str, message: str, **extra: Any) -> Response:
    """A JSON error response carrying the request's trace id (none if it never got one)."""
    trace = g.get("trace")
    trace_id = trace.trace_id if trace is not None else None
    response = jsonify(governed.error_body(code, message, trace_id, **extra))
    response.status_code = status
    return response


@blueprint.get("/healthz")
def healthz() -> Response:
    writer, written = _service().writer, _trace().all_written
    # A write that already failed in this request decides; else try to open the file now.
    status = writer.check() if written else writer.status
    if written and status.writable:
        return jsonify({"status": "ok", "event_log": "writable"})
    response = jsonify({"status": "unavailable", "event_log": "unwritable", "error": status.error})
    response.status_code = 503
    return response


@blueprint.get("/workflows")
def list_workflows() -> Response:
    return jsonify(
        {
            "workflows": [
                {"name": w.name, "description": w.description} for w in _service().registry.values()
            ],
            "drag_modes": list(DRAG_MODES),
            "policy": {mode: sorted(POLICY[mode]) for mode in DRAG_MODES},
        }
    )


@blueprint.post("/governance/validate")
def governance_validate() -> Response:
    checked = _admit(_service())
    if isinstance(checked, Response):
        return checked
    _, aim = checked
    trace_id = _trace().trace_id
    if aim.valid:
        return jsonify({"valid": True, "trace_id": trace_id})
    response = jsonify({"valid": False, "reasons": list(aim.reasons), "trace_id": trace_id})
    response.status_code = 422
    return response


@blueprint.post("/workflows/governed/execute")
def governed_execute() -> Response:
    service = _service()
    checked = _admit(service)
    if isinstance(checked, Response):
        return checked
    principal, aim = checked
    result = governed.execute(
        principal, aim, registry=service.registry, trace=_trace(), clock=service.clock
    )
    response = jsonify(result.body)
    response.status_code = result.status
    return response


def _admit(service: Service) -> tuple[Principal, AimRequest] | Response:
    """Authenticate, parse and AIM-validate a governance request, writing its events."""
    principal = _authenticate(service.verifier)
    if isinstance(principal, Response):
        return principal
    body = _read_body()
    if isinstance(body, Response):
        return body
    aim = validate(body, principal.role, service.registry.keys())
    trace = _trace()
    emit.aim_request(
        trace,
        drag_mode=aim.drag_mode,
        actor_role=principal.role,
        workflow_name=aim.workflow_name,
        requested_workflow=aim.requested_workflow,
    )
    for reason in aim.reasons:
        emit.aim_validation_failed(
            trace, failure_reason=reason, drag_mode=aim.drag_mode, workflow_name=aim.workflow_name
        )
    return principal, aim


def _authenticate(verifier: TokenVerifier) -> Principal | Response:
    trace = _trace()
    try:
        principal = verifier.verify(request.headers.get("Authorization"))
    except AuthError as exc:
        if exc.failure_type != "missing_token":
            emit.auth_jwt_validated(trace, outcome="failure", failure_type=exc.failure_type)
        emit.auth_failed(trace, failure_type=exc.failure_type)
        response = refusal(401, "unauthorized", exc.detail, failure_type=exc.failure_type)
        response.headers["WWW-Authenticate"] = 'Bearer realm="sustainbot"'
        return response
    emit.auth_jwt_validated(trace, outcome="success", actor_role=principal.role)
    return principal


def _read_body() -> dict[str, Any] | Response:
    try:
        raw = request.get_data(cache=True)
        too_large = len(raw) > MAX_BODY_BYTES
    except RequestEntityTooLarge:
        raw, too_large = b"", True
    if too_large:
        return refusal(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return refusal(400, "malformed_json", "request body is not valid JSON")
    if not isinstance(body, dict):
        return refusal(400, "body_not_object", "request body must be a JSON object")
    return body
