"""The state file read as damage when it could not be saved back (numbers beyond 64 bits, deep
nesting) or is no file at all (a FIFO), and a --state path through a symlinked alias of the log's
directory refused as inside it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest

from log_exporter import statefile
from log_exporter.serve import StartupError, _check_state_is_no_sibling
from log_exporter.statefile import FORMAT, VERSION, StateFile, StateKeeper


def _write(path: Path, sections: bytes) -> None:
    head = orjson.dumps({"format": FORMAT, "version": VERSION, "target": None})
    path.write_bytes(head[:-1] + b', "sections": ' + sections + b"}")


@pytest.mark.parametrize(
    "number", [b"18446744073709551616", b"-9223372036854775809", b"123456789012345678901234567890"]
)
def test_a_number_beyond_64_bits_is_refused_at_load_and_saves_keep_working(
    tmp_path: Path, number: bytes
) -> None:
    """A state file holding an integer beyond 64 bits is refused at load (counted, start fresh),
    so the saves after it succeed instead of failing every time."""
    path = tmp_path / "state.json"
    _write(path, b'{"metrics": {"x": ' + number + b"}}")
    keeper = StateKeeper(StateFile(path))
    assert keeper.load() == {}
    assert keeper.state_file.load_failures == 1
    assert "beyond 64 bits" in str(keeper.state_file.load_error)
    assert keeper.save()


def test_large_floats_and_64_bit_integers_still_load(tmp_path: Path) -> None:
    """Values a saved store holds (floats of any size, integers at the 64-bit ends, digits in
    strings) are not mistaken for damage."""
    path = tmp_path / "state.json"
    sections = {
        "metrics": {
            "big": 1e300,
            "small": -1.5e19,
            "max": (1 << 64) - 1,
            "min": -(1 << 63),
            "label": "123456789012345678901234567890",
        }
    }
    _write(path, orjson.dumps(sections))
    state = StateFile(path)
    assert state.load() == sections
    assert state.load_failures == 0


def test_nesting_beyond_the_bound_is_refused(tmp_path: Path) -> None:
    """A state file nested deeper than any saved store is damage, refused and counted."""
    path = tmp_path / "state.json"
    depth = getattr(statefile, "MAX_STATE_NESTING", 16) + 1
    _write(path, b'{"metrics": ' + b"[" * depth + b"]" * depth + b"}")
    state = StateFile(path)
    assert state.load() is None
    assert "nested deeper" in str(state.load_error)


def test_a_fifo_as_state_file_is_refused_without_hanging(tmp_path: Path) -> None:
    """A FIFO at the --state path is refused as unreadable at once, naming why."""
    path = tmp_path / "state.json"
    os.mkfifo(path)
    state = StateFile(path)
    loaded: list[object] = []
    reader = threading.Thread(target=lambda: loaded.append(state.load()), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))  # lets a blocked open go
        reader.join(timeout=10)
        pytest.fail("loading a FIFO as the state file hung")
    assert loaded == [None]
    assert "not a regular file" in str(state.load_error)


def test_a_state_path_through_a_symlinked_alias_of_the_log_directory_is_refused(
    tmp_path: Path,
) -> None:
    """`--state alias/app.jsonl.state` with alias a link to the log's directory is refused as
    the tailer would read it as a rotated generation, as the same path without the alias is."""
    logs = tmp_path / "logs"
    logs.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(logs)
    with pytest.raises(StartupError, match="taken for a rotated log"):
        _check_state_is_no_sibling(str(alias / "app.jsonl.state"), str(logs / "app.jsonl"))
