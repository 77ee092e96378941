"""The service factory: the Flask app around one Settings value, tracing every request as events.

``create_app`` builds the writer, verifier and workflows once, registers the endpoints'
blueprint (``sustainbot.routes``), and adds the app-wide parts: the hooks that give each request
its trace and its two http events, and the handlers that answer every error as JSON.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from sustainbot import __version__, emit
from sustainbot.auth import TokenVerifier
from sustainbot.events import EventWriter
from sustainbot.routes import MAX_BODY_BYTES, Service, blueprint, refusal
from sustainbot.settings import Settings
from sustainbot.workflows import Workflow, default_registry

# Methods outside this set are written as "other" so clients cannot mint label values.
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def create_app(
    settings: Settings,
    *,
    writer: EventWriter | None = None,
    registry: Mapping[str, Workflow] | None = None,
) -> Flask:
    """Build the service; raises NoKeyConfiguredError when no JWT key is configured."""
    service = Service(
        writer=writer if writer is not None else EventWriter(settings.json_log_path),
        verifier=TokenVerifier(settings),
        registry=registry if registry is not None else default_registry(),
        clock=time.perf_counter,
    )
    app = Flask("sustainbot")
    # One byte over the limit: werkzeug stops reading a chunked body (no Content-Length) at
    # MAX_CONTENT_LENGTH without an error, so the body reader needs that extra byte to tell a
    # body of exactly 64 KiB from a longer one.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.extensions["sustainbot"] = service
    _register_hooks(app, service)
    _register_error_handlers(app)
    app.register_blueprint(blueprint)
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


def _register_hooks(app: Flask, service: Service) -> None:
    # On the app, not the blueprint: requests that no route matches are traced too.
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
        # The process serving it: the exporter counts requests in flight per process, so a
        # process that dies with requests in flight can be forgotten (docs/events.md).
        emit.http_request_started(g.trace, method=g.method, endpoint=g.endpoint, pid=os.getpid())

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
            pid=os.getpid(),
        )
        response.headers["X-Request-ID"] = g.trace.trace_id
        return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = re.sub(r"[^a-z]+", "_", (exc.name or "error").lower()).strip("_")
        response = refusal(exc.code or 500, code, exc.description or code)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        # A bug on our side; a client mistake never lands here.
        app.logger.exception("unhandled error", exc_info=exc)
        return refusal(500, "internal_error", "unexpected server error")


def wsgi_app_from_env() -> Flask:
    """Entry point for WSGI servers other than ``sustainbot serve`` (reads the environment)."""
    from sustainbot.settings import load_settings

    return create_app(load_settings())
