"""Run one admitted governed request, write its outcome and audit events, and decide the answer.

Nothing here knows Flask: the caller passes the principal, the AIM request, the workflows, the
request's Trace and a clock, and turns the returned Answer into its HTTP response.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sustainbot import emit
from sustainbot.auth import Principal
from sustainbot.governance import AimRequest, truncate
from sustainbot.prescriptive import detect
from sustainbot.workflows import Workflow


@dataclass(frozen=True, slots=True)
class Answer:
    """What execute answers: an HTTP status and JSON body, and whether the audit trail is whole."""

    status: int
    body: dict[str, Any]
    # False when an event of the request could not be written: the answer is then 503, and a
    # result the workflow produced is withheld.
    audit_written: bool = True


def error_body(code: str, message: str, trace_id: str | None, **extra: Any) -> dict[str, Any]:
    """The JSON body of every refusal: the error code, a message and the request's trace id."""
    return {"error": code, "message": message, "trace_id": trace_id, **extra}


def execute(
    principal: Principal,
    aim: AimRequest,
    *,
    registry: Mapping[str, Workflow],
    trace: emit.Trace,
    clock: Callable[[], float],
) -> Answer:
    """Run the workflow if governance allows it and answer; no result leaves without its audit."""
    if not trace.all_written:
        # No workflow runs when its audit record could not be written.
        return _log_unavailable(trace)
    started = clock()
    output, outcome, error_type = _run(registry, aim)
    emit.workflow_completed(
        trace,
        workflow_name=aim.workflow_name,
        outcome=outcome,
        drag_mode=aim.drag_mode,
        duration_seconds=clock() - started,
        error_type=error_type,
    )
    _audit(trace, principal, aim, outcome, error_type)
    detections = [] if outcome == "rejected" else _scan(trace, aim, output)
    if not trace.all_written:
        # The audit trail is incomplete: withhold the result rather than answer without it.
        return _log_unavailable(trace)
    return _answer(trace.trace_id, aim, outcome, output, error_type, detections)


def _run(registry: Mapping[str, Workflow], aim: AimRequest) -> tuple[str | None, str, str | None]:
    """The workflow's output, the outcome and the error type; a rejected request runs nothing."""
    if not aim.valid:
        return None, "rejected", None
    assert aim.input is not None
    try:
        return registry[aim.workflow_name].run(aim.input), "success", None
    except Exception as exc:  # a workflow's failure is an outcome, not a server error
        return None, "failure", type(exc).__name__


def _audit(
    trace: emit.Trace,
    principal: Principal,
    aim: AimRequest,
    outcome: str,
    error_type: str | None,
) -> None:
    emit.audit_entry(
        trace,
        outcome=outcome,
        drag_mode=aim.drag_mode,
        decision="deny" if outcome == "rejected" else "allow",
        reasons=aim.reasons,
        actor=principal.name,
        actor_role=principal.role,
        workflow_name=aim.workflow_name,
        mission=truncate(aim.mission) if aim.mission else None,
        aim_actor=truncate(aim.actor) if aim.actor else None,
        # The input itself is never logged, only its hash and length.
        input_sha256=hashlib.sha256(aim.input.encode()).hexdigest() if aim.input else None,
        input_chars=len(aim.input) if aim.input else 0,
        requested_workflow=aim.requested_workflow,
        error_type=error_type,
    )


def _scan(trace: emit.Trace, aim: AimRequest, output: str | None) -> list[dict[str, str]]:
    """Write one event per prescriptive phrase of the input and output; return them all."""
    sources = [("input", aim.input or "")]
    if output is not None:
        sources.append(("output", output))
    detections: list[dict[str, str]] = []
    for source, text in sources:
        for found in detect(text):
            detections.append(
                {"phrase_type": found.phrase_type, "phrase": found.phrase, "source": source}
            )
            emit.prescriptive_language_detected(
                trace,
                drag_mode=aim.drag_mode,
                phrase_type=found.phrase_type,
                phrase=found.phrase,
                source=source,
                workflow_name=aim.workflow_name,
            )
    return detections


def _answer(
    trace_id: str,
    aim: AimRequest,
    outcome: str,
    output: str | None,
    error_type: str | None,
    detections: list[dict[str, str]],
) -> Answer:
    """403 or 422 for a request governance rejected, else 200 with the run's result."""
    if outcome == "rejected":
        forbidden = "role_not_permitted" in aim.reasons
        return Answer(
            403 if forbidden else 422,
            error_body(
                "role_not_permitted" if forbidden else "validation_failed",
                "the request was rejected by governance",
                trace_id,
                outcome="rejected",
                reasons=list(aim.reasons),
            ),
        )
    return Answer(
        200,
        {
            "trace_id": trace_id,
            "workflow_name": aim.workflow_name,
            "drag_mode": aim.drag_mode,
            "outcome": outcome,
            "output": output,
            "error_type": error_type,
            "detections": detections,
        },
    )


def _log_unavailable(trace: emit.Trace) -> Answer:
    return Answer(
        503,
        error_body(
            "event_log_unavailable",
            "the audit log cannot be written, so no workflow runs",
            trace.trace_id,
            event_log_error=trace.writer.status.error,
        ),
        audit_written=False,
    )
