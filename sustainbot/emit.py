"""One function per event type of the contract (docs/events.md), writing its line to a Trace.

The event names, and the logger, level and message of each, are written here and nowhere else;
each function's keyword parameters are the event's fields, in the order they appear on the line.
An optional field without a value (None or "") is left off the line, not written as null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sustainbot.events import EventWriter


@dataclass(slots=True)
class Trace:
    """Where one trace's events go: the writer, their trace id, and whether all were written."""

    writer: EventWriter
    trace_id: str
    # False once any write of this trace failed: the audit trail of the request is incomplete.
    all_written: bool = True

    def write(
        self, event: str, area: str, message: str, level: str = "INFO", **fields: Any
    ) -> None:
        ok = self.writer.emit(
            event,
            trace_id=self.trace_id,
            logger=f"sustainbot.{area}",
            message=message,
            level=level,
            **fields,
        )
        if not ok:
            self.all_written = False


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None and value != ""}


def app_started(
    trace: Trace,
    *,
    version: str,
    phase: str,
    compliance_spec: str,
    pid: int,
    auth_algorithm: str,
) -> None:
    trace.write(
        "app.started",
        "app",
        f"SustainBot {version} started",
        version=version,
        phase=phase,
        compliance_spec=compliance_spec,
        pid=pid,
        auth_algorithm=auth_algorithm,
    )


def app_worker_started(trace: Trace, *, pid: int) -> None:
    trace.write("app.worker_started", "app", f"worker {pid} started", pid=pid)


def app_worker_exited(trace: Trace, *, pid: int) -> None:
    trace.write("app.worker_exited", "app", f"worker {pid} exited", pid=pid)


def app_stopped(trace: Trace, *, pid: int) -> None:
    trace.write("app.stopped", "app", "SustainBot stopped", pid=pid)


def http_request_started(trace: Trace, *, method: str, endpoint: str, pid: int) -> None:
    trace.write(
        "http.request_started",
        "http",
        f"{method} {endpoint} started",
        method=method,
        endpoint=endpoint,
        pid=pid,
    )


def http_request(
    trace: Trace,
    *,
    method: str,
    endpoint: str,
    status_code: int,
    duration_seconds: float,
    pid: int,
) -> None:
    trace.write(
        "http.request",
        "http",
        f"{method} {endpoint} {status_code}",
        method=method,
        endpoint=endpoint,
        status_code=status_code,
        duration_seconds=duration_seconds,
        pid=pid,
    )


def auth_jwt_validated(
    trace: Trace,
    *,
    outcome: str,
    failure_type: str | None = None,
    actor_role: str | None = None,
) -> None:
    """``failure_type`` goes with outcome ``failure``, ``actor_role`` with ``success``."""
    failed = outcome == "failure"
    trace.write(
        "auth.jwt_validated",
        "auth",
        "bearer token rejected" if failed else "bearer token accepted",
        level="WARNING" if failed else "INFO",
        outcome=outcome,
        **_present(failure_type=failure_type, actor_role=actor_role),
    )


def auth_failed(trace: Trace, *, failure_type: str) -> None:
    trace.write(
        "auth.failed",
        "auth",
        f"authentication failed: {failure_type}",
        level="WARNING",
        failure_type=failure_type,
    )


def aim_request(
    trace: Trace,
    *,
    drag_mode: str | None,
    actor_role: str,
    workflow_name: str,
    requested_workflow: str | None = None,
) -> None:
    trace.write(
        "aim.request",
        "governance",
        f"AIM request for {workflow_name} in mode {drag_mode}",
        drag_mode=drag_mode,
        actor_role=actor_role,
        workflow_name=workflow_name,
        **_present(requested_workflow=requested_workflow),
    )


def aim_validation_failed(
    trace: Trace, *, failure_reason: str, drag_mode: str | None, workflow_name: str
) -> None:
    trace.write(
        "aim.validation_failed",
        "governance",
        f"AIM validation failed: {failure_reason}",
        level="WARNING",
        failure_reason=failure_reason,
        drag_mode=drag_mode,
        workflow_name=workflow_name,
    )


def workflow_completed(
    trace: Trace,
    *,
    workflow_name: str,
    outcome: str,
    drag_mode: str | None,
    duration_seconds: float,
    error_type: str | None = None,
) -> None:
    trace.write(
        "workflow.completed",
        "workflows",
        f"workflow {workflow_name} {outcome}",
        level="ERROR" if outcome == "failure" else "INFO",
        workflow_name=workflow_name,
        outcome=outcome,
        drag_mode=drag_mode,
        duration_seconds=duration_seconds,
        **_present(error_type=error_type),
    )


def audit_entry(
    trace: Trace,
    *,
    outcome: str,
    drag_mode: str | None,
    decision: str,
    reasons: Sequence[str],
    actor: str,
    actor_role: str,
    workflow_name: str,
    mission: str | None,
    aim_actor: str | None,
    input_sha256: str | None,
    input_chars: int,
    requested_workflow: str | None = None,
    error_type: str | None = None,
) -> None:
    """The audit record of one execute attempt; ``actor`` is the person, written nowhere else."""
    trace.write(
        "audit.entry",
        "audit",
        f"execute {workflow_name}: {outcome}",
        outcome=outcome,
        drag_mode=drag_mode,
        decision=decision,
        reasons=list(reasons),
        actor=actor,
        actor_role=actor_role,
        workflow_name=workflow_name,
        # Written as null when absent (a rejected request may lack them), unlike the optional
        # fields after them, which are left off.
        mission=mission,
        aim_actor=aim_actor,
        input_sha256=input_sha256,
        input_chars=input_chars,
        **_present(requested_workflow=requested_workflow, error_type=error_type),
    )


def prescriptive_language_detected(
    trace: Trace,
    *,
    drag_mode: str | None,
    phrase_type: str,
    phrase: str,
    source: str,
    workflow_name: str,
) -> None:
    trace.write(
        "prescriptive_language.detected",
        "prescriptive",
        f"{phrase_type} phrase {phrase!r} in {source}",
        drag_mode=drag_mode,
        phrase_type=phrase_type,
        phrase=phrase,
        source=source,
        workflow_name=workflow_name,
    )
