"""docs/cloudwatch.md's least-privilege IAM policy against the API calls the shipper really makes.

moto cannot check the policy itself (it evaluates CloudWatch Logs and Metrics calls against the
resource "*", so the policy's log-group ARNs would never match), so a real proxy between boto3
and moto records every call, and the test compares those with the actions the policy allows.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from log_exporter.cloudwatch import service
from log_exporter.cloudwatch.config import load
from log_exporter.spec import compile_spec, load_default_spec
from tests.support.contract import contract_line
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "cloudwatch.md"
# The only call the shipper makes to CloudWatch Metrics; every other one goes to CloudWatch Logs.
METRICS_CALLS = {"PutMetricData"}


def policy_actions() -> set[str]:
    """Every action the documented policy allows, as "service:Operation"."""
    text = DOC.read_text("utf-8")
    section = text.split("## IAM policy", 1)[1]
    m = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert m, "docs/cloudwatch.md lost its IAM policy block"
    actions: set[str] = set()
    for statement in json.loads(m.group(1))["Statement"]:
        allowed = statement["Action"]
        actions.update([allowed] if isinstance(allowed, str) else allowed)
    return actions


@pytest.mark.parametrize("mode", ["putmetricdata", "emf"])
def test_policy_allows_exactly_the_calls_made(
    mode: str, aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shipping logs and metrics into a fresh account (no group yet) calls exactly the actions
    the documented policy allows; in EMF mode, all of them but cloudwatch:PutMetricData."""
    proxy = FaultProxy(aws_env, lambda op, nth: "pass").start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        now = datetime.now(UTC)
        log = tmp_path / "sustainbot.jsonl"
        log.write_text(
            "".join(
                contract_line(
                    "audit.entry",
                    (now - timedelta(minutes=i)).isoformat(timespec="milliseconds"),
                    outcome="success",
                    drag_mode="draft",
                    trace_id="t",
                ).decode()
                for i in range(5)
            )
        )
        config = load(
            {
                "CLOUDWATCH_ENABLED": "true",
                "CLOUDWATCH_LOG_GROUP": "/aiwf/iam",
                "CLOUDWATCH_LOG_STREAM": "iam",
                "CLOUDWATCH_METRICS_MODE": mode,
            }
        )
        summary = service.replay(config, [str(log)], compile_spec(load_default_spec()))
        assert summary.events_sent >= 5
        called = {op for op, _ in proxy.actions}
    finally:
        proxy.stop()
    used = {f"{'cloudwatch' if op in METRICS_CALLS else 'logs'}:{op}" for op in called}
    documented = policy_actions()
    if mode == "emf":
        documented.discard("cloudwatch:PutMetricData")
    assert used == documented
