"""The Flask application: HTTP in, governance decisions out, every step written as an event."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from sustainbot import __version__, emit, governed
from sustainbot.auth import AuthError, Principal, TokenVerifier
from sustainbot.events import EventWriter
from sustainbot.governance import DRAG_MODES, POLICY, AimRequest, validate
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
    clock: Callable[[], float]  # for durations: monotonic seconds


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
        clock=time.perf_counter,
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
    response = jsonify(governed.error_body(code, message, trace_id, **extra))
    response.status_code = status
    return response


def _register_hooks(app: Flask, service: _Service) -> None:
    @app.before_request
    def start_request() -> None:
        g.trace = emit.Trace(
            service.writer,
            trace_id_from(request.headers.get("traceparent"), request.headers.get("X-Request-ID")),
        )
        g.started = service.clock()
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
            duration_seconds=service.clock() - g.started,
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
        result = governed.execute(
            principal, aim, registry=service.registry, trace=g.trace, clock=service.clock
        )
        response = jsonify(result.body)
        response.status_code = result.status
        return response


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


def wsgi_app_from_env() -> Flask:
    """Entry point for WSGI servers other than ``sustainbot serve`` (reads the environment)."""
    from sustainbot.settings import load_settings

    return create_app(load_settings())
