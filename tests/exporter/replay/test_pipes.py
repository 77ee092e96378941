"""Replay and trace in a pipeline: standard input as ``-`` (`kubectl logs POD | log-exporter
replay -`), a trace that finds nothing says so, trace follows the spec's exemplar field, and an
output file gets the mode the umask gives (docs/replay.md)."""

from __future__ import annotations

import gzip
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import clean_env
from tests.support.serve import run_cli
from tests.support.waits import DEADLINE

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "contract.jsonl"

REQUESTS = """version = 1

[metrics.demo_requests_total]
type = "counter"
help = "Requests."
events = ["request"]
exemplar = { name = "request_id", field = "req" }
"""


def _cli(
    args: list[str], stdin: bytes = b"", umask: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``log-exporter ARGS`` with ``stdin`` on its standard input, under ``umask`` when given
    (set by a shell, as an operator's login would)."""
    argv = [sys.executable, "-m", "log_exporter", *args]
    if umask is not None:
        argv = ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *argv]
    return subprocess.run(
        argv, input=stdin, capture_output=True, env=clean_env(), timeout=DEADLINE, check=False
    )


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_replay_of_stdin_equals_replay_of_the_file(jobs: str, compress: bool) -> None:
    """`replay -` with the log (plain or gzip) on standard input writes what `replay FILE` does."""
    data = SAMPLE.read_bytes()
    piped = _cli(["replay", "--jobs", jobs, "-"], gzip.compress(data) if compress else data)
    named = _cli(["replay", "--jobs", jobs, str(SAMPLE)])
    assert piped.returncode == named.returncode == 0, piped.stderr
    assert piped.stdout == named.stdout
    assert b"sustainbot_" in piped.stdout


def test_stdin_named_twice_is_refused() -> None:
    """`-` twice is a usage error (exit 2): a pipe can be read once."""
    result = _cli(["replay", "-", "-"])
    assert (result.returncode, result.stdout) == (2, b"")
    assert b"standard input can be read only once" in result.stderr


def test_trace_reads_stdin() -> None:
    """`trace ID -` prints the lines of that request from standard input, exit 0."""
    trace_id = "00000000-0000-4000-8000-000000000003"
    result = _cli(["trace", trace_id, "-"], SAMPLE.read_bytes())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(trace_id.encode() in line for line in lines)


def test_trace_that_finds_nothing_says_how_much_it_read() -> None:
    """No match is exit 1 with one line on stderr naming the lines and files read and the id."""
    result = run_cli(["trace", "no-such-id", str(SAMPLE)])
    assert (result.returncode, result.stdout) == (1, "")
    n = len(SAMPLE.read_bytes().splitlines())
    assert (
        result.stderr
        == f"log-exporter trace: 0 of {n} lines in 1 file have trace_id = 'no-such-id'\n"
    )


def test_trace_follows_the_specs_exemplar_field(tmp_path: Path) -> None:
    """With a spec whose exemplars carry `req`, `trace ID` looks the id up in `req`, not in
    `trace_id`; `--field` still overrides."""
    spec, log = tmp_path / "spec.toml", tmp_path / "app.jsonl"
    spec.write_text(REQUESTS, encoding="utf-8")
    log.write_text(
        '{"event":"request","req":"r-1","trace_id":"t-9"}\n'
        '{"event":"request","req":"r-2","trace_id":"r-1"}\n',
        encoding="utf-8",
    )
    by_spec = run_cli(["trace", "--spec", str(spec), "r-1", str(log)])
    assert by_spec.returncode == 0, by_spec.stderr
    assert by_spec.stdout == '{"event":"request","req":"r-1","trace_id":"t-9"}\n'
    by_flag = run_cli(["trace", "--spec", str(spec), "--field", "trace_id", "r-1", str(log)])
    assert by_flag.stdout == '{"event":"request","req":"r-2","trace_id":"r-1"}\n'


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_output_file_gets_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    """`replay -o FILE` creates FILE as any program would under the umask (0644 under 022), so
    promtool run as another user can read a backfill."""
    out = tmp_path / "backfill.prom"
    result = _cli(["replay", "--quiet", "-o", str(out), str(SAMPLE)], umask=umask)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
