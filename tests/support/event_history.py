"""Generate a few hours of contract events (docs/events.md) for the backfill tests.

Written independently of the exporter: lines following the contract, seeded so every run
produces the same file. The generator also returns the facts the tests check against.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.contract import contract_line

DRAG_MODES = ("draft", "research", "analysis", "grunt", "execute")
ROLES = ("engineer", "analyst", "approver", "admin")
WORKFLOWS = ("generate_report", "summarise_incident", "carbon_audit", "deploy_staging")
REASONS = ("missing_actor", "missing_input", "invalid_mode", "input_too_long")
PHRASE_TYPES = ("obligation", "recommendation", "absolute", "imperative")
ROUTES = (
    ("GET", "/healthz"),
    ("POST", "/workflows/governed/execute"),
    ("POST", "/governance/validate"),
    ("GET", "/workflows"),
)


@dataclass
class Generated:
    """What was written, for the tests' expectations."""

    start: float
    end: float
    deployments: list[tuple[float, str]] = field(default_factory=list)
    drag_modes: set[str] = field(default_factory=set)
    workflows: set[str] = field(default_factory=set)
    # (event time, drag_mode) of every prescriptive language detection.
    detections: list[tuple[float, str]] = field(default_factory=list)


def _stamp(t: float) -> str:
    moment = datetime.fromtimestamp(t, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def write_events(path: Path, start: float, hours: float = 3.0, seed: int = 7) -> Generated:
    """Write events from `start` for `hours`, one burst every 20 s, and describe them."""
    rng = random.Random(seed)
    out = Generated(start=start, end=start + hours * 3600)
    lines: list[bytes] = []
    serial = 0

    def emit(t: float, event: str, **fields: Any) -> None:
        nonlocal serial
        serial += 1
        lines.append(
            contract_line(
                event, _stamp(t), logger="sustainbot", trace_id=f"{serial:032x}", **fields
            )
        )

    versions = [(start, "1.4.0"), (start + hours * 3600 / 2, "1.5.0")]
    for t, version in versions:
        emit(t, "app.started", version=version, phase="pilot", compliance_spec="aim-drag-v1")
        out.deployments.append((t, version))

    t = start + 1.0
    while t < out.end - 1:
        mode = rng.choice(DRAG_MODES)
        workflow = rng.choice(WORKFLOWS)
        out.drag_modes.add(mode)
        out.workflows.add(workflow)
        method, endpoint = rng.choice(ROUTES)
        emit(t, "http.request_started", method=method, endpoint=endpoint)
        jwt_ok = rng.random() < 0.9
        emit(t + 0.01, "auth.jwt_validated", outcome="success" if jwt_ok else "failure")
        if not jwt_ok:
            emit(t + 0.01, "auth.failed", failure_type="invalid_signature")
        emit(
            t + 0.02,
            "aim.request",
            drag_mode=mode,
            actor_role=rng.choice(ROLES),
            workflow_name=workflow,
        )
        if rng.random() < 0.3:
            emit(
                t + 0.03,
                "aim.validation_failed",
                failure_reason=rng.choice(REASONS),
                drag_mode=mode,
            )
        outcome = rng.choices(("success", "failure", "rejected"), (8, 1, 1))[0]
        # Mostly fast, sometimes past the 30 s alert threshold.
        duration = rng.choice((0.2, 0.7, 3.0, 12.0, 45.0))
        extra = {"error_type": "WorkflowError"} if outcome == "failure" else {}
        emit(
            t + 0.04,
            "workflow.completed",
            workflow_name=workflow,
            outcome=outcome,
            drag_mode=mode,
            duration_seconds=duration,
            **extra,
        )
        emit(
            t + 0.05,
            "audit.entry",
            outcome=outcome,
            drag_mode=mode,
            actor="Jane Example",
            mission="quarterly report",
            decision="allowed" if outcome != "rejected" else "denied",
        )
        if rng.random() < 0.15:
            emit(
                t + 0.06,
                "prescriptive_language.detected",
                drag_mode=mode,
                phrase_type=rng.choice(PHRASE_TYPES),
                phrase="must",
            )
            out.detections.append((t + 0.06, mode))
        emit(
            t + 0.07,
            "http.request",
            method=method,
            endpoint=endpoint,
            status_code=200,
            duration_seconds=rng.choice((0.004, 0.02, 0.3)),
        )
        t += 20.0
    path.write_bytes(b"".join(lines))
    return out


def write_pod_logs(
    directory: Path, start: float, names: list[str], *, hours: float = 1.5, seed: int = 7
) -> tuple[Generated, int]:
    """One container's log history as the kubelet or logrotate leaves it: `write_events`'s
    lines cut into consecutive generations named `names` (oldest first; `.gz` ones gzipped).

    Returns what was written and its number of lines."""
    directory.mkdir(parents=True)
    whole = directory / ".whole"
    generated = write_events(whole, start, hours=hours, seed=seed)
    lines = whole.read_bytes().splitlines(keepends=True)
    whole.unlink()
    size = -(-len(lines) // len(names))
    for i, name in enumerate(names):
        data = b"".join(lines[i * size : (i + 1) * size])
        (directory / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return generated, len(lines)
