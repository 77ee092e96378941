"""Replay's and trace's inputs as they are, not as their paths say later: a FIFO refused by name,
a file replaced under ``--jobs`` never mixed with the original, a file truncated while read
reported as damaged."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.replay.parallel import replay_parallel
from log_exporter.sources.files import FileReader, ReplayError, open_sources
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.store import Store
from tests.support.serve import run_cli

READ = 1024
STRETCH = 4096


def _log(lines: int, who: str) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "ts": f"2026-01-01T00:00:{i % 60:02d}Z",
                "event": "request",
                "route": f"/{who}",
                "method": "GET",
                "status": 200,
                "duration_ms": i % 97,
            }
        )
        + b"\n"
        for i in range(lines)
    )


def _page(store: Store) -> bytes:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    return generate_latest(registry)


class _Quiet:
    def update(self, done_bytes: int, events: int) -> None:
        pass


class _ReplaceOnFirstProgress:
    """After the first stretch is merged, puts another file at the path (rename over it), as a
    log rotation or a careless copy would: later stretches open the path anew."""

    def __init__(self, path: Path, other: bytes) -> None:
        self.path, self.other, self.done = path, other, False

    def update(self, done_bytes: int, events: int) -> None:
        if not self.done:
            self.done = True
            tmp = self.path.with_name(self.path.name + ".new")
            tmp.write_bytes(self.other)
            os.replace(tmp, self.path)


def test_a_file_replaced_during_a_jobs_2_replay_is_never_mixed_in(tmp_path: Path) -> None:
    """A file renamed over the input after the first stretch of a --jobs 2 replay either leaves
    the output that of the original file or fails naming the file; never a mix of both."""
    spec = load_default_spec()
    original = _log(600, "old")
    log = tmp_path / "app.jsonl"
    log.write_bytes(original)
    expected = Store(spec.definitions)
    replay_parallel(
        open_sources([str(log)]), Pipeline(compile_spec(spec), expected), 1, _Quiet(),
        read_size=READ, stretch_bytes=STRETCH,
    )  # fmt: skip
    assert len(original) > 4 * STRETCH  # enough stretches that some open after the swap

    store = Store(spec.definitions)
    progress = _ReplaceOnFirstProgress(log, _log(1200, "new"))
    try:
        replay_parallel(
            open_sources([str(log)]), Pipeline(compile_spec(spec), store), 2, progress,
            read_size=READ, stretch_bytes=STRETCH,
        )  # fmt: skip
    except ReplayError as exc:
        # Refusing or replaying the original are both right (pytest.raises cannot say "or").
        assert str(log) in str(exc)  # noqa: PT017
        assert "replaced" in str(exc)  # noqa: PT017
    else:
        assert _page(store) == _page(expected)
    assert progress.done


def test_a_file_replaced_after_its_check_fails_a_replay_naming_it(tmp_path: Path) -> None:
    """`replay --jobs 2` reading a file other than the one it checked exits 2 naming it."""
    log = tmp_path / "app.jsonl"
    log.write_bytes(_log(50, "old"))
    sources = open_sources([str(log)])
    log.unlink()
    log.write_bytes(_log(50, "new"))
    reader = FileReader(sources[0])
    with pytest.raises(ReplayError, match="replaced or rewritten while replayed"):
        list(reader.batches())


def test_a_file_truncated_while_read_is_reported_as_damaged(tmp_path: Path) -> None:
    """A file cut shorter after it was checked is damage (replay exits 1 on damage), told with
    how much was there, not a clean end with partial counts."""
    log = tmp_path / "app.jsonl"
    log.write_bytes(_log(400, "x"))
    sources = open_sources([str(log)])
    os.truncate(log, sources[0].size // 2)
    reader = FileReader(sources[0], read_size=READ)
    lines = sum(len(b.lines) for b in reader.batches())
    assert lines < 400
    assert reader.damage is not None
    assert "truncated while read" in reader.damage and str(log) in reader.damage


def test_a_file_truncated_under_jobs_2_is_reported_as_damaged(tmp_path: Path) -> None:
    """The same truncation under --jobs 2: the stretches past the new end report the damage."""
    spec = load_default_spec()
    log = tmp_path / "app.jsonl"
    log.write_bytes(_log(600, "x"))
    sources = open_sources([str(log)])
    os.truncate(log, sources[0].size // 2)
    outcome = replay_parallel(
        sources, Pipeline(compile_spec(spec), Store(spec.definitions)), 2, _Quiet(),
        read_size=READ, stretch_bytes=STRETCH,
    )  # fmt: skip
    assert outcome.damage and "truncated while read" in outcome.damage[0]


@pytest.mark.parametrize("command", ["replay", "trace"])
def test_a_fifo_as_input_is_refused_naming_it(tmp_path: Path, command: str) -> None:
    """A FIFO named as an input stops replay and trace at once with exit 2 naming it, instead
    of hanging on a writer that never comes."""
    fifo = tmp_path / "app.jsonl"
    os.mkfifo(fifo)
    args = [command, str(fifo)] if command == "replay" else [command, "abc", str(fifo)]
    try:
        result = run_cli(args, cwd=tmp_path)
    finally:
        # Should the command be blocked opening it, a writer lets it go.
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
    assert result.returncode == 2, result.stderr
    assert str(fifo) in result.stderr and "not a regular file" in result.stderr
