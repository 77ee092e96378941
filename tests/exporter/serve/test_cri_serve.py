"""serve reading a container's CRI log under a /var/log/pods tree as the kubelet writes and
rotates it, killed with kill -9 and restarted from its state: every line counted once."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.contract import contract_line
from tests.support.kubelet import SPLIT, ContainerLog
from tests.support.serve import Exporter, sample, saved_offsets
from tests.support.waits import wait_for

EVENT = contract_line("auth.jwt_validated", outcome="success").rstrip(b"\n")
# An event the runtime cuts into three P chunks and an F.
BIG = contract_line("auth.jwt_validated", outcome="success", padding="x" * (3 * SPLIT)).rstrip(
    b"\n"
)
TRACEBACK = b"Traceback (most recent call last):"


def test_kill_9_inside_a_split_line_and_kubelet_rotations_count_every_line_once(
    tmp_path: Path,
) -> None:
    """Killed while a split line's chunks are half written (stderr noise between them) and
    restarted after the kubelet rotated and gzipped that generation: events, unstructured
    stderr lines and the partial a killed container left are each counted exactly once."""
    c = ContainerLog(tmp_path / "var" / "log" / "pods", "prod", "sustainbot-0", "7c1e")
    state = tmp_path / "state.json"
    args = ["--file", str(c.path), "--input-format", "cri", "--state", str(state)]
    args += ["--state-interval", "0.1"]
    events = noise = 0
    with Exporter(tmp_path, args) as first:
        first.wait_healthy()
        for round_ in range(4):
            for _ in range(30):
                c.print("stdout", EVENT)
            c.print("stderr", TRACEBACK)
            c.print("stdout", BIG)
            events, noise = events + 31, noise + 1
            if round_ % 2:
                c.rotate()
        first.wait_metric("log_exporter_lines_total", float(events), result="parsed")
        # Half a split line, stderr writing between its chunks: the exporter has read it all
        # and saved a position at the split line's start, holding the stderr lines back.
        start = c.path.stat().st_size
        chunks = c.chunks("stdout", BIG)
        for chunk in chunks[:2]:
            c.write_raw(chunk)
            c.print("stderr", TRACEBACK)
            noise += 1
        size = c.path.stat().st_size
        unstructured_before = noise - 2
        first.wait_metric("log_exporter_bytes_read_total", float(c.written))
        wait_for(lambda: start in saved_offsets(state), f"a state save at the split line's {start}")
        assert size > start
        # The stderr lines after the split line's start are held back with it.
        samples = first.metrics()
        assert sample(samples, "log_exporter_lines_total", result="unstructured") == (
            unstructured_before
        )
        first.stop(signal.SIGKILL)

    # While it is down the line ends, and the kubelet rotates twice: the generation it was in
    # is gzipped, its plain file removed.
    for chunk in chunks[2:]:
        c.write_raw(chunk)
    events += 1
    for _ in range(10):
        c.print("stdout", EVENT)
    events += 10
    c.rotate()
    c.print("stdout", EVENT)
    events += 1
    c.rotate()
    assert any(p.name.endswith(".gz") for p in c.files())
    # The container killed in the middle of a line: its P never gets an F in that file.
    c.print("stdout", BIG, ended=False)
    c.rotate()
    c.print("stdout", EVENT)
    events += 1

    with Exporter(tmp_path, args) as second:
        second.wait_healthy()
        second.wait_metric("log_exporter_lines_total", 1.0, result="partial")
        second.wait_metric("log_exporter_lines_total", float(events), result="parsed")
        samples = second.metrics()
        assert sample(samples, "log_exporter_lines_total", result="unstructured") == noise
        assert sample(samples, "log_exporter_lines_total", result="malformed") == 0
        assert sample(samples, "log_exporter_lines_total", result="oversized") == 0
        assert sample(samples, "sustainbot_jwt_validations_total", outcome="success") == float(
            events
        )
        assert second.stop() == 0
