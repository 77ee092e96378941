#!/usr/bin/env python3
"""Drive a short, readable scenario against a running SustainBot.

Usage: demo_scenario.py BASE_URL   (e.g. http://127.0.0.1:5000)

Tokens are minted with the same JWT settings as the service (SUSTAINBOT_JWT_SECRET, or
SUSTAINBOT_JWT_PRIVATE_KEY for RS256) read from the environment. Prints one line per request and
exits 1 if any answer differs from what the service should say (in particular any 5xx).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from sustainbot.auth import mint_token
from sustainbot.settings import Settings, SettingsError


@dataclass(frozen=True)
class Step:
    label: str
    method: str
    path: str
    expect: int
    role: str | None = None  # None: no token
    body: dict[str, Any] | bytes | None = None
    raw_token: str | None = None


def aim(workflow: str, mode: str, text: str, mission: str = "demo") -> dict[str, Any]:
    return {
        "workflow_name": workflow,
        "drag_mode": mode,
        "aim": {"actor": "sustainability assistant", "input": text, "mission": mission},
    }


EXECUTE = "/workflows/governed/execute"
STEPS = [
    Step("health", "GET", "/healthz", 200),
    Step("list workflows", "GET", "/workflows", 200),
    Step(
        "analyst drafts a report",
        "POST",
        EXECUTE,
        200,
        "analyst",
        aim("generate_report", "draft", "Emissions fell 8% this quarter. Heat pumps cut gas use."),
    ),
    Step(
        "engineer audits carbon",
        "POST",
        EXECUTE,
        200,
        "engineer",
        aim("carbon_audit", "analysis", "Site A used 12,500 kWh; the fleet drove 3,200 km."),
    ),
    Step(
        "approver runs a prescriptive plan",
        "POST",
        EXECUTE,
        200,
        "approver",
        aim("deploy_staging", "execute", "You must always deploy api@1.4.2 on Fridays."),
    ),
    Step(
        "workflow fails on demand",
        "POST",
        EXECUTE,
        200,
        "admin",
        aim("summarise_incident", "research", "Outage at 10:02. #simulate-failure"),
    ),
    Step(
        "engineer tries execute mode",
        "POST",
        EXECUTE,
        403,
        "engineer",
        aim("deploy_staging", "execute", "api@2.0"),
    ),
    Step(
        "incomplete AIM request",
        "POST",
        EXECUTE,
        422,
        "analyst",
        {"workflow_name": "mine_bitcoin", "drag_mode": "yolo", "aim": {"input": "hi"}},
    ),
    Step(
        "validate only",
        "POST",
        "/governance/validate",
        200,
        "analyst",
        aim("generate_report", "research", "Check the meters."),
    ),
    Step("no token", "POST", EXECUTE, 401, None, aim("generate_report", "draft", "x")),
    Step(
        "forged token",
        "POST",
        EXECUTE,
        401,
        None,
        aim("generate_report", "draft", "x"),
        raw_token="eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5Iiwicm9sZSI6ImFkbWluIn0.",
    ),
    Step("malformed JSON", "POST", EXECUTE, 400, "admin", b'{"workflow_name": '),
    Step("unknown path", "GET", "/no/such/page", 404),
]


def summarise(status: int, answer: dict[str, Any]) -> str:
    if "outcome" in answer and status == 200:
        extra = f" error_type={answer['error_type']}" if answer.get("error_type") else ""
        return f"{answer['outcome']}{extra}, {len(answer.get('detections', []))} prescriptive"
    if "reasons" in answer:
        return f"{answer.get('error')}: {', '.join(answer['reasons'])}"
    if "error" in answer:
        return f"{answer['error']}" + (
            f" ({answer['failure_type']})" if "failure_type" in answer else ""
        )
    if answer.get("valid") is True:
        return "valid"
    if "status" in answer:
        return f"status {answer['status']}, event log {answer.get('event_log')}"
    if "workflows" in answer:
        return "workflows: " + ", ".join(w["name"] for w in answer["workflows"])
    return json.dumps(answer, sort_keys=True)[:80]


def send(base: str, step: Step, token: str | None) -> tuple[int, dict[str, Any]]:
    data = step.body if isinstance(step.body, bytes | None) else json.dumps(step.body).encode()
    request = urllib.request.Request(base + step.path, data=data, method=step.method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
        try:
            return error.code, json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return error.code, {"error": raw[:80].decode(errors="replace")}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    base = argv[0].rstrip("/")
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"demo_scenario: invalid setting {exc}", file=sys.stderr)
        return 2
    failures = 0
    for step in STEPS:
        token = step.raw_token
        if step.role is not None:
            token = mint_token(settings, actor="Demo User", role=step.role, ttl=300)
        try:
            status, answer = send(base, step, token)
        except OSError as exc:
            print(f"{step.method:4} {step.path:30} -> error {exc}  [{step.label}]")
            failures += 1
            continue
        good = status == step.expect
        failures += not good
        mark = "" if good else f"  UNEXPECTED, wanted {step.expect}"
        print(
            f"{step.method:4} {step.path:30} -> {status} {summarise(status, answer)}  "
            f"[{step.label}]{mark}"
        )
    print(f"{len(STEPS) - failures} of {len(STEPS)} requests answered as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
