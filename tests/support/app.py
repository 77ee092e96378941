"""Helpers shared by the SustainBot tests: reading the event log back, request bodies, tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "docs" / "events.schema.json"
SECRET = "test-secret-that-is-long-enough-for-hs256!"
PERSON = "Alice Example"


def schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class EventLog:
    """Reads back a JSONL event log the way the exporter would: whole lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[bytes]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), "log ends in a partial line"
        return data.splitlines()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def of(self, event_type: str, trace_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e["event"] == event_type and (trace_id is None or e["trace_id"] == trace_id)
        ]

    def for_trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["trace_id"] == trace_id]

    def assert_valid(self) -> None:
        validator = schema_validator()
        for number, event in enumerate(self.events(), 1):
            errors = [e.message for e in validator.iter_errors(event)]
            assert not errors, f"line {number} breaks the contract: {errors}: {event}"


def body(
    workflow: str = "generate_report",
    mode: str | None = "draft",
    text: str = "Quarterly energy use fell by 12 percent.",
    actor: str = "sustainability analyst",
    mission: str = "summarise progress for the board",
) -> dict[str, Any]:
    return {
        "workflow_name": workflow,
        "drag_mode": mode,
        "aim": {"actor": actor, "input": text, "mission": mission},
    }


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}
