"""The kubelet's rotated container logs: ``N.log.<YYYYMMDD-HHMMSS>``, gzipped through a ``.tmp``
file, known to the tailer as generations of ``N.log`` and ordered by replay."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from log_exporter.sources.cri import decode
from log_exporter.sources.files import LogFile, _rotation_number, order_sources
from log_exporter.sources.tail import Tailer
from log_exporter.sources.tail.siblings import Siblings, is_rotated_name
from log_exporter.testing import ManualClock
from log_exporter.values import FileId, Position, fingerprint_of
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


def test_gzip_generation_on_a_reused_inode_number_is_read_on_resume(tmp_path: Path) -> None:
    """A generation gzipped while the exporter was stopped, its .gz given the inode number of a
    file the state file knew (the original the kubelet deleted after compressing it), is read
    on resume: an inode number alone does not make it known, its bytes decide."""
    log = tmp_path / "0.log"
    log.write_bytes(b'2026-12-07T10:15:00.000000001Z stdout F {"event": "a"}\n')
    rotated = tmp_path / "0.log.20261207-101504.gz"
    with gzip.open(rotated, "wb") as f:
        f.write(b'2026-12-07T10:14:00.000000001Z stdout F {"event": "b"}\n')
    st, gz = log.stat(), rotated.stat()
    current = FileId(st.st_dev, st.st_ino, fingerprint_of(log.read_bytes()))
    # What the state file knew under that inode number: another file, since deleted.
    gone = FileId(gz.st_dev, gz.st_ino, "0" * 32)
    position = Position(current, st.st_size, (), (current, gone))
    tailer = Tailer(log, resume=position, clock=ManualClock(), input_format="cri")
    lines = tailer.poll().lines
    tailer.close()
    assert decode(lines) == [{"event": "b"}]
