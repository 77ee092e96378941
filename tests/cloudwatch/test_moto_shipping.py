"""End to end against moto's server over HTTP: the real tailer, shipper and boto3.

Every line written to the JSONL file must arrive in CloudWatch Logs, and the metric sums in
CloudWatch must match the events.
"""

from __future__ import annotations

import functools
import gzip
import json
import operator
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.cloudwatch import service
from log_exporter.cloudwatch.config import load
from log_exporter.cloudwatch.hook import SECTION
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.statefile import StateFile, StateKeeper, StateSection
from tests.support.cloudwatch import (
    SHIPPING_DEADLINE,
    clients,
    messages,
    replay_to_cloudwatch,
)
from tests.support.contract import contract_line
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

GROUP = "/aiwf/test"
STREAM = "host-a"


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _workload(now: datetime, n: int) -> tuple[list[str], Counter[tuple[str, str]]]:
    """Lines of several event types, and the expected WorkflowExecutions per (name, outcome)."""
    lines: list[str] = []
    expected: Counter[tuple[str, str]] = Counter()
    for i in range(n):
        ts = _iso(now - timedelta(seconds=n - i))
        name = f"wf{i % 3}"
        outcome = ("success", "failure")[i % 2]
        lines.append(
            contract_line(
                "workflow.completed",
                ts,
                workflow_name=name,
                outcome=outcome,
                drag_mode="draft",
                duration_seconds=0.1 * (i % 7),
                error_type="timeout",
                trace_id="t",
            ).decode()
        )
        expected[(name, outcome)] += 1
        lines.append(
            contract_line(
                "aim.request",
                ts,
                drag_mode="research",
                actor_role="analyst",
                workflow_name=name,
                actor="Jane Doe",
                trace_id="t",
            ).decode()
        )
    lines.append("this line is not JSON \xff but still shipped\n")
    return lines, expected


def _config(env: dict[str, str]) -> Any:
    return load(
        {
            "CLOUDWATCH_ENABLED": "true",
            "CLOUDWATCH_LOG_GROUP": GROUP,
            "CLOUDWATCH_LOG_STREAM": STREAM,
            "CLOUDWATCH_FLUSH_SECONDS": "1",
            "CLOUDWATCH_REGION": "eu-west-1",
            **env,
        }
    )


def _metric_sum(cw: Any, name: str, dims: dict[str, str], stat: str = "Sum") -> float:
    now = datetime.now(UTC)
    resp = cw.get_metric_statistics(
        Namespace="AIWF/SustainBot",
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - timedelta(hours=4),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=[stat],
    )
    return float(sum(p[stat] for p in resp["Datapoints"]))


def test_every_line_arrives_and_metric_sums_match(aws_env: str, tmp_path: Path) -> None:
    """All lines (invalid UTF-8 included) reach the stream; CloudWatch sums equal event counts."""
    log_file = tmp_path / "sustainbot.jsonl"
    lines, expected = _workload(datetime.now(UTC), 60)
    log_file.write_text("".join(lines[:50]), encoding="utf-8", errors="surrogateescape")
    keeper = StateKeeper(StateFile(tmp_path / "state.json", target=str(log_file)))
    registry = CollectorRegistry()
    shipping = service.start(
        _config({}),
        path=str(log_file),
        program=compile_spec(load_default_spec()),
        state=StateSection(keeper, SECTION, keeper.load()),
        registry=registry,
    )
    try:
        # Lines appended while shipping runs are followed too.
        with log_file.open("a", encoding="utf-8") as f:
            f.write("".join(lines[50:]))
        logs, cw = clients()
        got = wait_for(
            lambda: messages(logs, GROUP, STREAM),
            "all lines",
            until=lambda m: len(m) >= len(lines),
            timeout=SHIPPING_DEADLINE,
        )
        assert sorted(got) == sorted(line.rstrip("\n") for line in lines)
        for (name, outcome), n in expected.items():
            dims = {"WorkflowName": name, "Outcome": outcome, "DRAGMode": "draft"}
            wait_for(
                functools.partial(_metric_sum, cw, "WorkflowExecutions", dims),
                f"WorkflowExecutions {name}/{outcome}",
                until=functools.partial(operator.eq, n),
                timeout=SHIPPING_DEADLINE,
            )
            samples = _metric_sum(cw, "WorkflowDuration", dims, "SampleCount")
            assert samples == n
        total = sum(
            _metric_sum(
                cw,
                "AIMRequests",
                {"DRAGMode": "research", "ActorRole": "analyst", "WorkflowName": f"wf{i}"},
            )
            for i in range(3)
        )
        assert total == 60
        text = generate_latest(registry).decode()
        assert f"log_exporter_cloudwatch_events_shipped_total {float(len(lines))}" in text
        assert (
            'log_exporter_cloudwatch_requests_total{api="PutMetricData",result="success"}' in text
        )
        wait_for(
            lambda: json.loads((tmp_path / "state.json").read_bytes())["sections"],
            "cursor saved at the end of the file",
            until=lambda s: (
                (s.get("cloudwatch") or {}).get("position", {}) is not None
                and (s["cloudwatch"]["position"] or {}).get("offset") == os.path.getsize(log_file)
            ),
            timeout=SHIPPING_DEADLINE,
        )
    finally:
        shipping.stop()
    assert not shipping.is_alive()


