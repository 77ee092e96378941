"""The kubelet's rotated container logs: ``N.log.<YYYYMMDD-HHMMSS>``, gzipped through a ``.tmp``
file, known to the tailer as generations of ``N.log`` and ordered by replay."""

from __future__ import annotations

import json
import os
from pathlib import Path

from log_exporter.sources.cri import decode
from log_exporter.sources.files import LogFile, _rotation_number, order_sources
from log_exporter.sources.tail import Tailer
from log_exporter.sources.tail.siblings import Siblings, is_rotated_name
from log_exporter.testing import ManualClock
from tests.support.contract import contract_line
from tests.support.kubelet import ContainerLog

EVENT = contract_line("auth.jwt_validated", outcome="success").rstrip(b"\n")


def test_kubelet_names_are_rotated_generations_and_its_compression_file_is_not(
    tmp_path: Path,
) -> None:
    """``0.log.20261207-101500`` (and its ``.gz``) are generations of ``0.log``; the ``.tmp``
    the kubelet compresses into, gzip bytes under way, is never read as one."""
    assert is_rotated_name("0.log.20261207-101500", "0.log")
    assert not is_rotated_name("1.log", "0.log")
    for name in ("0.log", "0.log.20261207-101500", "0.log.20261207-101459.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "0.log.20261207-101500.tmp").write_bytes(b"\x1f\x8b")
    siblings = Siblings(str(tmp_path / "0.log"), grace=1.0, max_line_bytes=100, clock=lambda: 0)
    assert [os.path.basename(n) for n in siblings.names()] == ["0.log.20261207-101500"]
    assert [os.path.basename(n) for n in siblings.gzip_names()] == ["0.log.20261207-101459.gz"]


def test_compression_under_way_between_polls_is_not_read_as_a_generation(tmp_path: Path) -> None:
    """The kubelet rotating twice between two polls, the next compression under way in its
    ``.tmp`` file: the tailer reads every line once, and never the compressed bytes as lines."""
    c = ContainerLog(tmp_path, "prod", "sustainbot-0", "7c1e")
    clock = ManualClock()
    tailer = Tailer(c.path, rotation_grace=1.0, clock=clock, input_format="cri")
    c.print("stdout", EVENT)
    lines = tailer.poll().lines
    c.rotate()
    c.print("stdout", EVENT)
    c.rotate()  # the first rotated generation is gzipped now
    (plain,) = [p for p in c.files() if p.name.startswith("0.log.") and p.suffix != ".gz"]
    (c.dir / f"{plain.name}.tmp").write_bytes(b"\x1f\x8b\x08\x00\n\n garbled \n")
    c.print("stdout", EVENT)
    for _ in range(5):
        lines += tailer.poll().lines
        clock.advance(2.0)
    tailer.close()
    assert decode(lines) == [json.loads(EVENT)] * 3


def test_replay_orders_kubelet_generations_oldest_first() -> None:
    """Files without a timed event are ordered by the kubelet's stamps: the earlier stamp, then
    the later one, then the file being written."""
    names = ["0.log", "0.log.20261207-101502", "0.log.20261207-101459.gz", "0.log.20261207-101501"]
    ordered = order_sources(
        [LogFile(n, 0, n.endswith(".gz"), None, _rotation_number(n)) for n in names]
    )
    assert [s.path for s in ordered] == [
        "0.log.20261207-101459.gz",
        "0.log.20261207-101501",
        "0.log.20261207-101502",
        "0.log",
    ]
