"""The Flask application: HTTP in, governance decisions out, every step written as an event."""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from sustainbot import __version__, emit
from sustainbot.auth import AuthError, Principal, TokenVerifier
from sustainbot.events import EventWriter
from sustainbot.governance import DRAG_MODES, POLICY, AimRequest, truncate, validate
from sustainbot.prescriptive import detect
from sustainbot.settings import Settings
from sustainbot.workflows import Workflow, default_registry

MAX_BODY_BYTES = 64 * 1024
# Methods outside this set are written as "other" so clients cannot mint label values.
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class _Service:
    settings: Settings
    writer: EventWriter
    verifier: TokenVerifier
    registry: Mapping[str, Workflow]


def create_app(
    settings: Settings,
    *,
    writer: EventWriter | None = None,
    registry: Mapping[str, Workflow] | None = None,
) -> Flask:
    """Build the service; raises NoKeyConfiguredError when no JWT key is configured."""
    service = _Service(
        settings=settings,
        writer=writer if writer is not None else EventWriter(settings.json_log_path),
        verifier=TokenVerifier(settings),
        registry=registry if registry is not None else default_registry(),
    )
    app = Flask("sustainbot")
    # One byte over the limit: werkzeug stops reading a chunked body (no Content-Length) at
    # MAX_CONTENT_LENGTH without an error, so _read_body needs that extra byte to tell a body
    # of exactly 64 KiB from a longer one.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.extensions["sustainbot"] = service
    _register_hooks(app, service)
    _register_routes(app, service)
    emit.app_started(
        emit.Trace(service.writer, uuid.uuid4().hex),
        version=__version__,
        phase=settings.phase,
        compliance_spec=settings.compliance_spec,
        pid=os.getpid(),
        auth_algorithm=service.verifier.algorithm,
    )
    return app


def trace_id_from(traceparent: str | None, request_id: str | None) -> str:
    """The W3C traceparent trace-id, else a well-formed X-Request-ID, else a new UUID (hex)."""
    parent = (traceparent or "").strip().lower()
    match = _TRACEPARENT.match(parent)
    if match and match.group(1) != "0" * 32 and not parent.startswith("ff"):
        return match.group(1)
    request_id = (request_id or "").strip()
    if _REQUEST_ID.match(request_id):
        return request_id
    return uuid.uuid4().hex


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    trace = g.get("trace")
    trace_id = trace.trace_id if trace is not None else None
    response = jsonify({"error": code, "message": message, "trace_id": trace_id, **extra})
    response.status_code = status
    return response


def _register_hooks(app: Flask, service: _Service) -> None:
    @app.before_request
    def start_request() -> None:
        g.trace = emit.Trace(
            service.writer,
            trace_id_from(request.headers.get("traceparent"), request.headers.get("X-Request-ID")),
        )
        g.started = time.perf_counter()
        g.method = request.method if request.method in KNOWN_METHODS else "other"
        # The route template, never the raw path: raw paths are client-controlled.
        g.endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        emit.http_request_started(g.trace, method=g.method, endpoint=g.endpoint)

    @app.after_request
    def finish_request(response: Response) -> Response:
        if "started" not in g:
            return response
        emit.http_request(
            g.trace,
            method=g.method,
            endpoint=g.endpoint,
            status_code=response.status_code,
            duration_seconds=time.perf_counter() - g.started,
        )
        response.headers["X-Request-ID"] = g.trace.trace_id
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = re.sub(r"[^a-z]+", "_", (exc.name or "error").lower()).strip("_")
        response = _error(exc.code or 500, code, exc.description or code)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        # A bug on our side; a client mistake never lands here.
        app.logger.exception("unhandled error", exc_info=exc)
        return _error(500, "internal_error", "unexpected server error")


def _register_routes(app: Flask, service: _Service) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        written = g.trace.all_written
        # A write that already failed in this request decides; else try to open the file now.
        status = service.writer.check() if written else service.writer.status
        if written and status.writable:
            return jsonify({"status": "ok", "event_log": "writable"})
        response = jsonify(
            {"status": "unavailable", "event_log": "unwritable", "error": status.error}
        )
        response.status_code = 503
        return response

    @app.get("/workflows")
    def list_workflows() -> Response:
        return jsonify(
            {
                "workflows": [
                    {"name": w.name, "description": w.description}
                    for w in service.registry.values()
                ],
                "drag_modes": list(DRAG_MODES),
                "policy": {mode: sorted(POLICY[mode]) for mode in DRAG_MODES},
            }
        )

    @app.post("/governance/validate")
    def governance_validate() -> Response:
        checked = _admit(service)
        if isinstance(checked, Response):
            return checked
        _, aim = checked
        if aim.valid:
            return jsonify({"valid": True, "trace_id": g.trace.trace_id})
        response = jsonify(
            {"valid": False, "reasons": list(aim.reasons), "trace_id": g.trace.trace_id}
        )
        response.status_code = 422
        return response

    @app.post("/workflows/governed/execute")
    def governed_execute() -> Response:
        checked = _admit(service)
        if isinstance(checked, Response):
            return checked
        principal, aim = checked
        if not g.trace.all_written:
            return _log_unavailable(service)
        return _execute(service, principal, aim)


