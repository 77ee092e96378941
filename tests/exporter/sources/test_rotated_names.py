"""Rotated generations under other rotators' names and gzip-compressed, live and across restarts."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from log_exporter.sources.tail import Tailer
from log_exporter.sources.tail.siblings import is_rotated_name
from log_exporter.testing import ManualClock
from log_exporter.values import Position, position_from_json, position_to_json
from tests.support.serve import run_cli
from tests.support.tail import Reader, append, exactly_once, line


def lines_of(seq: range, tag: str = "line") -> list[bytes]:
    return [line(i, tag) for i in seq]


def write_lines(path: Path | str, lines: list[bytes]) -> None:
    append(path, b"".join(x + b"\n" for x in lines))


def compress(name: Path | str) -> None:
    """What logrotate's compress and lumberjack do: write NAME.gz, then remove NAME."""
    with open(name, "rb") as src, gzip.open(f"{name}.gz", "wb") as dst:
        dst.write(src.read())
    os.unlink(name)


def saved(tailer: Tailer) -> Position:
    """The tailer's position as a restart reads it back from the state file."""
    assert tailer.position is not None
    return position_from_json(position_to_json(tailer.position))


def read_all(tailer: Tailer, clock: ManualClock | None = None) -> list[bytes]:
    """Poll until every open generation is read and let go (past its grace period)."""
    lines: list[bytes] = []
    for _ in range(50):
        batch = tailer.poll()
        lines.extend(batch.lines)
        if clock is not None:
            clock.advance(10.0)
        if tailer.at_end and not batch.lines and not batch.bytes_read:
            break
    return lines


def test_common_rotators_names_are_rotated_generations() -> None:
    """logrotate's NAME.N and NAME-DATE, lumberjack's STEM-TIMESTAMP.EXT and the operator's globs
    name rotated generations; the log itself and other files do not."""
    assert is_rotated_name("app.log.1", "app.log")
    assert is_rotated_name("app.log-20261207", "app.log")
    assert is_rotated_name("access-2026-12-07T15-45-33.123.log", "access.log")
    assert is_rotated_name("app.7.log", "app.log", ("app.*.log",))
    assert not is_rotated_name("app.log", "app.log")
    assert not is_rotated_name("access-2026-12-07.log", "access.log")
    assert not is_rotated_name("other.log", "app.log", ("app.*.log",))


def test_lumberjack_generation_missed_between_polls_is_read(tmp_path: Path) -> None:
    """A generation created and renamed to lumberjack's backup name between two polls is found
    among the siblings and read, before the new file."""
    path = tmp_path / "access.log"
    first, missed, last = lines_of(range(3)), lines_of(range(3, 6)), lines_of(range(6, 9))
    write_lines(path, first)
    reader = Reader(Tailer(path, rotation_grace=0.05))
    reader.until_count(3)
    os.rename(path, tmp_path / "access-2026-12-07T15-45-33.123.log")
    write_lines(path, missed)
    os.rename(path, tmp_path / "access-2026-12-07T15-45-34.456.log")
    write_lines(path, last)
    reader.until_count(9)
    exactly_once(reader.lines, first + missed + last)


def test_generation_under_an_operators_glob_is_read(tmp_path: Path) -> None:
    """A rotator's name the exporter does not know is found through the operator's glob."""
    path = tmp_path / "app.log"
    first, missed, last = lines_of(range(3)), lines_of(range(3, 6)), lines_of(range(6, 9))
    write_lines(path, first)
    reader = Reader(Tailer(path, rotation_grace=0.05, rotated_globs=("app.*.log",)))
    reader.until_count(3)
    os.rename(path, tmp_path / "app.1.log")
    write_lines(path, missed)
    os.rename(path, tmp_path / "app.2.log")
    write_lines(path, last)
    reader.until_count(9)
    exactly_once(reader.lines, first + missed + last)


def test_generation_compressed_while_stopped_resumes_at_the_saved_offset(tmp_path: Path) -> None:
    """Rotated under lumberjack's name and gzipped while stopped: the restart finds it by its
    first bytes and reads on from the saved offset, then the generations after it."""
    path, clock = tmp_path / "access.log", ManualClock()
    write_lines(path, lines_of(range(5)))
    tailer = Tailer(path, clock=clock, rotation_grace=1.0)
    assert read_all(tailer, clock) == lines_of(range(5))
    position = saved(tailer)
    tailer.close()

    write_lines(path, lines_of(range(5, 7)))  # unread when rotated
    backup = tmp_path / "access-2026-12-07T15-45-33.123.log"
    os.rename(path, backup)
    compress(backup)
    write_lines(path, lines_of(range(7, 10)))
    backup2 = tmp_path / "access-2026-12-07T15-45-34.000.log"
    os.rename(path, backup2)
    compress(backup2)
    write_lines(path, lines_of(range(10, 12)))

    again = Tailer(path, resume=position, clock=clock, rotation_grace=1.0)
    assert read_all(again, clock) == lines_of(range(5, 12))
    assert again.resume_misses == 0
    # And once more: the compressed generations are known now, none is read twice.
    resaved = again.position
    again.close()
    third = Tailer(path, resume=resaved, clock=clock, rotation_grace=1.0)
    assert read_all(third, clock) == []
    third.close()


