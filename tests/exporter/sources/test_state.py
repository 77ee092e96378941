"""The state file, and resuming a tailer from a saved position after what happened meanwhile."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import orjson
import pytest

from log_exporter.sources.tail import Tailer
from log_exporter.statefile import StateFile, StateKeeper
from log_exporter.values import FileId, Position, position_from_json, position_to_json
from tests.support.tail import Reader, append, exactly_once, line, lines_of, write_lines

# -- the state file ------------------------------------------------------------------------


def test_position_and_sections_survive_a_save_and_load(tmp_path: Path) -> None:
    """What is saved (positions with rotated generations, metric state) loads back equal."""
    position = Position(
        FileId(1, 2, "ab"),
        10,
        (Position(FileId(1, 3, "cd"), 5),),
        (FileId(1, 3, "cd"), FileId(1, 4, "")),
    )
    state = StateFile(tmp_path / "state.json", target=str(tmp_path / "app.jsonl"))
    sections = {"metrics": {"position": position_to_json(position), "store": {"c": {"a": 1.5}}}}
    state.save(sections)
    loaded = state.load()
    assert loaded == sections
    assert position_from_json(loaded["metrics"]["position"]) == position
    assert os.listdir(tmp_path) == ["state.json"], "no temporary file is left behind"
    assert os.stat(tmp_path / "state.json").st_mode & 0o077 == 0, "state is private"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00\xff garbage", "not JSON"),
        (b'{"format": "log-exporter-state", "version": 1, "sec', "not JSON"),
        (b"[1, 2]", "not a log-exporter state file"),
        (b'{"format": "log-exporter-state", "version": 99, "sections": {}}', "version 99"),
        (b'{"format": "log-exporter-state", "version": 1, "sections": []}', "sections"),
    ],
)
def test_corrupt_state_file_is_ignored_and_counted(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """An unreadable state file makes a fresh start, with the reason recorded and counted."""
    path = tmp_path / "state.json"
    path.write_bytes(content)
    state = StateFile(path)
    assert state.load() is None
    assert state.load_error is not None and reason in state.load_error
    assert state.load_failures == 1


def test_state_file_of_another_log_is_ignored(tmp_path: Path) -> None:
    """A state file saved for another log file is not resumed from."""
    path = tmp_path / "state.json"
    StateFile(path, target="/var/log/other.jsonl").save({"metrics": {}})
    state = StateFile(path, target=str(tmp_path / "app.jsonl"))
    assert state.load() is None
    assert state.load_error is not None and "other.jsonl" in state.load_error
    assert state.load_failures == 1


def test_missing_state_file_is_a_first_start_not_a_failure(tmp_path: Path) -> None:
    """No state file yet is the normal first start: nothing loaded, nothing counted."""
    state = StateFile(tmp_path / "state.json")
    assert state.load() is None
    assert state.load_error == "missing" and state.load_failures == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"dev": 1, "ino": 2, "fingerprint": "x"},
        {"dev": -1, "ino": 2, "fingerprint": "x", "offset": 0},
        {"dev": 1, "ino": 2, "fingerprint": 7, "offset": 0},
        {"dev": 1, "ino": 2, "fingerprint": "x", "offset": 0, "known": [[1, 2]]},
        [1, 2, "x", 0],
    ],
)
def test_bad_position_is_a_clear_error(bad: object) -> None:
    """A malformed saved position raises ValueError naming what is wrong, nothing else."""
    with pytest.raises(ValueError, match="position"):
        position_from_json(bad)


def test_failed_save_is_counted_and_keeps_the_previous_state(tmp_path: Path) -> None:
    """A save that cannot be written is counted as an error; the last good state stays."""
    path = tmp_path / "state.json"
    keeper = StateKeeper(StateFile(path))
    keeper.set("metrics", {"n": 1})
    assert keeper.save()
    keeper.set("metrics", {"n": object()})  # not JSON: the write fails before the rename
    assert not keeper.save()
    assert keeper.saves_total == {"success": 1, "error": 1}
    assert StateFile(path).load() == {"metrics": {"n": 1}}
    assert os.listdir(tmp_path) == ["state.json"]


def test_keeper_writes_every_component_section_together(tmp_path: Path) -> None:
    """Two components each update their own section; one file holds both, and a section loaded
    at start survives a save made before its owner updates it."""
    path = tmp_path / "state.json"
    StateFile(path).save({"cloudwatch": {"position": "old"}, "metrics": {"n": 0}})
    keeper = StateKeeper(StateFile(path))
    assert keeper.load() == {"cloudwatch": {"position": "old"}, "metrics": {"n": 0}}
    calls: list[int] = []

    def metrics() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    keeper.provide("metrics", metrics)
    assert keeper.save()
    assert StateFile(path).load() == {"cloudwatch": {"position": "old"}, "metrics": {"n": 1}}
    keeper.set("cloudwatch", {"position": "new"})
    assert keeper.save()
    assert orjson.loads(path.read_bytes())["sections"] == {
        "cloudwatch": {"position": "new"},
        "metrics": {"n": 2},
    }


def test_keeper_saves_only_when_the_interval_has_passed(tmp_path: Path) -> None:
    """maybe_save() writes at most once per interval, so calling it after every batch is cheap."""
    now = [100.0]
    keeper = StateKeeper(StateFile(tmp_path / "state.json"), interval=5.0, clock=lambda: now[0])
    keeper.set("metrics", {})
    assert not keeper.maybe_save()
    now[0] += 5.0
    assert keeper.maybe_save()
    now[0] += 4.9
    assert not keeper.maybe_save()
    assert keeper.saves_total["success"] == 1


# -- resuming ------------------------------------------------------------------------------


def read_all(path: Path, n: int, **kwargs: object) -> Reader:
    reader = Reader(Tailer(path, rotation_grace=0.05, **kwargs))  # type: ignore[arg-type]
    reader.until_count(n)
    return reader


def test_resume_at_the_saved_offset_reads_only_new_lines(tmp_path: Path) -> None:
    """A restart with a saved position neither re-reads nor skips anything."""
    path = tmp_path / "app.jsonl"
    write_lines(path, lines_of(range(10)))
    first = read_all(path, 10)
    position = first.tailer.position
    first.tailer.close()
    write_lines(path, lines_of(range(10, 15)))
    second = read_all(path, 5, resume=position)
    second.poll()
    assert second.lines == lines_of(range(10, 15))


def test_resume_after_rotations_while_stopped(tmp_path: Path) -> None:
    """Rotated twice while stopped: the old file is finished from the offset, the generation in
    between read whole, then the new file from 0; history present before is not read."""
    path = tmp_path / "app.jsonl"
    write_lines(f"{path}.1", lines_of(range(3), "history"))
    write_lines(path, lines_of(range(10), "a"))
    first = read_all(path, 10)
    position = first.tailer.position
    first.tailer.close()

    write_lines(path, lines_of(range(10, 12), "a"))  # unread when it was rotated
    os.rename(f"{path}.1", f"{path}.2")
    os.rename(path, f"{path}.1")
    write_lines(path, lines_of(range(4), "b"))
    for k in (2, 1):
        os.rename(f"{path}.{k}", f"{path}.{k + 1}")
    os.rename(path, f"{path}.1")
    write_lines(path, lines_of(range(3), "c"))

    second = read_all(path, 9, resume=position)
    second.poll()
    expected = lines_of(range(10, 12), "a") + lines_of(range(4), "b") + lines_of(range(3), "c")
    assert second.lines == expected
    assert second.rotations == 2
    assert second.tailer.resume_misses == 0


def test_state_saved_before_the_file_appeared_does_not_make_new_generations_history(
    tmp_path: Path,
) -> None:
    """A position saved while the path did not exist yet keeps the history it noted, so a restart
    reads every generation written since, rotated ones included, and still not the history."""
    path = tmp_path / "app.jsonl"
    write_lines(f"{path}.1", lines_of(range(3), "history"))
    first = Reader(Tailer(path))
    first.poll()
    saved = first.tailer.position
    assert saved is not None, "a restart must know what was history at start"
    position = position_from_json(orjson.loads(orjson.dumps(position_to_json(saved))))
    first.tailer.close()

    write_lines(path, lines_of(range(4), "a"))
    os.rename(f"{path}.1", f"{path}.2")
    os.rename(path, f"{path}.1")
    write_lines(path, lines_of(range(2), "b"))

    second = read_all(path, 6, resume=position)
    second.poll()
    exactly_once(second.lines, lines_of(range(4), "a") + lines_of(range(2), "b"))
    assert second.tailer.resume_misses == 0


def test_resume_after_copytruncate_while_stopped(tmp_path: Path) -> None:
    """copytruncate while stopped: the lines after the offset are read from the copy, then the
    truncated file from 0."""
    path = tmp_path / "app.jsonl"
    write_lines(path, lines_of(range(10), "a"))
    first = read_all(path, 10)
    position = first.tailer.position
    first.tailer.close()
    write_lines(path, lines_of(range(10, 13), "a"))
    shutil.copyfile(path, f"{path}.1")
    os.truncate(path, 0)
    write_lines(path, lines_of(range(20), "b"))  # regrows past the old offset

    second = read_all(path, 23, resume=position)
    exactly_once(second.lines, lines_of(range(10, 13), "a") + lines_of(range(20), "b"))
    assert second.truncations == 1


def test_resume_during_the_grace_period_finishes_the_rotated_file(tmp_path: Path) -> None:
    """Stopped while a rotated file was still being read for late writes: on restart both the
    rotated file and the current one continue from their own offsets."""
    path = tmp_path / "app.jsonl"
    first = Reader(Tailer(path, rotation_grace=600))
    with open(path, "ab", buffering=0) as late:
        late.write(line(0) + b"\n")
        first.until_count(1)
        os.rename(path, f"{path}.1")
        append(path, line(1, "new") + b"\n")
        first.until_count(2)
        position = first.tailer.position
        assert position is not None and len(position.rotated) == 1
        first.tailer.close()
        late.write(line(2, "late") + b"\n")
    append(path, line(3, "new") + b"\n")

    second = read_all(path, 2, resume=position)
    second.poll()
    exactly_once(second.lines, [line(2, "late"), line(3, "new")])


def test_resume_from_a_position_that_matches_nothing_starts_at_zero(tmp_path: Path) -> None:
    """A saved position for a file that no longer exists anywhere is logged and counted, and
    the current file is read from 0 (the lines may be new to us; we cannot tell)."""
    path = tmp_path / "app.jsonl"
    write_lines(path, lines_of(range(4)))
    stale = Position(FileId(0, 12345, "0" * 32), 100)
    reader = read_all(path, 4, resume=stale)
    assert reader.lines == lines_of(range(4))
    assert reader.tailer.resume_misses == 1


def test_resume_after_truncation_while_stopped_without_copy(tmp_path: Path) -> None:
    """Truncated while stopped and rewritten shorter: read from 0, never from a stale offset."""
    path = tmp_path / "app.jsonl"
    write_lines(path, lines_of(range(10), "a"))
    first = read_all(path, 10)
    position = first.tailer.position
    first.tailer.close()
    path.write_bytes(line(0, "b") + b"\n")
    second = read_all(path, 1, resume=position)
    assert second.lines == [line(0, "b")]


def test_io_error_while_resuming_is_retried_from_the_saved_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read failing while the saved position is being looked up is counted and retried, and
    the resume still neither re-reads nor skips a line."""
    path = tmp_path / "app.jsonl"
    write_lines(path, lines_of(range(4)))
    first = read_all(path, 4)
    position = first.tailer.position
    first.tailer.close()
    write_lines(path, lines_of(range(4, 6)))  # unread when it was rotated
    os.rename(path, f"{path}.1")
    write_lines(path, lines_of(range(6, 8)))

    # Simulated: a disk failing one read cannot be arranged here; one pread raises EIO.
    real_pread = os.pread

    def failing_pread(fd: int, n: int, offset: int) -> bytes:
        monkeypatch.setattr(os, "pread", real_pread)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pread", failing_pread)
    second = Reader(Tailer(path, resume=position, rotation_grace=0.05))
    assert second.poll().lines == []
    assert second.tailer.io_errors == 1
    second.until_count(4)
    second.poll()
    assert second.lines == lines_of(range(4, 8))
    assert second.rotations == 1
