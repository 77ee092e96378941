"""replay --format openmetrics: a sample of every series at every step, exact at-or-before-T."""

from __future__ import annotations

import io
import math
import random
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, InfoMetricFamily

from log_exporter.cli import main
from log_exporter.prometheus.backfill import SpillingWriter
from tests.support.replay_model import (
    MODELLED,
    Key,
    belongs,
    expected_at,
    make_items,
    norm_key,
    only_modelled,
    write_rotated_set,
)

STEP = 60
DAY_AGO = math.floor(time.time() / 3600) * 3600 - 86400


def replay_om(tmp_path: Path, *args: str | Path) -> tuple[int, str]:
    out = tmp_path / "out.om"
    code = main(["replay", "--quiet", "--format", "openmetrics", "-o", str(out), *map(str, args)])
    return code, out.read_text("utf-8") if out.exists() else ""


def replay_om_process(tmp_path: Path, log: Path) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Run replay --format openmetrics as its own process, for what it writes on stderr; return
    the process and the OpenMetrics text."""
    out = tmp_path / "out.om"
    proc = subprocess.run(
        [sys.executable, "-m", "log_exporter", "replay", "--format", "openmetrics", "-o", out, log],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return proc, out.read_text("utf-8") if out.exists() else ""


# The test's own reading of a sample line; client_python's OpenMetrics parser rejects histograms
# with several points per series (valid per the spec), and promtool checks validity elsewhere.
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+) (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples_by_time(text: str) -> dict[float, dict[Key, float]]:
    """Modelled samples of an OpenMetrics exposition, grouped by their timestamp."""
    by_time: dict[float, dict[Key, float]] = defaultdict(dict)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line with a timestamp: {line!r}"
        name, labels, value, stamp = m.groups()
        if any(belongs(name, fam) for fam in MODELLED):
            pairs = dict(_LABEL.findall(labels or ""))
            by_time[float(stamp)][norm_key(name, pairs)] = float(value)
    return by_time


def test_sample_at_each_step_holds_every_event_at_or_before_it(tmp_path: Path) -> None:
    """Across a rotated gzip set with junk and untimed lines, the sample stamped T of every
    series equals what the log implies after all events stamped at or before T; samples exist at
    every multiple of the step within the log's range and at the last event, and nowhere else."""
    items = make_items(random.Random(11), 1500, DAY_AGO + 7, junk=0.03, untimed=0.03)
    paths = write_rotated_set(tmp_path, items, parts=3)
    code, text = replay_om(tmp_path, "--step", str(STEP), *reversed(paths))
    assert code == 0
    assert text.endswith("# EOF\n")
    times = [it.time for it in items if it.time is not None]
    first, last = min(times), max(times)
    steps = [k * STEP for k in range(math.ceil(first / STEP), math.floor(last / STEP) + 1)]
    by_time = samples_by_time(text)
    assert sorted(by_time) == sorted({*steps, last})
    assert len(steps) > 10
    for t in sorted(by_time):
        assert by_time[t] == only_modelled(expected_at(items, t)), f"sample at {t}"


def test_event_stamped_exactly_at_a_step_is_in_that_step(tmp_path: Path) -> None:
    """An event stamped exactly T counts in the sample at T; one stamped a millisecond later
    does not."""
    t0 = DAY_AGO  # a whole hour, so a multiple of the step

    def line(offset_ms: int, tag: str) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + offset_ms // 1000))
        return b'{"timestamp":"%s.%03dZ","event":"auth.failed","failure_type":"%s"}\n' % (
            stamp.encode(),
            offset_ms % 1000,
            tag.encode(),
        )

    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(line(-500, "a") + line(0, "a") + line(1, "b") + line(60_000, "a"))
    code, text = replay_om(tmp_path, "--step", "60", log)
    assert code == 0
    by_time = samples_by_time(text)
    a = ("sustainbot_authentication_failures_total", frozenset({("failure_type", "a")}))
    b = ("sustainbot_authentication_failures_total", frozenset({("failure_type", "b")}))
    assert by_time[t0][a] == 2.0
    assert b not in by_time[t0], "a series that does not exist yet at T has no sample at T"
    assert by_time[t0 + 60][a] == 3.0 and by_time[t0 + 60][b] == 1.0
    assert sorted(by_time) == [t0, t0 + 60]


