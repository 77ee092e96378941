"""Node mode end to end: one ``log-exporter serve`` process reading several pods' CRI logs under a
/var/log/pods tree as the kubelet and containerd write, rotate, restart and delete them, killed
with kill -9 and restarted from its state file."""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.support.contract import contract_line
from tests.support.kubelet import SPLIT, ContainerLog
from tests.support.serve import Exporter, sample, saved_label_sets, saved_offsets
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

PATTERN = "pods/{namespace}_{pod}_{_}/sustainbot/*.log"
# Events of the built-in SustainBot spec: sustainbot_jwt_validations_total{outcome} and
# sustainbot_authentication_failures_total{failure_type}.
VALIDATED = contract_line("auth.jwt_validated", outcome="success").rstrip(b"\n")
FAILED = contract_line("auth.failed", failure_type="expired").rstrip(b"\n")
# An event over containerd's buffer: three P chunks and an F.
BIG = contract_line("auth.jwt_validated", outcome="success", padding="x" * (3 * SPLIT)).rstrip(
    b"\n"
)
BANNER = b"sustainbot: listening on 0.0.0.0:8000"
TRACEBACK = [
    b"Traceback (most recent call last):",
    b'  File "/app/sustainbot/app.py", line 88, in handle',
    b"ValueError: no workflow named 'x'",
]


