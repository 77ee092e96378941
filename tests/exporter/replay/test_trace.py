"""``log-exporter trace TRACE_ID FILE...``: every event of one request, in the order replay reads
a rotated set (plain and gzip, named in any order), with grep's exit status."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from log_exporter.cli import main
from log_exporter.replay.trace import run

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _line(n: int, trace: str, event: str = "http.request", **fields: object) -> bytes:
    """A contract line stamped ``n`` seconds into the day, for request ``trace``."""
    body: dict[str, object] = {
        "timestamp": f"2026-02-01T10:{n // 60:02d}:{n % 60:02d}.000Z",
        "event": event,
    }
    body.update({"trace_id": trace, **fields})
    return orjson.dumps(body) + b"\n"


def _rotated_set(tmp_path: Path) -> tuple[list[Path], list[bytes]]:
    """Four generations (two gzipped) with request TRACE's events in three of them, among others'.

    Returns the files and, oldest first, the lines that belong to TRACE.
    """
    rng = random.Random(14)
    ours: list[bytes] = []
    generations: list[list[bytes]] = [[] for _ in range(4)]
    for n in range(400):
        gen = n // 100
        if n in (5, 150, 151, 152, 390):
            line = _line(n, TRACE, rng.choice(["aim.request", "workflow.completed", "audit.entry"]))
            ours.append(line)
        else:
            line = _line(n, f"{rng.getrandbits(128):032x}", note=f"mentions {TRACE} in text")
        generations[gen].append(line)
    name = "sustainbot.jsonl"
    paths = [
        tmp_path / f"{name}.3.gz",
        tmp_path / f"{name}.2.gz",
        tmp_path / f"{name}.1",
        tmp_path / name,
    ]
    for path, lines in zip(paths, generations, strict=True):
        data = b"".join(lines)
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return paths, ours


def test_rotated_gzipped_shuffled_set_prints_the_requests_events_oldest_first(
    tmp_path: Path,
) -> None:
    """Whatever order the files are named in, the request's events come out in time order, as
    the files hold them, and no other request's line (not even one quoting the id) is printed."""
    paths, ours = _rotated_set(tmp_path)
    for seed in range(3):
        shuffled = paths[:]
        random.Random(seed).shuffle(shuffled)
        out, err = io.BytesIO(), io.StringIO()
        assert run(TRACE, [str(p) for p in shuffled], stdout=out, stderr=err) == 0
        assert out.getvalue() == b"".join(ours), f"order {shuffled}"
        assert err.getvalue() == ""


def test_an_id_found_nowhere_exits_1_like_grep(tmp_path: Path) -> None:
    """No event of that request: nothing printed, exit status 1."""
    paths, _ = _rotated_set(tmp_path)
    out = io.BytesIO()
    assert run("0" * 32, [str(p) for p in paths], stdout=out, stderr=io.StringIO()) == 1
    assert out.getvalue() == b""


def test_a_missing_file_exits_2_naming_it_before_printing_anything(tmp_path: Path) -> None:
    """A file that cannot be read is an error (exit 2) named on stderr; nothing is printed."""
    paths, _ = _rotated_set(tmp_path)
    out, err = io.BytesIO(), io.StringIO()
    missing = tmp_path / "sustainbot.jsonl.9.gz"
    assert run(TRACE, [*map(str, paths), str(missing)], stdout=out, stderr=err) == 2
    assert str(missing) in err.getvalue()
    assert out.getvalue() == b""


def test_a_truncated_gzip_prints_what_it_held_and_exits_2(tmp_path: Path) -> None:
    """A gzip cut short still gives the request's events before the cut and those of the other
    files, and the damage is reported with exit status 2."""
    paths, ours = _rotated_set(tmp_path)
    whole = paths[1].read_bytes()
    paths[1].write_bytes(whole[: len(whole) - 40])
    out, err = io.BytesIO(), io.StringIO()
    assert run(TRACE, [str(p) for p in paths], stdout=out, stderr=err) == 2
    assert "gzip stream truncated" in err.getvalue()
    printed = out.getvalue()
    assert ours[0] in printed and ours[-1] in printed


def test_escaped_and_imperfect_lines_are_judged_by_the_parsed_field(tmp_path: Path) -> None:
    """A line spelling the id with JSON escapes is found; malformed lines, a BOM, CRLF and the id
    in another field or as a number are not mistaken for the request's events."""
    escaped = TRACE.replace("4", "\\u0034").encode()
    lines = [
        b'{"event":"a","trace_id":"' + escaped + b'"}\n',
        b'{"event":"b","trace_id":"' + TRACE.encode() + b'"\n',  # not JSON
        b'\xef\xbb\xbf{"event":"c","trace_id":"' + TRACE.encode() + b'"}\r\n',
        b'{"event":"d","request_id":"' + TRACE.encode() + b'"}\n',
        b'{"event":"e","trace_id":42}\n',
    ]
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"".join(lines))
    out = io.BytesIO()
    assert run(TRACE, [str(log)], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue() == lines[0] + lines[2].removesuffix(b"\n") + b"\n"
    out = io.BytesIO()
    assert run(TRACE, [str(log)], field="request_id", stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue() == lines[3]


def test_the_command_line_runs_it_and_a_closed_pipe_ends_it_quietly(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """``log-exporter trace`` as a user runs it: the events on stdout; piped into a reader that
    stops after the first line, it ends quietly."""
    paths, ours = _rotated_set(tmp_path)
    assert main(["trace", "--field", "trace_id", TRACE, str(paths[1])]) == 0
    assert capfdbinary.readouterr().out == b"".join(ours[1:4])
    big = tmp_path / "big.jsonl"
    big.write_bytes(_line(1, TRACE) * 200_000)
    proc = subprocess.run(
        f"{sys.executable} -m log_exporter trace {TRACE} {big} | head -n 1",
        shell=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout == _line(1, TRACE)
    assert proc.stderr == b""