def test_untimed_events_take_the_previous_time_and_are_counted(tmp_path: Path) -> None:
    """Events with a missing or unparsable timestamp count at the previous event's time, and the
    closing summary says how many there were."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(
        b'{"timestamp":"2026-02-01T14:30:10.000Z","event":"auth.failed","failure_type":"x"}\n'
        b'{"event":"auth.failed","failure_type":"x"}\n'
        b'{"timestamp":"yesterday","event":"auth.failed","failure_type":"x"}\n'
        b'{"timestamp":"2026-02-01T14:31:10.000Z","event":"auth.failed","failure_type":"y"}\n'
    )
    proc, text = replay_om_process(tmp_path, log)
    assert proc.returncode == 0, proc.stderr
    assert b"2 events without a usable timestamp" in proc.stderr
    by_time = samples_by_time(text)
    x = ("sustainbot_authentication_failures_total", frozenset({("failure_type", "x")}))
    step = 1769956260.0  # 14:31:00, between the two timed events
    assert by_time[step][x] == 3.0


def test_log_without_any_timestamp_gives_no_samples_and_exit_1(tmp_path: Path) -> None:
    """With no usable timestamp at all there is no time range: a clear message and exit code 1."""
    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(b'{"event":"auth.failed"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "log_exporter", "replay", "--format", "openmetrics", str(log)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert b"no event has a usable timestamp" in proc.stderr
    assert proc.stdout.endswith(b"# EOF\n")


def test_promtool_accepts_the_output(tmp_path: Path) -> None:
    """``promtool tsdb create-blocks-from openmetrics`` turns the output into blocks holding every
    sample line of it."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    paths = write_rotated_set(tmp_path, make_items(random.Random(3), 800, DAY_AGO, junk=0.02))
    code, text = replay_om(tmp_path, *paths)
    assert code == 0
    blocks = tmp_path / "blocks"
    proc = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "out.om"), blocks],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    listing = subprocess.run(
        [promtool, "tsdb", "list", str(blocks)], capture_output=True, timeout=60, check=True
    )
    rows = listing.stdout.decode().splitlines()[1:]
    sample_lines = sum(1 for line in text.splitlines() if not line.startswith("#"))
    assert sum(int(row.split()[4]) for row in rows) == sample_lines


