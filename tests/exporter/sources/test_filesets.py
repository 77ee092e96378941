"""``--file`` patterns as file sets: each match with its rotated generations, grouped by labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_exporter.sources.files import ReplayError
from log_exporter.sources.filesets import gather, labels_text, rotated_generations
from log_exporter.sources.patterns import parse_pattern


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}\n")


def test_rotated_generations_of_every_rotator_are_found_and_nothing_else(tmp_path: Path) -> None:
    """logrotate's .N and -YYYYMMDD, the kubelet's .YYYYMMDD-HHMMSS, each plain or .gz, are a
    log's generations; a backup, a longer name or a directory of such a name is not."""
    ours = ["app.log.1", "app.log.2.gz", "app.log-20260101", "app.log-20260101.gz"]
    ours += ["app.log.20260101-120000", "app.log.20260101-130000.gz"]
    theirs = ["app.log.bak", "app.log2", "app.log.1.tmp", "other.log.1", "app.logs.1"]
    _touch(*(tmp_path / n for n in [*ours, *theirs, "app.log"]))
    (tmp_path / "app.log.3").mkdir()
    found = rotated_generations(str(tmp_path / "app.log"))
    assert found == sorted(str(tmp_path / n) for n in ours)


def test_files_group_by_captured_labels_with_their_generations(tmp_path: Path) -> None:
    """Each pod's live file and its generations form one set labelled by the captures; a file
    named positionally is a set without labels, read alone."""
    a, b = tmp_path / "ns_a_1" / "0.log", tmp_path / "ns_b_2" / "0.log"
    old_a = tmp_path / "ns_a_1" / "0.log.20260101-000000.gz"
    alone = tmp_path / "alone.log"
    _touch(a, b, old_a, alone, tmp_path / "alone.log.1")
    pattern = parse_pattern(str(tmp_path / "{namespace}_{pod}_{_}" / "*.log"))
    sets = gather([str(alone)], [pattern])
    assert [(s.labels, sorted(s.paths)) for s in sets] == [
        ((), [str(alone)]),
        ((("namespace", "ns"), ("pod", "a")), sorted([str(a), str(old_a)])),
        ((("namespace", "ns"), ("pod", "b")), [str(b)]),
    ]


def test_a_file_matched_twice_with_the_same_labels_is_read_once(tmp_path: Path) -> None:
    """Overlapping patterns giving a file the same labels put it in its set once."""
    _touch(tmp_path / "p" / "0.log", tmp_path / "p" / "0.log.1")
    narrow = parse_pattern(str(tmp_path / "{pod}" / "*.log"))
    wide = parse_pattern(str(tmp_path / "{pod}" / "*"))
    (only,) = gather([], [narrow, wide])
    assert sorted(only.paths) == [str(tmp_path / "p" / "0.log"), str(tmp_path / "p" / "0.log.1")]


def test_a_positional_file_a_pattern_labels_too_is_refused(tmp_path: Path) -> None:
    """A file named alone and also labelled by a pattern would be counted twice: refused."""
    _touch(tmp_path / "p" / "0.log")
    with pytest.raises(ReplayError, match="counted twice"):
        gather([str(tmp_path / "p" / "0.log")], [parse_pattern(str(tmp_path / "{pod}/0.log"))])


def test_labels_text_escapes_as_prometheus_writes_values() -> None:
    """Quotes, backslashes and newlines in a captured value are escaped in the printed labels."""
    assert labels_text((("pod", 'a"b\\c\nd'),)) == '{pod="a\\"b\\\\c\\nd"}'
    assert labels_text(()) == "{}"
