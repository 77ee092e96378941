"""``log-exporter serve`` over a /var/log/pods-shaped tree as a real process: a --file pattern
with captures, constant --label pairs, files appearing and disappearing, kill -9 and restart."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from log_exporter.limits import EXIT_CONFIG
from tests.support.serve import Exporter, append, run_cli, sample, saved_label_sets
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

PATTERN = "pods/{namespace}_{pod}_{_}/app/*.log"


def _lines(n: int, start: int = 0) -> bytes:
    return b"".join(
        json.dumps({"event": "tick", "n": i, "timestamp": "2026-02-01T14:30:00.250Z"}).encode()
        + b"\n"
        for i in range(start, start + n)
    )


def _pod_file(root: Path, pod: str, restart: int = 0, namespace: str = "prod") -> Path:
    directory = root / "pods" / f"{namespace}_{pod}_uid-{pod}" / "app"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{restart}.log"


def _parsed(exporter: Exporter, pod: str, namespace: str = "prod", **more: str) -> float | None:
    return sample(
        exporter.metrics(),
        "log_exporter_lines_total",
        namespace=namespace,
        pod=pod,
        result="parsed",
        **more,
    )


def _wait_parsed(exporter: Exporter, pod: str, value: float, **more: str) -> None:
    wait_for(
        lambda: _parsed(exporter, pod, **more),
        f"{pod}'s parsed lines == {value}",
        until=lambda last: last == value,
        explain=exporter.diagnosis,
    )


def test_each_pod_counts_under_its_own_labels_and_new_files_are_read_from_their_start(
    tmp_path: Path,
) -> None:
    """Two pods present at start, a third whose directory appears later, and a container
    restart's 1.log beside 0.log: each pod's lines count under its namespace and pod, once."""
    append(_pod_file(tmp_path, "web-0"), _lines(3))
    append(_pod_file(tmp_path, "web-1"), _lines(5))
    with Exporter(tmp_path, ["--file", PATTERN, "--label", "job=sustainbot"]) as exporter:
        exporter.wait_healthy()
        _wait_parsed(exporter, "web-0", 3, job="sustainbot")
        _wait_parsed(exporter, "web-1", 5, job="sustainbot")
        # A pod scheduled later: its whole file counts, not only what is written after.
        append(_pod_file(tmp_path, "web-2"), _lines(7))
        _wait_parsed(exporter, "web-2", 7, job="sustainbot")
        # The container restarts: the kubelet starts 1.log beside 0.log.
        append(_pod_file(tmp_path, "web-0", restart=1), _lines(4))
        append(_pod_file(tmp_path, "web-0"), _lines(1, start=3))
        _wait_parsed(exporter, "web-0", 8, job="sustainbot")
        assert _parsed(exporter, "web-1", job="sustainbot") == 5


def test_a_pattern_matching_nothing_at_start_is_watched_not_fatal(tmp_path: Path) -> None:
    """With no pods directory at all the exporter starts, healthy and ready, and counts the
    first pod's file once the directory appears."""
    with Exporter(tmp_path, ["--file", PATTERN]) as exporter:
        exporter.wait_healthy()
        # Ready once the first scan (of nothing) is done: a moment after /healthz answers.
        wait_for(lambda: exporter.get("/readyz")[0] == 200, what="/readyz with no file yet")
        append(_pod_file(tmp_path, "late-0"), _lines(2))
        _wait_parsed(exporter, "late-0", 2)
    assert "no file matches --file yet" in exporter.stderr()


def test_kill_9_and_restart_from_state_counts_every_pod_exactly(tmp_path: Path) -> None:
    """Killed with SIGKILL while pods keep writing, then restarted from its state file, the
    exporter counts each pod's lines exactly once, those written while it was down included."""
    args = ["--file", PATTERN, "--state", "state.json", "--state-interval", "0.2"]
    pods = {"web-0": 0, "web-1": 0, "web-2": 0}
    with Exporter(tmp_path, args) as exporter:
        exporter.wait_healthy()
        for round_ in range(3):
            for i, pod in enumerate(pods):
                n = 20 + 7 * i + round_
                append(_pod_file(tmp_path, pod), _lines(n, start=pods[pod]))
                pods[pod] += n
        for pod, n in pods.items():
            _wait_parsed(exporter, pod, n)
        # Written and (maybe) read, the save after it maybe not made: kill -9 now.
        for pod in pods:
            append(_pod_file(tmp_path, pod), _lines(11, start=pods[pod]))
            pods[pod] += 11
        exporter.send(signal.SIGKILL)
        exporter.proc.wait(timeout=30)
    for pod in pods:
        append(_pod_file(tmp_path, pod), _lines(13, start=pods[pod]))
        pods[pod] += 13
    with Exporter(tmp_path, args) as exporter:
        exporter.wait_healthy()
        for pod, n in pods.items():
            _wait_parsed(exporter, pod, n)
        wait_for(lambda: exporter.get("/readyz")[0] == 200, "readiness after the restart")
        metrics = exporter.metrics()
        assert {
            pod: sample(
                metrics, "log_exporter_lines_total", namespace="prod", pod=pod, result="parsed"
            )
            for pod in pods
        } == pods