def _families(k: int) -> list[object]:
    c = CounterMetricFamily("c_total", "c", labels=["a"])
    for i in range(k % 5 + 1):
        c.add_metric([str(i)], float(k * i))
    h = HistogramMetricFamily("h_seconds", "h", labels=["m"])
    h.add_metric(["x"], [("0.5", float(k)), ("+Inf", float(2 * k))], sum_value=k / 3)
    info = InfoMetricFamily("app", "app", labels=[])
    info.add_metric([], {"version": str(k // 4)})
    return [c, h, info]


def test_spilling_in_a_tiny_memory_budget_gives_the_same_output() -> None:
    """However small the memory budget (many transposition passes), the exposition is the same,
    with each series' points together in time order."""

    def render(budget: int) -> bytes:
        out = io.BytesIO()
        with SpillingWriter(budget_values=budget) as w:
            for k in range(40):
                w.add(_families(k), 1_700_000_000 + 15 * k)  # type: ignore[arg-type]
            w.write(out)
        return out.getvalue()

    small, large = render(3), render(1 << 20)
    assert small == large
    series_seen: list[str] = []
    for line in large.decode().splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m
        # A histogram series is its labels without "le", owning _bucket, _count and _sum.
        base = re.sub(r"_(bucket|count|sum)$", "", m.group(1))
        labels = re.sub(r',?le="[^"]*"', "", m.group(2) or "")
        series = f"{base}{{{labels}}}"
        if not series_seen or series_seen[-1] != series:
            assert series not in series_seen, f"{series} interleaved with another series"
            series_seen.append(series)


def test_timestamps_must_increase() -> None:
    """Adding a snapshot at or before the previous one is a programming error, refused loudly."""
    with SpillingWriter() as w:
        w.add([], 10.0)
        with pytest.raises(ValueError, match="increase"):
            w.add([], 10.0)


def test_event_stamped_before_an_earlier_one_counts_at_the_later_time(tmp_path: Path) -> None:
    """Time never goes backwards: an event stamped before the event written above it (two writers
    racing) counts at the later time already reached, and the summary says so."""
    t0 = DAY_AGO

    def line(offset: int, tag: str) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + offset))
        return b'{"timestamp":"%s.000Z","event":"auth.failed","failure_type":"%s"}\n' % (
            stamp.encode(),
            tag.encode(),
        )

    log = tmp_path / "sustainbot.jsonl"
    log.write_bytes(line(30, "a") + line(90, "a") + line(45, "late") + line(100, "a"))
    proc, text = replay_om_process(tmp_path, log)
    assert proc.returncode == 0, proc.stderr
    assert b"1 events stamped before an earlier event" in proc.stderr
    by_time = samples_by_time(text)
    late = ("sustainbot_authentication_failures_total", frozenset({("failure_type", "late")}))
    assert late not in by_time[t0 + 60]
    assert by_time[t0 + 100][late] == 1.0


def test_bytes_read_never_goes_down_and_ends_at_the_bytes_read(tmp_path: Path) -> None:
    """log_exporter_bytes_read_total rises at every step (a counter that went down would read as
    a reset) and its last sample equals the decompressed bytes of all files, oversized included."""
    items = make_items(random.Random(4), 600, DAY_AGO, junk=0.05)
    paths = write_rotated_set(tmp_path, items, parts=3)
    big = b'{"event":"auth.failed","pad":"' + b"x" * (1 << 20) + b'"}\n'
    paths[1].write_bytes(paths[1].read_bytes() + big)  # the plain middle generation
    code, text = replay_om(tmp_path, *paths)
    assert code == 0
    samples = [
        (float(m.group(2)), float(m.group(1)))
        for m in re.finditer(r"^log_exporter_bytes_read_total (\S+) (\S+)$", text, re.MULTILINE)
    ]
    values = [v for _, v in sorted(samples)]
    assert len(values) > 5
    assert values == sorted(values)
    total = sum(len(it.raw) + 1 for it in items) + len(big)
    assert values[-1] == total
    assert re.search(r'^log_exporter_lines_total\{result="oversized"\} 1 ', text, re.MULTILINE)


def test_last_sample_equals_the_final_prometheus_output(tmp_path: Path) -> None:
    """The last OpenMetrics sample of every series (self-metrics included) equals what
    --format prometheus reports for the same files: both formats tell the same story."""
    items = make_items(random.Random(9), 900, DAY_AGO, junk=0.04, untimed=0.05)
    if items[-1].time is None:  # end on a timed event, see test_replay_vs_serve
        items = items[:-1]
    paths = write_rotated_set(tmp_path, items, parts=3)
    code, om = replay_om(tmp_path, *paths)
    assert code == 0
    prom_out = tmp_path / "final.prom"
    assert main(["replay", "--quiet", "-o", str(prom_out), *map(str, paths)]) == 0

    def key(name: str, labels: str | None) -> tuple[str, frozenset[tuple[str, str]]]:
        return name, frozenset(_LABEL.findall(labels or ""))

    last: dict[tuple[str, frozenset[tuple[str, str]]], tuple[float, float]] = {}
    for line in om.splitlines():
        m = _SAMPLE.match(line)
        if m:
            k, t = key(m.group(1), m.group(2)), float(m.group(4))
            if k not in last or last[k][0] < t:
                last[k] = (t, float(m.group(3)))
    final = {}
    for line in prom_out.read_text().splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m and not m.group(1).startswith("log_exporter_build_info"):
            final[key(m.group(1), m.group(2))] = float(m.group(3))
    end = max(t for t, _ in last.values())
    # Series that ended earlier (an info series replaced by a newer start) are not in the final.
    assert {k: v for k, (t, v) in last.items() if t == end} == final


# Runs replay in a fresh interpreter and prints its peak resident set size. VmHWM, not
# ru_maxrss: Linux carries a parent's ru_maxrss over fork and exec, so the test's own memory
# (it holds the generated items) would be reported as the child's.
_PEAK_RSS = """
import sys
from log_exporter.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
sys.exit(code)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_grows_with_event_count(tmp_path: Path) -> None:
    """Ten times the events over the same time range (same series, same steps) must not raise
    replay's peak memory: only series x steps may cost memory, never the number of events."""
    peaks: dict[int, int] = {}
    for n in (10_000, 100_000):
        log = tmp_path / f"{n}.jsonl"
        items = make_items(random.Random(5), n, DAY_AGO, mean_gap=7200 / n)
        log.write_bytes(b"".join(it.raw + b"\n" for it in items))
        argv = ["replay", "--quiet", "--format", "openmetrics", "-o", str(tmp_path / f"{n}.om")]
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, *argv, str(log)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        peaks[n] = int(proc.stdout.split()[-1])  # kB
    # Holding the events would take hundreds of bytes each: 90,000 more would add tens of MB.
    assert peaks[100_000] - peaks[10_000] < 8 * 1024, peaks