def test_emf_mode_writes_documents_not_putmetricdata(aws_env: str, tmp_path: Path) -> None:
    """In EMF mode metrics go to the log group as EMF documents; PutMetricData is never called."""
    log_file = tmp_path / "sustainbot.jsonl"
    lines, expected = _workload(datetime.now(UTC), 9)
    log_file.write_text("".join(lines), encoding="utf-8", errors="surrogateescape")
    registry = CollectorRegistry()
    config = _config({"CLOUDWATCH_METRICS_MODE": "emf"})
    shipping = service.start(
        config,
        path=str(log_file),
        program=compile_spec(load_default_spec()),
        state=None,
        registry=registry,
    )
    try:
        logs, cw = clients()
        docs = wait_for(
            lambda: [json.loads(m) for m in messages(logs, GROUP, config.emf_log_stream)],
            "EMF documents",
            until=lambda d: (
                sum(x.get("WorkflowExecutions", 0) for x in d) >= sum(expected.values())
            ),
            timeout=SHIPPING_DEADLINE,
        )
        executions: Counter[tuple[str, str]] = Counter()
        for doc in docs:
            if "WorkflowExecutions" in doc:
                executions[(doc["WorkflowName"], doc["Outcome"])] += int(doc["WorkflowExecutions"])
            assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "AIWF/SustainBot"
        assert executions == expected
        assert cw.list_metrics(Namespace="AIWF/SustainBot")["Metrics"] == []
        assert 'api="PutMetricData"' not in generate_latest(registry).decode()
    finally:
        shipping.stop()


def test_replay_ships_history_and_reports_window(aws_env: str, tmp_path: Path) -> None:
    """Replay ships old files with their own timestamps and reports what the window excluded."""
    now = datetime.now(UTC)
    old = tmp_path / "sustainbot.jsonl.1"

    def audit(age: timedelta, outcome: str) -> str:
        return contract_line(
            "audit.entry", _iso(now - age), outcome=outcome, drag_mode="draft", trace_id="t"
        ).decode()

    old.write_text(audit(timedelta(days=20), "success") + audit(timedelta(days=3), "success"))
    new = tmp_path / "sustainbot.jsonl"
    new.write_text(audit(timedelta(hours=1), "rejected") + audit(timedelta(hours=-3), "success"))
    summary = service.replay(_config({}), [str(new), str(old)], compile_spec(load_default_spec()))
    assert summary.events_sent == 2
    assert summary.excluded == {"too_old": 1, "too_new": 1}
    report = service.format_summary(summary)
    assert "1 too old" in report and "1 too new" in report
    logs, cw = clients()
    got = messages(logs, GROUP, STREAM)
    assert len(got) == 2
    stamps = [e["timestamp"] for e in logs.filter_log_events(logGroupName=GROUP)["events"]]
    assert min(stamps) == int((now - timedelta(days=3)).timestamp() * 1000)
    assert _metric_sum(cw, "AuditLogEntries", {"Outcome": "rejected", "DRAGMode": "draft"}) == 1


def test_emf_replay_counts_log_events_apart_from_emf_documents(
    aws_env: str, tmp_path: Path
) -> None:
    """In EMF mode replay's summary counts the log's lines as log events and the EMF documents
    as metrics, so the two together never read as lines shipped twice."""
    now = datetime.now(UTC)
    lines, _ = _workload(now - timedelta(hours=1), 12)
    log_file = tmp_path / "old.jsonl"
    log_file.write_text("".join(lines), encoding="utf-8")
    proc = replay_to_cloudwatch(log_file, GROUP, "emf-replayed", "--cloudwatch-metrics-mode", "emf")
    assert proc.returncode == 0, proc.stderr
    assert f"{len(lines)} lines read, {len(lines)} log events shipped" in proc.stderr
    documents = int(proc.stderr.split(" EMF documents")[0].rsplit(" ", 1)[-1])
    assert documents > 0
    logs, _ = clients()
    assert len(messages(logs, GROUP, "emf-replayed")) == len(lines)


def test_replay_cli_flag_ships_and_prints_summary(aws_env: str, tmp_path: Path) -> None:
    """`log-exporter replay --cloudwatch FILE` ships the file and prints what was left out."""
    now = datetime.now(UTC)
    log_file = tmp_path / "old.jsonl"
    log_file.write_text(
        contract_line(
            "auth.failed", _iso(now - timedelta(days=30)), failure_type="expired", trace_id="t"
        ).decode()
        + contract_line(
            "auth.failed", _iso(now - timedelta(minutes=5)), failure_type="expired", trace_id="t"
        ).decode()
        + "\n"
    )
    proc = replay_to_cloudwatch(log_file, GROUP, "replayed")
    assert proc.returncode == 0, proc.stderr
    assert "1 log events shipped" in proc.stderr
    assert "1 too old" in proc.stderr
    logs, _ = clients()
    assert len(messages(logs, GROUP, "replayed")) == 1


def test_replay_truncated_gzip_ships_what_it_can_and_exits_1(aws_env: str, tmp_path: Path) -> None:
    """A cut-off gzip is shipped up to the damage, reported, and replay exits 1."""
    now = datetime.now(UTC)
    text = "".join(
        contract_line(
            "auth.failed",
            _iso(now - timedelta(minutes=i)),
            failure_type="expired",
            n=i,
            trace_id="t",
        ).decode()
        for i in range(2_000)
    )
    whole = gzip.compress(text.encode())
    cut = tmp_path / "sustainbot.jsonl.1.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    proc = replay_to_cloudwatch(cut, GROUP, "cut")
    assert proc.returncode == 1, proc.stderr
    assert f"damaged, shipped up to the damage: {cut}" in proc.stderr
    logs, _ = clients()
    shipped = messages(logs, GROUP, "cut")
    assert 0 < len(shipped) < 2_000
    originals = text.splitlines()
    partial = [m for m in shipped if m not in set(originals)]
    # Like plain replay, the bytes before the damage count, so the last line may be cut short.
    assert len(partial) <= 1
    assert all(any(o.startswith(p) for o in originals) for p in partial)