def test_a_deleted_pods_series_leave_metrics_and_state_after_the_grace_period(
    tmp_path: Path,
) -> None:
    """A pod's directory deleted: its lines stay counted during the grace period, then its
    series leave /metrics and the state file, while the other pod's stay."""
    append(_pod_file(tmp_path, "web-0"), _lines(3))
    append(_pod_file(tmp_path, "gone-0"), _lines(4))
    args = ["--file", PATTERN, "--state", "state.json", "--state-interval", "0.2"]
    with Exporter(tmp_path, [*args, "--file-grace-period", "2s"]) as exporter:
        exporter.wait_healthy()
        _wait_parsed(exporter, "gone-0", 4)
        shutil.rmtree(tmp_path / "pods" / "prod_gone-0_uid-gone-0")
        wait_for(
            lambda: _parsed(exporter, "gone-0") is None,
            "the deleted pod's series to leave /metrics",
            explain=exporter.diagnosis,
        )
        assert _parsed(exporter, "web-0") == 3

        wait_for(
            lambda: saved_label_sets(tmp_path / "state.json"),
            "the state file without the deleted pod",
            until=lambda sets: sets is not None and [s.get("pod") for s in sets] == ["web-0"],
        )


def test_a_constant_label_is_on_every_series_self_and_process_metrics_included(
    tmp_path: Path,
) -> None:
    """--label job=... reaches every sample of /metrics: the spec's, the self-metrics, serve's
    own, build_info and the process and Python collectors'."""
    log = tmp_path / "app.jsonl"
    append(log, _lines(2))
    with Exporter(
        tmp_path, ["--file", str(log), "--label", "job=sustainbot", "--label", "cluster=eu"]
    ) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric(
            "log_exporter_lines_total", 2, result="parsed", job="sustainbot", cluster="eu"
        )
        metrics = exporter.metrics()
    names = {name for name, _ in metrics}
    assert "process_cpu_seconds_total" in names
    assert "python_info" in names
    assert "log_exporter_build_info" in names
    unlabelled = [
        (name, labels)
        for name, labels in metrics
        if ("job", "sustainbot") not in labels or ("cluster", "eu") not in labels
    ]
    assert unlabelled == []


@pytest.mark.parametrize(
    ("args", "sources"),
    [
        (["--label", "pod=x"], ["--label pod=x", f"--file {PATTERN}"]),
        (["--label", "result=x"], ["--label result=x", "log_exporter_lines_total"]),
        (["--label", "job=a", "--label", "job=b"], ["--label job=a", "--label job=b"]),
    ],
)
def test_a_label_name_given_twice_is_refused_at_start_naming_both(
    tmp_path: Path, args: list[str], sources: list[str]
) -> None:
    """A --label whose name a capture, a metric or another --label also gives stops the
    exporter at start with the configuration exit code and a message naming both sources."""
    done = run_cli(["serve", "--file", PATTERN, *args], cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "is given twice" in done.stderr
    for source in sources:
        assert source in done.stderr


def test_cloudwatch_with_a_pattern_is_refused_at_start_naming_the_flags(tmp_path: Path) -> None:
    """CloudWatch shipping follows one file: with a --file pattern it is refused at start."""
    done = run_cli(["serve", "--file", PATTERN, "--cloudwatch"], cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "--cloudwatch" in done.stderr
    assert "follows one file" in done.stderr
    assert "--file" in done.stderr


def test_sigterm_drains_every_file_and_a_restart_counts_nothing_twice(tmp_path: Path) -> None:
    """Stopped with SIGTERM, the exporter reads every pod's file to its end, exits 0 and saves
    each position, so the restarted exporter shows the same counts and reads on from there."""
    args = ["--file", PATTERN, "--state", "state.json", "--drain-quiet", "0.2"]
    for i in range(4):
        append(_pod_file(tmp_path, f"web-{i}"), _lines(10 + i))
    with Exporter(tmp_path, args) as exporter:
        exporter.wait_healthy()
        _wait_parsed(exporter, "web-3", 13)
        assert exporter.stop(signal.SIGTERM) == 0
    append(_pod_file(tmp_path, "web-0"), _lines(5, start=10))
    with Exporter(tmp_path, args) as exporter:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/readyz")[0] == 200, "readiness after the restart")
        _wait_parsed(exporter, "web-0", 15)
        assert [_parsed(exporter, f"web-{i}") for i in range(1, 4)] == [11, 12, 13]
