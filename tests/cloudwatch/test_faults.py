"""Shipping through a faulty network: throttling, 503, resets, slow answers, and kill -9.

A real proxy sits between boto3 and moto. Afterwards every line must be in CloudWatch, with
duplicates at most one batch (the one in flight when the connection or the process died).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
    serve_startup_log,
)
from tests.support.contract import contract_line
from tests.support.faultproxy import FaultProxy
from tests.support.processes import stop
from tests.support.serve import exporter_argv
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

GROUP = "/aiwf/faults"
STREAM = "host-f"


def _lines(n: int, pad: int = 200, apart: float = 0.1) -> list[str]:
    """``n`` workflow.completed lines ``apart`` seconds apart, ending now, each padded with
    ``pad`` bytes (no pad field at 0)."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        ts = (now - timedelta(seconds=(n - i) * apart)).isoformat(timespec="milliseconds")
        extra = {"pad": "x" * pad} if pad else {}
        out.append(
            contract_line(
                "workflow.completed",
                ts.replace("+00:00", "Z"),
                workflow_name="wf",
                outcome="success",
                drag_mode="draft",
                duration_seconds=0.5,
                seq=i,
                **extra,
                trace_id="t",
            ).decode()
        )
    return out


def _all_arrived(lines: list[str]) -> Callable[[list[str]], bool]:
    expected = Counter(line.rstrip("\n") for line in lines)
    return lambda got: not (expected - Counter(got))


def _check_at_least_once(got: list[str], lines: list[str], proxy: FaultProxy) -> int:
    """Every line arrived; the extra copies form at most one batch. Returns the duplicates."""
    expected = Counter(line.rstrip("\n") for line in lines)
    have = Counter(got)
    missing = expected - have
    assert not missing, f"{sum(missing.values())} lines never arrived"
    extra = have - expected
    assert not (set(extra) - set(expected)), "CloudWatch holds lines that were never written"
    duplicates = sum(extra.values())
    if duplicates:
        largest = max(proxy.forwarded_batches)
        assert duplicates <= largest
        # One batch is a contiguous run of lines: the duplicated sequence numbers are too.
        seqs = sorted(json.loads(m)["seq"] for m in extra.elements())
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    return duplicates


@pytest.fixture
def proxy_for(moto_endpoint: str) -> Iterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for p in started:
        p.stop()


def test_throttling_503_resets_and_slow_answers_lose_nothing(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy_for: list[FaultProxy]
) -> None:
    """Through throttling, 503s, resets, slow answers all lines arrive, at most one batch twice."""
    logs_cycle = ["throttle", "503", "reset", "slow", "pass", "forward_reset", "pass"]

    def plan(op: str, nth: int) -> str:
        if op == "PutLogEvents":
            # forward_reset only once: moto keeps that batch, the client sees a reset and resends.
            action = logs_cycle[nth % len(logs_cycle)]
            return "pass" if action == "forward_reset" and nth >= len(logs_cycle) else action
        if op == "PutMetricData":
            return ("503", "reset", "pass")[min(nth, 2)]
        return "reset" if nth == 0 else "pass"

    proxy = FaultProxy(aws_env, plan, slow_seconds=1.0).start()
    proxy_for.append(proxy)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    log_file = tmp_path / "sustainbot.jsonl"
    lines = _lines(9_000)
    log_file.write_text("".join(lines))
    config = load(
        {
            "CLOUDWATCH_ENABLED": "true",
            "CLOUDWATCH_LOG_GROUP": GROUP,
            "CLOUDWATCH_LOG_STREAM": STREAM,
            "CLOUDWATCH_FLUSH_SECONDS": "1",
        }
    )
    keeper = StateKeeper(StateFile(tmp_path / "state.json", target=str(log_file)))
    shipping = service.start(
        config,
        path=str(log_file),
        program=compile_spec(load_default_spec()),
        state=StateSection(keeper, SECTION, keeper.load()),
    )
    try:
        logs, _ = clients(aws_env)
        got = wait_for(
            lambda: messages(logs, GROUP, STREAM),
            "every line through the faults",
            until=_all_arrived(lines),
            timeout=240,
        )
        duplicates = _check_at_least_once(got, lines, proxy)
        assert duplicates > 0, "the forward-then-reset fault should have produced one resend"
        stats = shipping.shipper.summary
        assert stats.events_sent >= len(lines)

        # Metrics are counted from acknowledged batches only, so the resent batch counts once.
        wait_for(
            lambda: _counted("putmetricdata", aws_env),
            "metric sum through the faults",
            until=lambda s: s == len(lines),
            timeout=SHIPPING_DEADLINE,
        )
    finally:
        shipping.stop()
    acted = {a for _, a in proxy.actions}
    assert {"throttle", "503", "reset", "slow", "forward_reset"} <= acted