def test_generation_compressed_while_running_is_not_read_again_after_a_restart(
    tmp_path: Path,
) -> None:
    """A generation read while running and compressed by the rotator afterwards is known under
    its compressed form: a restart long after does not take it for a new generation."""
    path, clock = tmp_path / "app.log", ManualClock()
    write_lines(path, lines_of(range(3)))
    tailer = Tailer(path, clock=clock, rotation_grace=1.0)
    assert read_all(tailer, clock) == lines_of(range(3))
    os.rename(path, f"{path}.1")
    write_lines(path, lines_of(range(3, 5)))
    assert read_all(tailer, clock) == lines_of(range(3, 5))
    compress(f"{path}.1")
    os.rename(path, f"{path}.2")  # another rotation: the scan lists the compressed one
    write_lines(path, lines_of(range(5, 6)))
    assert read_all(tailer, clock) == lines_of(range(5, 6))
    clock.advance(3600.0)  # long enough for the uncompressed original to be forgotten
    os.rename(path, f"{path}.3")
    write_lines(path, lines_of(range(6, 7)))
    assert read_all(tailer, clock) == lines_of(range(6, 7))
    position = saved(tailer)
    tailer.close()

    again = Tailer(path, resume=position, clock=clock, rotation_grace=1.0)
    assert read_all(again, clock) == []
    again.close()


def test_unknown_compressed_file_appearing_while_running_is_left_alone(tmp_path: Path) -> None:
    """A compressed file of unknown content appearing while the exporter runs is taken for an
    archive put there, also after a restart: only the log's own lines are read."""
    path, clock = tmp_path / "app.log", ManualClock()
    write_lines(path, lines_of(range(3)))
    tailer = Tailer(path, clock=clock, rotation_grace=1.0)
    assert read_all(tailer, clock) == lines_of(range(3))
    (tmp_path / "app.log.9.gz").write_bytes(gzip.compress(b"".join(lines_of(range(3), "old"))))
    os.rename(path, f"{path}.1")
    write_lines(path, lines_of(range(3, 5)))
    assert read_all(tailer, clock) == lines_of(range(3, 5))
    position = saved(tailer)
    tailer.close()
    again = Tailer(path, resume=position, clock=clock, rotation_grace=1.0)
    assert read_all(again, clock) == []
    again.close()


def test_state_of_an_older_version_takes_compressed_siblings_for_history(tmp_path: Path) -> None:
    """A position saved by a version that never listed compressed files (no ``knows_gzip``)
    takes the compressed siblings present for history rather than reading old archives."""
    path, clock = tmp_path / "app.log", ManualClock()
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(b"".join(lines_of(range(3), "old"))))
    write_lines(path, lines_of(range(3)))
    tailer = Tailer(path, clock=clock, rotation_grace=1.0)
    assert read_all(tailer, clock) == lines_of(range(3))
    assert tailer.position is not None
    old = position_to_json(tailer.position)
    del old["knows_gzip"], old["size"]
    old["known"] = []  # as 0.1.0 wrote it: no compressed sibling listed
    tailer.close()
    write_lines(path, lines_of(range(3, 4)))
    again = Tailer(path, resume=position_from_json(old), clock=clock, rotation_grace=1.0)
    assert read_all(again, clock) == lines_of(range(3, 4))
    again.close()


def test_bytes_known_unread_in_a_deleted_generation_are_counted(tmp_path: Path) -> None:
    """A generation deleted while stopped before it was read to its end: the bytes it held past
    the saved offset when the position was taken are counted lost, with the miss."""
    path, clock = tmp_path / "app.log", ManualClock()
    lines = lines_of(range(100))
    write_lines(path, lines)
    tailer = Tailer(path, clock=clock, max_batch_bytes=1000, read_size=1000)
    read = tailer.poll().lines
    assert 0 < len(read) < 100
    position = saved(tailer)
    tailer.close()
    os.unlink(path)
    write_lines(path, lines_of(range(2), "new"))
    again = Tailer(path, resume=position, clock=clock)
    assert read_all(again, clock) == lines_of(range(2), "new")
    assert again.resume_misses == 1
    assert again.resume_lost_bytes == sum(len(x) + 1 for x in lines) - position.offset > 0
    again.close()


def test_state_file_matching_the_rotated_glob_is_refused_at_start(tmp_path: Path) -> None:
    """serve refuses a state file in the log's directory that ``--rotated-glob`` would take for
    a rotated generation, naming the setting."""
    log = tmp_path / "app.log"
    result = run_cli(
        ["serve", "--file", str(log), "--state", str(tmp_path / "app.state.log")],
        env={"LOG_EXPORTER_ROTATED_GLOB": "app.*.log"},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--rotated-glob" in result.stderr