class Pod:
    """One pod's ``sustainbot`` container log and what an operator should see counted of it."""

    def __init__(self, root: Path, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.log = ContainerLog(root, namespace, name, f"uid-{namespace}-{name}")
        self.expected: Counter[str] = Counter()

    @property
    def labels(self) -> dict[str, str]:
        return {"namespace": self.namespace, "pod": self.name}

    def events(self, validated: int, failed: int = 0) -> None:
        for _ in range(validated):
            self.log.print("stdout", VALIDATED)
        for _ in range(failed):
            self.log.print("stdout", FAILED)
        self.expected["validated"] += validated
        self.expected["failed"] += failed

    def big(self) -> None:
        self.log.print("stdout", BIG)
        self.expected["validated"] += 1

    def traceback(self) -> None:
        for line in TRACEBACK:
            self.log.print("stderr", line)
        self.expected["unstructured"] += len(TRACEBACK)

    def banner(self) -> None:
        self.log.print("stdout", BANNER)
        self.expected["unstructured"] += 1

    def seen(self, exporter: Exporter) -> dict[str, float]:
        """What /metrics shows of this pod, in the terms of ``expected``."""
        samples = exporter.metrics()
        got = {
            "validated": sample(
                samples, "sustainbot_jwt_validations_total", outcome="success", **self.labels
            ),
            "failed": sample(
                samples,
                "sustainbot_authentication_failures_total",
                failure_type="expired",
                **self.labels,
            ),
        }
        for result in ("parsed", "unstructured", "partial", "malformed", "oversized"):
            got[result] = sample(samples, "log_exporter_lines_total", result=result, **self.labels)
        # A result never counted has no series yet: as an operator reads it, zero.
        return {k: v or 0.0 for k, v in got.items()}

    def want(self) -> dict[str, float]:
        e = self.expected
        return {
            "validated": float(e["validated"]),
            "failed": float(e["failed"]),
            "parsed": float(e["validated"] + e["failed"]),
            "unstructured": float(e["unstructured"]),
            "partial": float(e["partial"]),
            "malformed": 0.0,
            "oversized": 0.0,
        }

    def wait_counted(self, exporter: Exporter) -> None:
        """Wait until /metrics shows exactly ``want()``; a count past it fails at once."""
        want = self.want()
        got = wait_for(
            lambda: self.seen(exporter),
            f"{self.namespace}/{self.name}'s counts == {want}",
            until=lambda got: got == want or any(got[k] > want[k] for k in want),
            explain=exporter.diagnosis,
        )
        assert got == want, f"{self.namespace}/{self.name}"


def _pods_on_metrics(exporter: Exporter) -> set[tuple[str, str]]:
    return {
        (dict(labels).get("namespace", ""), dict(labels)["pod"])
        for _, labels in exporter.metrics()
        if "pod" in dict(labels)
    }


def test_a_node_of_pods_rotated_restarted_deleted_and_killed_counts_each_pod_exactly(
    tmp_path: Path,
) -> None:
    """Pods in two namespaces writing CRI logs with split events and stderr tracebacks, rotated,
    a container restarted, a pod deleted, the exporter killed with kill -9 inside a split line
    while the kubelet rotates and gzips: each pod's events, unstructured and partial lines count
    exactly once under its own namespace and pod, and the deleted pod's series leave /metrics."""
    root = tmp_path / "pods"
    a = Pod(root, "prod", "sustainbot-7d4f-a")
    b = Pod(root, "prod", "sustainbot-7d4f-b")
    # The same pod name in another namespace: its lines must not add up with prod's.
    s = Pod(root, "staging", "sustainbot-7d4f-a")
    gone = Pod(root, "prod", "sustainbot-7d4f-gone")
    live = [a, b, s]
    for i, pod in enumerate([*live, gone]):
        pod.banner()
        pod.events(5 + i, failed=1 + i)
        pod.big()
        pod.traceback()
        pod.events(2)

    state = tmp_path / "state.json"
    args = ["--file", PATTERN, "--input-format", "cri", "--state", state.name]
    args += ["--state-interval", "0.1", "--file-grace-period", "1s"]
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        gone.wait_counted(first)
        # The pod deleted: the kubelet removes its directory with its logs.
        shutil.rmtree(gone.log.dir.parent)

        # The kubelet rotates a's log twice (the older generation gzipped) and s's once.
        for _ in range(2):
            a.events(7, failed=1)
            a.traceback()
            a.big()
            a.log.rotate()
        s.events(4)
        s.log.rotate()
        s.big()
        s.events(3, failed=2)
        # b's container restarts: 1.log beside 0.log, the same series.
        b.events(3)
        b.log.restart()
        b.banner()
        b.events(6, failed=1)
        b.traceback()
        b.events(1)
        a.events(2)
        for pod in live:
            pod.wait_counted(first)

        # Half of a split event in a's log, a traceback between its chunks: everything read,
        # the saved position at the split line's start.
        start = a.log.path.stat().st_size
        chunks = a.log.chunks("stdout", BIG)
        for chunk in chunks[:2]:
            a.log.write_raw(chunk)
            a.traceback()
        first.wait_metric("log_exporter_bytes_read_total", float(a.log.written), **a.labels)
        wait_for(lambda: start in saved_offsets(state), f"a state save at {start}")

        wait_for(
            lambda: _pods_on_metrics(first),
            "the deleted pod's series to leave /metrics after the grace period",
            until=lambda pods: pods == {(p.namespace, p.name) for p in live},
            explain=first.diagnosis,
        )
        wait_for(
            lambda: saved_label_sets(state),
            "the state file without the deleted pod",
            until=lambda sets: sets is not None and len(sets) == len(live),
        )
        first.stop(signal.SIGKILL)

    # While it is down: a's split event ends, the kubelet rotates a's log twice (the generation
    # holding the split event gzipped, its plain file removed); s's container is killed inside a
    # long line (a P never ended) and rotated; b's restarted container writes on.
    for chunk in chunks[2:]:
        a.log.write_raw(chunk)
    a.expected["validated"] += 1
    a.events(4)
    a.log.rotate()
    a.events(1, failed=1)
    a.log.rotate()
    assert any(p.name.endswith(".gz") for p in a.log.files())
    a.events(3)
    s.log.print("stdout", BIG, ended=False)
    s.expected["partial"] += 1
    s.log.rotate()
    s.events(2, failed=1)
    b.traceback()
    b.events(5)

    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        for pod in live:
            pod.wait_counted(second)
        wait_for(lambda: second.get("/readyz")[0] == 200, "readiness after the restart")
        samples = second.metrics()
        assert _pods_on_metrics(second) == {(p.namespace, p.name) for p in live}
        # Every series of the spec's metrics and of reading is some pod's, with both labels.
        pods = {(p.namespace, p.name) for p in live}
        read = ("log_exporter_lines_total", "log_exporter_bytes_read_total")
        for name, labels in samples:
            if name.startswith("sustainbot_") or name in read:
                pairs = dict(labels)
                assert (pairs.get("namespace"), pairs.get("pod")) in pods, (name, labels)
        for pod in live:
            assert pod.seen(second) == pod.want()
        assert second.stop() == 0
