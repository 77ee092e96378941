"""replay and trace over a node's /var/log/pods history with --input-format cri: split lines,
stderr noise, rename-then-gzip rotations and a container restart to 1.log."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from log_exporter.cli import main
from log_exporter.replay import trace
from tests.support.contract import contract_line
from tests.support.kubelet import SPLIT, ContainerLog
from tests.support.serve import parse_metrics, sample

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def pod_history(root: Path, pod: str = "sustainbot-0") -> tuple[ContainerLog, dict[str, int]]:
    """A container's history: events on stdout (some cut into P chunks, stderr tracebacks
    between the chunks), rotated and gzipped twice, a line the killed container never ended,
    then its restart to 1.log; and what it holds, by result."""
    c = ContainerLog(root, "prod", pod, "7c1e")
    counts = {"parsed": 0, "unstructured": 0, "partial": 0}
    big = contract_line(
        "auth.jwt_validated", outcome="success", trace_id=TRACE, padding="x" * (2 * SPLIT)
    ).rstrip(b"\n")
    for round_ in range(3):
        for _ in range(20):
            # No timestamp of its own: the runtime's time is the event's.
            c.print("stdout", contract_line("auth.jwt_validated", None, outcome="success")[:-1])
        for chunk in c.chunks("stdout", big):
            c.write_raw(chunk)
            c.print("stderr", b'  File "app.py", line 1, in <module>')
        counts["parsed"] += 21
        counts["unstructured"] += 3
        c.rotate()
        del round_
    c.print("stdout", big, ended=False)
    counts["partial"] += 1
    c.restart()
    c.print("stdout", contract_line("auth.jwt_validated", None, outcome="failure")[:-1])
    c.print("stdout", b"plain print from a library")
    counts["parsed"] += 1
    counts["unstructured"] += 1
    return c, counts


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_replay_of_a_pod_tree_counts_every_line_once(tmp_path: Path, jobs: str) -> None:
    """Every generation of both containers' logs, plain and gzipped, replayed in one or in
    several processes: each event once, the stderr noise as unstructured, the killed
    container's unended line as one partial, nothing malformed."""
    c, counts = pod_history(tmp_path / "pods")
    assert any(p.suffix == ".gz" for p in c.files()) and (c.dir / "1.log").exists()
    out = tmp_path / "out.prom"
    argv = ["replay", "--quiet", "--input-format", "cri", "--jobs", jobs, "-o", str(out)]
    assert main([*argv, *map(str, c.files())]) == 0
    samples = parse_metrics(out.read_text())
    for result, n in counts.items():
        assert sample(samples, "log_exporter_lines_total", result=result) == n, result
    assert sample(samples, "log_exporter_lines_total", result="malformed") == 0
    assert sample(samples, "sustainbot_jwt_validations_total", outcome="success") == 63


def test_openmetrics_replay_stamps_events_with_the_runtime_time(tmp_path: Path) -> None:
    """Events without a timestamp of their own are sampled at the runtime's time: the samples
    span the pod's history, not one instant, and none is counted as untimed."""
    c, _ = pod_history(tmp_path / "pods")
    out = tmp_path / "out.om"
    argv = ["replay", "--quiet", "--input-format", "cri", "--format", "openmetrics"]
    assert main([*argv, "--step", "1", "-o", str(out), *map(str, c.files())]) == 0
    stamps = {
        float(line.rsplit(" ", 1)[1])
        for line in out.read_text().splitlines()
        if line.startswith("sustainbot_jwt_validations_total{")
    }
    # 2026-12-07T10:15:00Z plus the seconds the kubelet's rotations stepped the clock on.
    assert min(stamps) >= 1796638500 and max(stamps) - min(stamps) >= 2


def test_trace_finds_the_event_of_a_split_line_in_gzipped_generations(tmp_path: Path) -> None:
    """trace joins the runtime's chunks and prints each matching event as JSON, from plain and
    gzipped generations alike."""
    c, _ = pod_history(tmp_path / "pods")
    out, err = io.BytesIO(), io.StringIO()
    code = trace.run(TRACE, [str(p) for p in c.files()], stdout=out, stderr=err, input_format="cri")
    assert code == trace.EXIT_FOUND, err.getvalue()
    found = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(found) == 3
    assert all(e["trace_id"] == TRACE and len(e["padding"]) == 2 * SPLIT for e in found)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_replay_of_a_node_tree_by_pattern_counts_each_pod_apart(tmp_path: Path, jobs: str) -> None:
    """A ``--file`` pattern over a node's pods, CRI and gzip included: every generation of each
    pod's container is read (the pattern names only ``*.log``), and each pod's counts carry its
    namespace and pod labels, as many as its own history holds."""
    root = tmp_path / "pods"
    histories = {pod: pod_history(root, pod) for pod in ("sustainbot-0", "sustainbot-1")}
    pattern = str(root / "{namespace}_{pod}_{_}" / "sustainbot" / "*.log")
    out = tmp_path / "out.prom"
    argv = ["replay", "--quiet", "--input-format", "cri", "--jobs", jobs, "-o", str(out)]
    assert main([*argv, "--file", pattern, "--label", "job=sustainbot"]) == 0
    samples = parse_metrics(out.read_text())
    for pod, (_, counts) in histories.items():
        for result, n in counts.items():
            got = sample(
                samples,
                "log_exporter_lines_total",
                result=result,
                namespace="prod",
                pod=pod,
                job="sustainbot",
            )
            assert got == n, (pod, result)
        assert (
            sample(
                samples,
                "sustainbot_jwt_validations_total",
                outcome="success",
                namespace="prod",
                pod=pod,
                job="sustainbot",
            )
            == 63
        )