def _saved_offset(state: Path) -> int:
    """The CloudWatch cursor in the state file (0 before the first acknowledged batch)."""
    try:
        section = json.loads(state.read_bytes())["sections"].get("cloudwatch") or {}
    except (OSError, ValueError):
        return 0
    return int((section.get("position") or {}).get("offset", 0))


def _serve(
    log_file: Path,
    state: Path,
    endpoint: str,
    tmp_path: Path,
    settings: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "CLOUDWATCH_ENABLED": "true",
        "CLOUDWATCH_LOG_GROUP": GROUP,
        "CLOUDWATCH_LOG_STREAM": STREAM,
        "CLOUDWATCH_FLUSH_SECONDS": "1",
        **(settings or {}),
    }
    argv = exporter_argv(
        "serve",
        "--file",
        str(log_file),
        "--state",
        str(state),
        "--web.listen-address",
        "127.0.0.1:0",
    )
    # The child keeps its own copy of the descriptor; the parent's is closed at once.
    with (tmp_path / "serve.log").open("ab") as stderr:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def test_kill_9_mid_shipping_then_restart_loses_nothing(
    aws_env: str, tmp_path: Path, proxy_for: list[FaultProxy]
) -> None:
    """kill -9 while a batch is in flight, restart: every line arrives, at most one batch twice."""
    slow = {"on": True}

    def plan(op: str, nth: int) -> str:
        return "slow" if op == "PutLogEvents" and slow["on"] else "pass"

    proxy = FaultProxy(aws_env, plan, slow_seconds=1.5).start()
    proxy_for.append(proxy)
    log_file = tmp_path / "sustainbot.jsonl"
    state = tmp_path / "state.json"
    lines = _lines(15_000)
    log_file.write_text("".join(lines))
    proc = _serve(log_file, state, proxy.url, tmp_path)
    try:
        # Killed once a batch was acknowledged (its cursor saved) and the next is on the wire.
        wait_for(
            lambda: (_saved_offset(state), proxy.in_flight.get("PutLogEvents", 0)),
            "a batch in flight",
            until=lambda v: v[0] > 0 and v[1] >= 1,
            timeout=SHIPPING_DEADLINE,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    logs, _ = clients(aws_env)
    before = len(messages(logs, GROUP, STREAM))
    assert 0 < before < len(lines), "the kill did not land mid-shipping"
    slow["on"] = False
    proc = _serve(log_file, state, proxy.url, tmp_path)
    try:
        got = wait_for(
            lambda: messages(logs, GROUP, STREAM),
            "every line after the restart",
            until=_all_arrived(lines),
            timeout=240,
        )
        _check_at_least_once(got, lines, proxy)
    finally:
        stop(proc, what="the exporter")
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


def _serving_url(log: Path) -> str:
    """The /metrics URL the serve process announced in its JSON log ('' before it did)."""
    try:
        text = log.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if '"serving"' in line:
            return str(json.loads(line)["url"])
    return ""


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_outage_grows_backlog_while_metrics_keep_serving(
    aws_env: str, tmp_path: Path, proxy_for: list[FaultProxy]
) -> None:
    """During a CloudWatch outage /metrics keeps answering and counting; the backlog then drains."""
    down = {"on": True}
    proxy = FaultProxy(aws_env, lambda op, nth: "503" if down["on"] else "pass").start()
    proxy_for.append(proxy)
    log_file = tmp_path / "sustainbot.jsonl"
    lines = _lines(3_000)
    log_file.write_text("".join(lines))
    proc = _serve(log_file, tmp_path / "state.json", proxy.url, tmp_path)
    try:
        url = wait_for(
            lambda: _serving_url(tmp_path / "serve.log"),
            "serve to start",
            timeout=SHIPPING_DEADLINE,
        )
        outage = wait_for(
            lambda: _scrape(url),
            "retries and a backlog during the outage",
            until=lambda s: (
                s.get("log_exporter_cloudwatch_retries_total", 0) >= 2
                and s.get("log_exporter_cloudwatch_backlog_bytes", 0) > 0
            ),
            timeout=SHIPPING_DEADLINE,
        )
        # The Prometheus path counted every line while nothing reached CloudWatch.
        counted = wait_for(
            lambda: _scrape(url),
            "the metrics path to count every line",
            until=lambda s: s.get('log_exporter_lines_total{result="parsed"}', 0) == len(lines),
            timeout=SHIPPING_DEADLINE,
        )
        assert counted.get("log_exporter_cloudwatch_events_shipped_total", 0) == 0
        assert outage["log_exporter_cloudwatch_backlog_events"] > 0
        down["on"] = False
        drained = wait_for(
            lambda: _scrape(url),
            "the backlog to drain",
            until=lambda s: (
                s.get("log_exporter_cloudwatch_events_shipped_total", 0) >= len(lines)
                and s.get("log_exporter_cloudwatch_backlog_bytes", 1) == 0
            ),
            timeout=SHIPPING_DEADLINE,
        )
        assert drained["log_exporter_cloudwatch_last_success_timestamp_seconds"] > 0
        logs, _ = clients(aws_env)
        _check_at_least_once(messages(logs, GROUP, STREAM), lines, proxy)
    finally:
        stop(proc, what="the exporter")


def test_sigterm_then_restart_ships_each_line_once(
    aws_env: str, tmp_path: Path, proxy_for: list[FaultProxy]
) -> None:
    """After a clean stop and restart, shipping resumes at its cursor: no line is sent twice."""
    log_file = tmp_path / "sustainbot.jsonl"
    state = tmp_path / "state.json"
    first, second = _lines(500), _lines(300, pad=150)
    log_file.write_text("".join(first))
    logs, _ = clients(aws_env)
    proc = _serve(log_file, state, aws_env, tmp_path)
    try:
        wait_for(
            lambda: messages(logs, GROUP, STREAM),
            "first lines",
            until=_all_arrived(first),
            timeout=SHIPPING_DEADLINE,
        )
    finally:
        assert stop(proc, what="the exporter") == 0
    with log_file.open("a") as f:
        f.write("".join(second))
    proc = _serve(log_file, state, aws_env, tmp_path)
    try:
        got = wait_for(
            lambda: messages(logs, GROUP, STREAM),
            "lines written while stopped",
            until=_all_arrived(first + second),
            timeout=SHIPPING_DEADLINE,
        )
    finally:
        assert stop(proc, what="the exporter") == 0
    assert sorted(got) == sorted(line.rstrip("\n") for line in first + second)


def test_enabled_without_state_file_warns_at_start(aws_env: str, tmp_path: Path) -> None:
    """Shipping without --state warns that a restart will ship the whole file again."""
    log_file = tmp_path / "sustainbot.jsonl"
    log_file.write_text("")
    env = {**os.environ, "CLOUDWATCH_ENABLED": "true", "CLOUDWATCH_LOG_GROUP": GROUP}
    seen, _ = serve_startup_log(log_file, env)
    warnings = [json.loads(x) for x in seen.splitlines() if '"warning"' in x]
    assert any("restart ships the whole file again" in w["msg"] for w in warnings), seen


def test_retry_message_on_replay_stderr_names_the_api_and_error(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy_for: list[FaultProxy]
) -> None:
    """replay --cloudwatch prints plain messages: a retried call must say which API failed how."""
    proxy = FaultProxy(aws_env, lambda op, nth: "throttle" if nth == 0 else "pass").start()
    proxy_for.append(proxy)
    log_file = tmp_path / "old.jsonl"
    log_file.write_text("".join(_lines(3)))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    proc = replay_to_cloudwatch(log_file, GROUP, STREAM)
    assert proc.returncode == 0, proc.stderr
    assert "cloudwatch PutLogEvents failed (ThrottlingException), retry 1 in" in proc.stderr
    assert "3 log events shipped" in proc.stderr


def _spaced_lines(n: int) -> list[str]:
    """``n`` workflow.completed lines one second apart, ending now: one datum per line and metric
    at a 1 s flush interval, so a flush of them needs several PutMetricData requests."""
    return _lines(n, pad=0, apart=1.0)


def _counted(mode: str, aws_env: str) -> float:
    """Events counted by what reached the emulator: the WorkflowExecutions sum; in EMF mode the
    WorkflowDuration values, whose documents come after the sums' and span both batches."""
    logs, cw = clients(aws_env)
    if mode == "emf":
        docs = [json.loads(m) for m in messages(logs, GROUP, f"{STREAM}-emf")]
        return float(sum(len(d.get("WorkflowDuration", [])) for d in docs))
    now = datetime.now(UTC)
    resp = cw.get_metric_statistics(
        Namespace="AIWF/SustainBot",
        MetricName="WorkflowExecutions",
        Dimensions=[
            {"Name": "WorkflowName", "Value": "wf"},
            {"Name": "Outcome", "Value": "success"},
            {"Name": "DRAGMode", "Value": "draft"},
        ],
        StartTime=now - timedelta(hours=3),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["Sum"],
    )
    return float(sum(p["Sum"] for p in resp["Datapoints"]))


def _pending_metrics(state: Path) -> int:
    """Metric intervals the state file still holds as unsent (-1 while unreadable)."""
    try:
        section = json.loads(state.read_bytes())["sections"].get("cloudwatch") or {}
    except (OSError, ValueError, KeyError):
        return -1
    metrics = section.get("metrics") or {}
    return len(metrics.get("sums", [])) + len(metrics.get("dists", []))


@pytest.mark.parametrize("mode", ["putmetricdata", "emf"])
def test_kill_9_mid_flush_repeats_at_most_the_request_in_flight(
    aws_env: str, tmp_path: Path, proxy_for: list[FaultProxy], mode: str
) -> None:
    """kill -9 while the third metric request of a flush is on the wire, restart: the metric sum
    is exact but for that one request, not the whole flush sent again."""

    def is_metric_request(op: str, body: bytes) -> bool:
        if mode == "emf":
            return op == "PutLogEvents" and f'"{STREAM}-emf"'.encode() in body
        return op == "PutMetricData"

    # PutMetricData: 1,000 datums a request, so the flush of 2 x 2,500 datums takes 5 or more;
    # EMF: 2 batches of documents. Hold the last request that is surely not the first.
    held = 2 if mode == "putmetricdata" else 1
    proxy = FaultProxy(aws_env, lambda op, nth: "pass", hold=(is_metric_request, held)).start()
    proxy_for.append(proxy)
    log_file = tmp_path / "sustainbot.jsonl"
    state = tmp_path / "state.json"
    lines = _spaced_lines(2_500)
    log_file.write_text("".join(lines))
    env_mode = {"CLOUDWATCH_METRICS_MODE": mode}
    proc = _serve(log_file, state, proxy.url, tmp_path, env_mode)
    try:
        wait_for(proxy.held.is_set, "a metric request held mid-flush", timeout=SHIPPING_DEADLINE)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _counted(mode, aws_env)
    assert 0 < before < len(lines), "the kill did not land mid-flush"
    # The request in flight reaches CloudWatch after all; only its answer was lost.
    proxy.release()
    wait_for(proxy.held_done.is_set, "the held request to reach the emulator")
    in_flight = _counted(mode, aws_env) - before
    proc = _serve(log_file, state, proxy.url, tmp_path, env_mode)
    try:
        wait_for(
            lambda: _counted(mode, aws_env),
            "the metric sum after the restart",
            until=lambda total: total >= len(lines),
            timeout=SHIPPING_DEADLINE,
        )
        wait_for(
            lambda: _pending_metrics(state),
            "every pending interval acknowledged",
            until=lambda n: n == 0,
            timeout=SHIPPING_DEADLINE,
        )
        total = _counted(mode, aws_env)
    finally:
        stop(proc, what="the exporter")
    assert len(lines) <= total <= len(lines) + in_flight, (
        f"sum {total} for {len(lines)} events; the request in flight carried {in_flight}"
    )
