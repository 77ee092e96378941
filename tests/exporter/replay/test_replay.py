"""log-exporter replay on real files: rotated sets, gzip, damaged input, progress, final values."""

from __future__ import annotations

import gzip
import io
import os
import pty
import random
import re
import select
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from log_exporter.cli import main
from log_exporter.replay.command import ReplayOptions, run, run_shipping
from log_exporter.spec import Spec
from tests.support.replay_model import (
    expected,
    make_items,
    only_modelled,
    parse_exposition,
    write_rotated_set,
)
from tests.support.serve import exporter_argv
from tests.support.waits import wait_for

FIXTURES = Path(__file__).parents[1] / "fixtures"
DAY_AGO = time.time() - 86400


def replay(tmp_path: Path, *args: str | Path) -> tuple[int, str]:
    """Run the real command line in-process; returns the exit code and the output file's text."""
    out = tmp_path / "out.txt"
    code = main(["replay", "--quiet", "-o", str(out), *map(str, args)])
    return code, out.read_text("utf-8") if out.exists() else ""


def run_cli(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """The command as a user runs it: a separate process."""
    return subprocess.run(
        exporter_argv("replay", *map(str, args)),
        capture_output=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def without_build_info(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if "log_exporter_build_info" not in line)


def test_rotated_gzipped_shuffled_set_equals_the_golden_exposition(tmp_path: Path) -> None:
    """The contract fixture cut into a rotated set (.2.gz, .1, current) given in any order gives
    exactly the golden exposition that the fixture gives as one live file."""
    lines = (FIXTURES / "contract.jsonl").read_bytes().splitlines(True)
    third = len(lines) // 3
    parts = [lines[:third], lines[third : 2 * third], lines[2 * third :]]
    old = tmp_path / "sustainbot.jsonl.2.gz"
    old.write_bytes(gzip.compress(b"".join(parts[0])))
    (tmp_path / "sustainbot.jsonl.1").write_bytes(b"".join(parts[1]))
    (tmp_path / "sustainbot.jsonl").write_bytes(b"".join(parts[2]))
    golden = (FIXTURES / "contract.expected.prom").read_text("utf-8")
    for order in (["", ".1", ".2.gz"], [".1", ".2.gz", ""], [".2.gz", "", ".1"]):
        code, text = replay(tmp_path, *(tmp_path / f"sustainbot.jsonl{s}" for s in order))
        assert code == 0
        assert without_build_info(text) == golden, f"order {order}"


def test_run_writes_to_the_streams_it_is_given() -> None:
    """``replay.run``, the command without its argument parsing, writes the exposition to the
    stdout and the summary to the stderr it is given and returns the exit code."""
    out, err = io.BytesIO(), io.StringIO()
    code = run(ReplayOptions(files=[str(FIXTURES / "contract.jsonl")]), stdout=out, stderr=err)
    assert code == 0
    golden = (FIXTURES / "contract.expected.prom").read_text("utf-8")
    assert without_build_info(out.getvalue().decode()) == golden
    assert err.getvalue() == "log-exporter replay: replayed 49 lines from 1 files\n"


def test_cloudwatch_replay_ships_once_the_inputs_are_checked(tmp_path: Path) -> None:
    """With ``--cloudwatch`` the shipping hook gets the loaded spec after the inputs were
    checked, its exit code is the command's, and no output file is written."""
    out = tmp_path / "out.prom"
    shipped: list[Spec] = []

    def ship(spec: Spec) -> int:
        shipped.append(spec)
        return 1

    log = str(FIXTURES / "contract.jsonl")
    options = ReplayOptions(files=[log], output=str(out))
    assert run_shipping(options, ship, stderr=io.StringIO()) == 1
    assert len(shipped) == 1 and shipped[0].metrics
    assert not out.exists()
    err = io.StringIO()
    missing = ReplayOptions(files=[log, str(tmp_path / "gone")])
    assert run_shipping(missing, ship, stderr=err) == 2
    assert len(shipped) == 1, "a missing file stops the replay before the hook"
    assert "gone" in err.getvalue()


def test_generated_rotated_set_equals_the_model(tmp_path: Path) -> None:
    """Thousands of generated events over a gzipped rotated set give the values the contract
    implies, whatever order the files are named in."""
    rng = random.Random(5)
    items = make_items(rng, 3000, DAY_AGO, junk=0.03)
    paths = write_rotated_set(tmp_path, items, parts=4)
    rng.shuffle(paths)
    code, text = replay(tmp_path, *paths)
    assert code == 0
    assert parse_exposition(text) == only_modelled(expected(items))


def test_final_line_without_newline_counts(tmp_path: Path) -> None:
    """A file whose last line has no newline is complete: that line is counted and applied."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(
        b'{"timestamp":"2026-02-01T14:30:00.000Z","event":"auth.failed","failure_type":"expired"}\n'
        b'{"timestamp":"2026-02-01T14:30:01.000Z","event":"auth.failed","failure_type":"expired"}'
    )
    code, text = replay(tmp_path, log)
    assert code == 0
    assert 'sustainbot_authentication_failures_total{failure_type="expired"} 2.0' in text
    assert 'log_exporter_lines_total{result="parsed"} 2.0' in text
    assert f"log_exporter_bytes_read_total {float(log.stat().st_size)}" in text


def test_missing_file_is_an_error_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    """A missing file among good ones stops the replay before any output, exit code 2, and the
    message names the file."""
    good = tmp_path / "sustainbot.jsonl"
    good.write_bytes(b'{"event":"auth.failed"}\n')
    missing = tmp_path / "sustainbot.jsonl.1"
    out = tmp_path / "out.prom"
    proc = run_cli("-o", out, good, missing)
    assert proc.returncode == 2
    assert str(missing).encode() in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [good]


def test_unreadable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    """A file that cannot be read (a directory here, which needs no special privileges) is a
    clear error naming it, exit code 2."""
    proc = run_cli(tmp_path)
    assert proc.returncode == 2
    assert str(tmp_path).encode() in proc.stderr
    assert b"Traceback" not in proc.stderr


def _auth_lines(n: int, tag: str) -> bytes:
    return b"".join(
        b'{"timestamp":"2026-02-01T14:%02d:%02d.000Z","event":"auth.failed","failure_type":"%s"}\n'
        % (i // 60 % 60, i % 60, tag.encode())
        for i in range(n)
    )


def _values(text: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(\S+\}?) (\S+)$", text, re.MULTILINE)
        if not m.group(1).startswith("#")
    }


def test_truncated_gzip_reports_how_far_it_got_and_the_rest_counts(tmp_path: Path) -> None:
    """A gzip file cut short (a copy interrupted mid-way) is reported on stderr with the bytes and
    lines read before the cut; those lines and the other files still count; exit code 1."""
    data = _auth_lines(3000, "old")
    whole = gzip.compress(data, compresslevel=1)
    cut = whole[: len(whole) // 2]
    damaged = tmp_path / "sustainbot.jsonl.2.gz"
    damaged.write_bytes(cut)
    current = tmp_path / "sustainbot.jsonl"
    current.write_bytes(_auth_lines(10, "new").replace(b"14:", b"15:"))
    out = tmp_path / "out.prom"
    proc = run_cli("--quiet", "-o", out, current, damaged)
    assert proc.returncode == 1
    message = proc.stderr.decode()
    assert str(damaged) in message and "truncated" in message
    # What zlib itself recovers from the cut file: the lines before the cut must all count.
    prefix = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    whole_lines = prefix.count(b"\n")
    assert f"({whole_lines} whole lines)" in message
    values = _values(out.read_text())
    assert values['sustainbot_authentication_failures_total{failure_type="old"}'] >= whole_lines
    assert values['sustainbot_authentication_failures_total{failure_type="new"}'] == 10.0
    # The partial line at the cut is counted too (as malformed unless it happens to be whole).
    counted = values['log_exporter_lines_total{result="parsed"}']
    counted += values['log_exporter_lines_total{result="malformed"}']
    assert counted == whole_lines + 10 + (1 if not prefix.endswith(b"\n") else 0)


def test_garbage_after_a_gzip_member_reports_the_offset_and_keeps_the_member(
    tmp_path: Path,
) -> None:
    """A gzip file with garbage after its first member keeps every line of that member and names
    the compressed byte where the garbage starts; exit code 1, output still written."""
    member = gzip.compress(_auth_lines(500, "old"))
    damaged = tmp_path / "sustainbot.jsonl.1.gz"
    damaged.write_bytes(member + b"\x1f\x8bthis is not deflate data at all")
    out = tmp_path / "out.prom"
    proc = run_cli("--quiet", "-o", out, damaged)
    assert proc.returncode == 1
    message = proc.stderr.decode()
    assert f"corrupt gzip stream at compressed byte {len(member)}" in message
    assert "(500 whole lines)" in message
    values = _values(out.read_text())
    assert values['sustainbot_authentication_failures_total{failure_type="old"}'] == 500.0
    assert values['log_exporter_lines_total{result="malformed"}'] == 0.0


def test_multi_member_gzip_and_zero_padding_read_whole(tmp_path: Path) -> None:
    """A gzip file of several members (``cat a.gz b.gz``) with zero padding at the end is read
    whole, like gzip -d does, and is not reported as damaged."""
    path = tmp_path / "sustainbot.jsonl.1.gz"
    path.write_bytes(
        gzip.compress(_auth_lines(100, "a")) + gzip.compress(_auth_lines(50, "b")) + b"\0" * 64
    )
    code, text = replay(tmp_path, path)
    assert code == 0
    values = _values(text)
    assert values['sustainbot_authentication_failures_total{failure_type="a"}'] == 100.0
    assert values['sustainbot_authentication_failures_total{failure_type="b"}'] == 50.0


def test_oversized_line_is_counted_and_skipped(tmp_path: Path) -> None:
    """A 3 MiB line (over the 1 MiB limit) in a gzip file is counted as oversized and skipped;
    the lines around it still count."""
    big = b'{"event":"auth.failed","pad":"' + b"x" * (3 << 20) + b'"}\n'
    data = _auth_lines(5, "before") + big + _auth_lines(7, "after")
    path = tmp_path / "sustainbot.jsonl.1.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    code, text = replay(tmp_path, path)
    assert code == 0
    values = _values(text)
    assert values['log_exporter_lines_total{result="oversized"}'] == 1.0
    assert values['log_exporter_lines_total{result="parsed"}'] == 12.0
    assert values["log_exporter_bytes_read_total"] == float(len(data))


def test_files_without_events_and_ties_follow_rotation_order(tmp_path: Path) -> None:
    """With no timestamps to order by, a higher .N is older: the latest app.started (in the
    current file) is the info series that remains."""
    for name, version in (("sustainbot.jsonl.2", "1"), ("sustainbot.jsonl.1", "2")):
        (tmp_path / name).write_bytes(
            b'{"event":"app.started","version":"%s"}\n' % version.encode()
        )
    (tmp_path / "sustainbot.jsonl").write_bytes(b'{"event":"app.started","version":"3"}\n')
    code, text = replay(
        tmp_path,
        tmp_path / "sustainbot.jsonl",
        tmp_path / "sustainbot.jsonl.2",
        tmp_path / "sustainbot.jsonl.1",
    )
    assert code == 0
    assert 'version="3"' in text
    assert 'version="1"' not in text and 'version="2"' not in text


def test_prometheus_output_passes_promtool_check_metrics(tmp_path: Path) -> None:
    """The final exposition is clean under ``promtool check metrics``, self-metrics included."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    paths = write_rotated_set(tmp_path, make_items(random.Random(2), 500, DAY_AGO))
    code, text = replay(tmp_path, *paths)
    assert code == 0
    assert "log_exporter_lines_total" in text and "log_exporter_build_info" in text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_bad_spec_fails_naming_the_file(tmp_path: Path) -> None:
    """A broken --spec stops the replay at once with the spec file named, exit code 2."""
    spec = tmp_path / "broken.toml"
    spec.write_text("version = 1\n[metrics.x]\ntype = 'nonsense'\n")
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(b"{}\n")
    proc = run_cli("--spec", spec, log)
    assert proc.returncode == 2
    assert str(spec).encode() in proc.stderr
    assert b"Traceback" not in proc.stderr


# -- progress ---------------------------------------------------------------------------------


def _progress_input(tmp_path: Path) -> Path:
    path = tmp_path / "sustainbot.jsonl"
    path.write_bytes(_auth_lines(200, "p"))
    return path


def test_progress_bar_stays_off_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    """Piped or logged stderr gets no progress bar, only the closing summary."""
    proc = run_cli("-o", tmp_path / "out.prom", _progress_input(tmp_path))
    assert proc.returncode == 0
    assert b"\r" not in proc.stderr and b"ETA" not in proc.stderr
    assert b"replayed 200 lines from 1 files" in proc.stderr


def _run_on_pty(*args: str | Path) -> tuple[int, bytes]:
    """Run the command with its stderr on a pseudo-terminal; returns exit code and what it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "log_exporter", "replay", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    drawn = b""

    def finished() -> bool:
        nonlocal drawn
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return True
            if not chunk:
                return True
            drawn += chunk
            return False
        return proc.poll() is not None

    try:
        wait_for(finished, "replay to close its terminal", timeout=120, interval=0)
    finally:
        os.close(master)
    return proc.wait(timeout=60), drawn


def test_progress_bar_draws_bytes_rate_and_eta_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal the bar shows bytes done of the total, events per second and an ETA."""
    path = _progress_input(tmp_path)
    code, drawn = _run_on_pty("-o", tmp_path / "out.prom", path)
    assert code == 0
    text = drawn.decode()
    assert "events/s" in text and "ETA" in text
    size = path.stat().st_size
    assert f"{size / 1024:.1f} KiB / {size / 1024:.1f} KiB" in text


def test_quiet_silences_the_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """--quiet draws nothing, even on a terminal."""
    code, drawn = _run_on_pty("--quiet", "-o", tmp_path / "out.prom", _progress_input(tmp_path))
    assert code == 0
    assert b"ETA" not in drawn and b"replayed" not in drawn


def test_same_file_named_twice_is_replayed_once(tmp_path: Path) -> None:
    """A file named twice (say by a glob and by hand, or through a symlink) counts once."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(_auth_lines(3, "x"))
    link = tmp_path / "link.jsonl"
    link.symlink_to(log)
    code, text = replay(tmp_path, log, link, log)
    assert code == 0
    assert _values(text)['sustainbot_authentication_failures_total{failure_type="x"}'] == 3.0


def test_bad_step_and_unwritable_output_fail_before_reading(tmp_path: Path) -> None:
    """A step that is not a positive number of seconds, or an output in a missing directory, is
    refused at once with exit code 2 and the problem named."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(_auth_lines(3, "x"))
    proc = run_cli("--format", "openmetrics", "--step", "0", log)
    assert proc.returncode == 2 and b"--step" in proc.stderr
    missing_dir = tmp_path / "nope" / "out.prom"
    proc = run_cli("-o", missing_dir, log)
    assert proc.returncode == 2 and str(missing_dir).encode() in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_one_progress_bar_counts_the_stretches_of_every_worker(tmp_path: Path) -> None:
    """With --jobs 2 on a file cut into several stretches, the workers share one bar on one
    line, which never goes backwards and ends at the whole file."""
    path = tmp_path / "sustainbot.jsonl"
    path.write_bytes(_auth_lines(16000, "p"))  # about 1.4 MB: 5 stretches of 256 KiB or more
    code, drawn = _run_on_pty("--jobs", "2", "-o", tmp_path / "out.prom", path)
    assert code == 0
    bar, _, rest = drawn.decode().partition("\n")
    done = [float(m.group(1)) for m in re.finditer(r"\] ([\d.]+) MiB / ", bar)]
    assert done == sorted(done)
    size = path.stat().st_size
    assert done[-1] == round(size / 1024 / 1024, 1)
    # The terminal turns "\n" into "\r\n": no redraw (clear-to-end) after the bar ended.
    assert "\x1b[K" not in rest and "replayed 16000 lines from 1 files" in rest
