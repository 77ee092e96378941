"""The many-file reader stepped by hand: a label set stays through the grace period after its
last file is gone, comes back whole if a file returns in time, and is dropped after it."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from log_exporter.manyfiles import MISSING_SECONDS, ManyFiles
from log_exporter.sources.patterns import parse_pattern
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.testing import ManualClock
from tests.support.tail import append as append_to

LINE = b'{"event": "auth.jwt_validated", "outcome": "failure"}\n'


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    append_to(path, data)


def _files(tmp_path: Path, clock: ManualClock, grace: float = 60.0) -> ManyFiles:
    pattern = parse_pattern(f"{tmp_path}/{{pod}}/*.log")
    return ManyFiles(
        [pattern],
        compile_spec(load_default_spec()),
        consistency=threading.Lock(),
        max_line_bytes=1 << 20,
        grace=grace,
        clock=clock,
    )


def _parsed(files: ManyFiles) -> dict[str, float]:
    return {
        dict(pairs)["pod"]: store.snapshot().lines.get("parsed", 0.0) for pairs, store in files.view
    }


def _step(files: ManyFiles, clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds)
    files.poll(files.feed)


def test_a_gone_pod_stays_for_the_grace_period_then_leaves(tmp_path: Path) -> None:
    """A pod's directory removed: its counts stay visible until every file of it has been gone
    for the grace period, then its label set and store are dropped; the other pod's stay."""
    clock = ManualClock(1000.0)
    append(tmp_path / "a" / "0.log", LINE * 2)
    append(tmp_path / "b" / "0.log", LINE * 3)
    files = _files(tmp_path, clock)
    files.start()
    _step(files, clock, 0)
    assert _parsed(files) == {"a": 2.0, "b": 3.0}
    shutil.rmtree(tmp_path / "a")
    for _ in range(int(MISSING_SECONDS) + 2):
        _step(files, clock, 1.0)
    assert set(files.files) == {str(tmp_path / "b" / "0.log")}
    _step(files, clock, 55.0)
    assert _parsed(files) == {"a": 2.0, "b": 3.0}
    _step(files, clock, 10.0)
    assert _parsed(files) == {"b": 3.0}
    assert [dict(s["labels"]) for s in files.section()["sets"]] == [{"pod": "b"}]


def test_a_pod_whose_file_returns_within_the_grace_period_keeps_its_counts(tmp_path: Path) -> None:
    """A file of a label set appearing again before the grace period ends (a restarted
    container's new log) adds to the same series instead of starting them over."""
    clock = ManualClock(1000.0)
    append(tmp_path / "a" / "0.log", LINE * 2)
    files = _files(tmp_path, clock)
    files.start()
    _step(files, clock, 0)
    shutil.rmtree(tmp_path / "a")
    for _ in range(int(MISSING_SECONDS) + 2):
        _step(files, clock, 1.0)
    assert files.files == {}
    append(tmp_path / "a" / "1.log", LINE * 4)
    _step(files, clock, 1.0)
    _step(files, clock, 100.0)
    assert _parsed(files) == {"a": 6.0}
