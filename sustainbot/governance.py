"""AIM validation and the DRAG policy: who may run which mode, and what a request must carry.

AIM = Actor (the persona the AI plays), Input (the text to work on), Mission (why).
DRAG = the mode of work: draft, research, analysis, grunt, execute.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("engineer", "analyst", "approver", "admin")
DRAG_MODES = ("draft", "research", "analysis", "grunt", "execute")

# The policy table (docs/sustainbot.md shows the same): mode -> roles allowed to use it.
POLICY: Mapping[str, frozenset[str]] = {
    "draft": frozenset(ROLES),
    "research": frozenset(ROLES),
    "analysis": frozenset(ROLES),
    "grunt": frozenset(ROLES),
    "execute": frozenset({"approver", "admin"}),
}

# Reasons, in the order they are reported.
REASONS = (
    "missing_actor",
    "missing_input",
    "missing_mission",
    "invalid_mode",
    "unknown_workflow",
    "input_too_long",
    "role_not_permitted",
)

MAX_INPUT_CHARS = 10_000
# Free-text fields kept in events are truncated so one request cannot bloat the log.
MAX_ECHO_CHARS = 200
UNREGISTERED = "unregistered"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class AimRequest:
    """A governance request as received, plus the label-safe values derived from it."""

    workflow_name: str  # a registered name, or "unregistered"
    requested_workflow: str | None  # the client's name, truncated (only when unregistered)
    drag_mode: str | None  # a DRAG mode, "other" when invalid, None when absent
    actor: str | None  # the AIM persona, not the person
    input: str | None
    mission: str | None
    reasons: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.reasons


def truncate(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    return text if len(text) <= limit else text[:limit]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def validate(body: Mapping[str, Any], role: str, workflows: Collection[str]) -> AimRequest:
    """Check a parsed request body against AIM and the DRAG policy for ``role``.

    Every failing check is reported, not just the first, so a client can fix them at once.
    """
    aim = body.get("aim")
    aim = aim if isinstance(aim, Mapping) else {}
    actor, text, mission = (
        _text(aim.get("actor")),
        _text(aim.get("input")),
        _text(aim.get("mission")),
    )
    raw_mode = body.get("drag_mode")
    mode: str | None
    if raw_mode is None:
        mode = None
    elif isinstance(raw_mode, str) and raw_mode in DRAG_MODES:
        mode = raw_mode
    else:
        mode = OTHER
    raw_workflow = body.get("workflow_name")
    if isinstance(raw_workflow, str) and raw_workflow in workflows:
        workflow, requested = raw_workflow, None
    else:
        workflow = UNREGISTERED
        requested = truncate(raw_workflow, 64) if isinstance(raw_workflow, str) else None

    reasons: list[str] = []
    if actor is None:
        reasons.append("missing_actor")
    if text is None:
        reasons.append("missing_input")
    if mission is None:
        reasons.append("missing_mission")
    if mode is None or mode == OTHER:
        reasons.append("invalid_mode")
    if workflow == UNREGISTERED:
        reasons.append("unknown_workflow")
    if text is not None and len(text) > MAX_INPUT_CHARS:
        reasons.append("input_too_long")
    if mode is not None and mode in POLICY and role not in POLICY[mode]:
        reasons.append("role_not_permitted")
    return AimRequest(
        workflow_name=workflow,
        requested_workflow=requested,
        drag_mode=mode,
        actor=actor,
        input=text,
        mission=mission,
        reasons=tuple(reasons),
    )