def _log_unavailable(service: _Service) -> Response:
    return _error(
        503,
        "event_log_unavailable",
        "the audit log cannot be written, so no workflow runs",
        event_log_error=service.writer.status.error,
    )


def _authenticate(service: _Service) -> Principal | Response:
    try:
        principal = service.verifier.verify(request.headers.get("Authorization"))
    except AuthError as exc:
        if exc.failure_type != "missing_token":
            emit.auth_jwt_validated(g.trace, outcome="failure", failure_type=exc.failure_type)
        emit.auth_failed(g.trace, failure_type=exc.failure_type)
        response = _error(401, "unauthorized", exc.detail, failure_type=exc.failure_type)
        response.headers["WWW-Authenticate"] = 'Bearer realm="sustainbot"'
        return response
    emit.auth_jwt_validated(g.trace, outcome="success", actor_role=principal.role)
    return principal


def _read_body() -> dict[str, Any] | Response:
    try:
        raw = request.get_data(cache=True)
        too_large = len(raw) > MAX_BODY_BYTES
    except RequestEntityTooLarge:
        raw, too_large = b"", True
    if too_large:
        return _error(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(400, "malformed_json", "request body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "body_not_object", "request body must be a JSON object")
    return body


def _admit(service: _Service) -> tuple[Principal, AimRequest] | Response:
    """Authenticate, parse and AIM-validate a governance request, writing its events."""
    principal = _authenticate(service)
    if isinstance(principal, Response):
        return principal
    body = _read_body()
    if isinstance(body, Response):
        return body
    aim = validate(body, principal.role, service.registry.keys())
    emit.aim_request(
        g.trace,
        drag_mode=aim.drag_mode,
        actor_role=principal.role,
        workflow_name=aim.workflow_name,
        requested_workflow=aim.requested_workflow,
    )
    for reason in aim.reasons:
        emit.aim_validation_failed(
            g.trace, failure_reason=reason, drag_mode=aim.drag_mode, workflow_name=aim.workflow_name
        )
    return principal, aim


def _execute(service: _Service, principal: Principal, aim: AimRequest) -> Response:
    started = time.perf_counter()
    output: str | None = None
    error_type: str | None = None
    if not aim.valid:
        outcome = "rejected"
    else:
        assert aim.input is not None
        try:
            output = service.registry[aim.workflow_name].run(aim.input)
            outcome = "success"
        except Exception as exc:  # a workflow's failure is an outcome, not a server error
            outcome, error_type = "failure", type(exc).__name__
    duration = time.perf_counter() - started
    emit.workflow_completed(
        g.trace,
        workflow_name=aim.workflow_name,
        outcome=outcome,
        drag_mode=aim.drag_mode,
        duration_seconds=duration,
        error_type=error_type,
    )
    emit.audit_entry(
        g.trace,
        outcome=outcome,
        drag_mode=aim.drag_mode,
        decision="deny" if outcome == "rejected" else "allow",
        reasons=aim.reasons,
        actor=principal.name,
        actor_role=principal.role,
        workflow_name=aim.workflow_name,
        mission=truncate(aim.mission) if aim.mission else None,
        aim_actor=truncate(aim.actor) if aim.actor else None,
        input_sha256=hashlib.sha256(aim.input.encode()).hexdigest() if aim.input else None,
        input_chars=len(aim.input) if aim.input else 0,
        requested_workflow=aim.requested_workflow,
        error_type=error_type,
    )
    detections: list[dict[str, str]] = []
    if outcome != "rejected":
        sources = [("input", aim.input or "")]
        if output is not None:
            sources.append(("output", output))
        for source, text in sources:
            for found in detect(text):
                detections.append(
                    {"phrase_type": found.phrase_type, "phrase": found.phrase, "source": source}
                )
                emit.prescriptive_language_detected(
                    g.trace,
                    drag_mode=aim.drag_mode,
                    phrase_type=found.phrase_type,
                    phrase=found.phrase,
                    source=source,
                    workflow_name=aim.workflow_name,
                )
    if not g.trace.all_written:
        # The audit trail is incomplete: withhold the result rather than answer without it.
        return _log_unavailable(service)
    if outcome == "rejected":
        forbidden = "role_not_permitted" in aim.reasons
        return _error(
            403 if forbidden else 422,
            "role_not_permitted" if forbidden else "validation_failed",
            "the request was rejected by governance",
            outcome="rejected",
            reasons=list(aim.reasons),
        )
    return jsonify(
        {
            "trace_id": g.trace.trace_id,
            "workflow_name": aim.workflow_name,
            "drag_mode": aim.drag_mode,
            "outcome": outcome,
            "output": output,
            "error_type": error_type,
            "detections": detections,
        }
    )


def wsgi_app_from_env() -> Flask:
    """Entry point for WSGI servers other than ``sustainbot serve`` (reads the environment)."""
    from sustainbot.settings import load_settings

    return create_app(load_settings())
