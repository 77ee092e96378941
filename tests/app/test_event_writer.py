"""The JSONL writer: whole lines, shared safely by threads, following rotation like logrotate's."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sustainbot.events import EventWriter, utc_timestamp
from tests.support.serve import exporter_argv


def _emit(writer: EventWriter, n: int = 0) -> bool:
    return writer.emit(
        "http.request_started",
        trace_id=f"t{n}",
        logger="sustainbot.test",
        message="m",
        method="GET",
        endpoint="/healthz",
        n=n,
    )


def _numbers(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_bytes().splitlines()]


def test_timestamp_is_rfc3339_utc_milliseconds() -> None:
    """Timestamps have millisecond precision and a Z suffix, as the contract requires."""
    from datetime import UTC, datetime

    assert utc_timestamp(datetime(2026, 2, 1, 14, 30, 0, 123999, tzinfo=UTC)) == (
        "2026-02-01T14:30:00.123Z"
    )


def test_creates_missing_log_directory(tmp_path: Path) -> None:
    """The log's directory is created on first write, so a fresh checkout just works."""
    writer = EventWriter(tmp_path / "a" / "b" / "events.jsonl")
    assert _emit(writer)
    assert (tmp_path / "a" / "b" / "events.jsonl").read_bytes().endswith(b"\n")


def test_rotation_by_rename_continues_in_new_file(tmp_path: Path) -> None:
    """After the file is renamed away, the next event goes to a new file at the same path."""
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    assert _emit(writer, 1)
    path.rename(tmp_path / "events.jsonl.1")
    assert _emit(writer, 2)
    assert _numbers(tmp_path / "events.jsonl.1") == [1]
    assert _numbers(path) == [2]


def test_rotation_by_delete_recreates_file(tmp_path: Path) -> None:
    """After the file is deleted, the next event recreates it instead of writing into the void."""
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    assert _emit(writer, 1)
    path.unlink()
    assert _emit(writer, 2)
    assert _numbers(path) == [2]


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_real_logrotate_rotation_loses_no_event(tmp_path: Path) -> None:
    """Rotated by real logrotate (create mode) mid-stream, every event is in exactly one file."""
    path = tmp_path / "events.jsonl"
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{path} {{\n  rotate 5\n  missingok\n  create 0644\n}}\n")
    writer = EventWriter(path)
    for n in range(10):
        assert _emit(writer, n)
    subprocess.run(
        ["logrotate", "--force", "--state", str(tmp_path / "state"), str(config)],
        check=True,
        timeout=60,
    )
    for n in range(10, 20):
        assert _emit(writer, n)
    assert _numbers(tmp_path / "events.jsonl.1") == list(range(10))
    assert _numbers(path) == list(range(10, 20))


def test_threads_never_tear_lines(tmp_path: Path) -> None:
    """Many threads writing large events at once produce only whole, parseable lines."""
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    threads, per_thread = 8, 200
    padding = "p" * 6000  # larger than PIPE_BUF, so atomicity cannot come from pipe semantics

    def work(t: int) -> None:
        for i in range(per_thread):
            writer.emit(
                "x", trace_id="t", logger="sustainbot.test", message=padding, n=t * 1000 + i
            )

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    numbers = _numbers(path)
    assert sorted(numbers) == sorted(
        t * 1000 + i for t in range(threads) for i in range(per_thread)
    )


def test_full_disk_reported_not_raised(tmp_path: Path) -> None:
    """When the device is full the writer says so (ENOSPC) instead of raising into a request."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    writer = EventWriter("/dev/full")
    assert _emit(writer) is False
    assert (writer.status.writable, writer.status.error) == (False, "ENOSPC")


def test_recovers_once_path_becomes_writable(tmp_path: Path) -> None:
    """A log path blocked by a directory fails, then works once the blocker is removed."""
    path = tmp_path / "events.jsonl"
    path.mkdir()
    writer = EventWriter(path)
    assert _emit(writer, 1) is False
    assert writer.status.error == "EISDIR"
    path.rmdir()
    assert _emit(writer, 2) is True and writer.status.writable
    assert _numbers(path) == [2]


# A child process whose file size limit stands in for a full device: the kernel cuts the write
# that crosses it short and fails the next with EFBIG, as a full disk does with ENOSPC. Raising
# the limit again is the space freeing.
_FILL_AND_FREE = """
import json, resource, signal, sys
from sustainbot.events import EventWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path, limit, free_after = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "free"
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
writer = EventWriter(path)
def emit(n):
    return writer.emit("http.request_started", trace_id="t", logger="sustainbot.test",
                       message="m", method="GET", endpoint="/healthz", n=n)
results = [emit(n) for n in range(10)]
errors = [writer.status.error]
if free_after:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    results += [emit(n) for n in range(10, 20)]
print(json.dumps({"results": results, "errors": errors}))
"""


def _fill(path: Path, free: bool) -> dict[str, list[object]]:
    proc = subprocess.run(
        [sys.executable, "-c", _FILL_AND_FREE, str(path), "1000", "free" if free else "keep"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(proc.stdout))


def _replay_lines(path: Path) -> dict[str, float]:
    """``log_exporter_lines_total`` by result, as the exporter counts the file."""
    out = subprocess.run(
        exporter_argv("replay", str(path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    counts = {}
    for line in out.splitlines():
        if line.startswith("log_exporter_lines_total{"):
            name, _, value = line.rpartition(" ")
            counts[name.split('"')[1]] = float(value)
    return counts


@pytest.mark.parametrize("writer", ["same process", "another process"])
def test_event_after_a_torn_line_is_not_glued_to_it(tmp_path: Path, writer: str) -> None:
    """After the device filled mid-line and the repair newline failed too, the next event written
    once space frees (by the same process or another worker) is a whole line: the fragment costs
    one malformed line, not two events."""
    path = tmp_path / "events.jsonl"
    report = _fill(path, free=writer == "same process")
    results = report["results"]
    assert report["errors"] == ["EFBIG"]
    whole_before = results[:10].count(True)
    if writer == "another process":
        assert not path.read_bytes().endswith(b"\n"), "the line that hit the limit was not torn"
        later = EventWriter(path)
        results += [_emit(later, n) for n in range(10, 20)]
        later.close()
    assert results[10:] == [True] * 10
    lines = path.read_bytes().splitlines()
    parsed = []
    for line in lines:
        with contextlib.suppress(ValueError):
            parsed.append(json.loads(line)["n"])
    assert parsed == list(range(whole_before)) + list(range(10, 20))
    assert _replay_lines(path) == {"parsed": whole_before + 10, "malformed": 1, "oversized": 0}
