"""The sidecar's CPU cost per event: a burst tailed by ``serve``, by mtail, and ``replay --jobs 1``.

Run by hand (a few minutes; needs the Debian package ``mtail``):

    .venv/bin/python benchmarks/sidecar_cost.py [--events 300000] [--rounds 5] [--tree DIR ...]

One file of ``--events`` contract events (``benchmarks/replay.py``'s generator, so mtail's
program reads it too) is appended in one write to an empty file that a running process follows;
each contender runs alone, one after the other, the order turning every round:

- ``serve``: a real ``log-exporter serve`` process tailing the file; the burst is done when
  ``log_exporter_lines_total{result="parsed"}`` reaches the event count (/metrics polled every
  20 ms, in the OpenMetrics format Prometheus asks for; the scrapes are part of the cost);
- ``mtail``: mtail 3.0 following the file with ``benchmarks/mtail/sustainbot.mtail``; done when
  ``sustainbot_http_requests_total`` (the file's last event is an ``http.request``) reaches the
  model's count;
- ``replay --jobs 1``: the whole process on the same file, less a replay of an empty file (its
  start-up: imports, the spec's compilation).

For each: CPU seconds of the process from the write to the moment the count was seen (from
``/proc/PID/stat``; ``os.wait4`` for replay), wall seconds, CPU/wall (1.0 = never idle while
data waited), CPU microseconds per event; peak RSS of serve. Then ``--samples`` write-to-scrape
latencies of single events spaced ``--sample-gap`` seconds (OpenMetrics scrapes), per serve.

``--steady R1,R2`` also writes the events one write each (as a logging handler does) at R
events/s, in 10 ms slices, for ``--steady-seconds``, to a serve and to mtail: the CPU seconds
per event of an app that logs all the time, where each wake-up of the tailer finds only a few
lines (``--no-burst`` runs only these).

``--tree DIR`` (repeatable) runs serve and replay from another checkout (its own ``.venv`` when
it has one, its source tree first on ``PYTHONPATH``), so a before and an after alternate in one
run. Figures depend on the machine and its load: quote them with it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from replay import generate  # noqa: E402 - a sibling script, not a package

PARSED = re.compile(rb'^log_exporter_lines_total\{result="parsed"\} (\S+)$', re.M)
MTAIL_REQUESTS = re.compile(rb"^sustainbot_http_requests_total\{[^}]*\} (\S+)$", re.M)
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
DEADLINE = 120.0
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def read_chars(pid: int) -> int:
    """Bytes ``pid`` has read so far (files and sockets), from ``/proc/PID/io``."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def main_thread_times(pid: int) -> tuple[float, float]:
    """Seconds the main thread of ``pid`` has run on a CPU, and waited for one (schedstat)."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fetch(url: str, accept: str = OPENMETRICS) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body: bytes = resp.read()
    return body


def serve_count(url: str) -> float:
    match = PARSED.search(fetch(url))
    return float(match.group(1)) if match else 0.0


def mtail_count(url: str) -> float:
    return sum(float(m.group(1)) for m in MTAIL_REQUESTS.finditer(fetch(url, "text/plain")))


def python_of(tree: Path) -> tuple[str, dict[str, str]]:
    """The interpreter and environment that run ``tree``'s exporter."""
    venv = tree / ".venv" / "bin" / "python"
    # PYTHONSAFEPATH: ``python -m`` would put the working directory first on the path, so run
    # from a checkout, every tree ran that checkout's package.
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONSAFEPATH="1")
    return (str(venv) if venv.exists() else sys.executable), env


@contextlib.contextmanager
def running(
    cmd: list[str], env: dict[str, str] | None, url: str, count: Callable[[str], float]
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` running, once ``url`` answers."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + DEADLINE
        while True:
            try:
                count(url)
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise SystemExit(f"{cmd[0]} did not start") from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)


@dataclass
class Burst:
    cpu: float
    wall: float
    events: int = 0  # events this run read (0: the burst's)
    # Of the main thread's wall time: the share it slept (neither ran nor waited for a CPU
    # that other processes held): the idle gaps while data waited.
    idle: float | None = None
    rss: float = 0.0
    p50: float = 0.0
    p99: float = 0.0


def burst(
    proc: subprocess.Popen[bytes],
    log: Path,
    data: bytes,
    url: str,
    count: Callable[[str], float],
    target: float,
) -> Burst:
    """Append ``data`` in one write; CPU and wall seconds until ``count`` reaches ``target``."""
    time.sleep(0.3)  # let start-up work (imports, the first scrape) settle
    pid = proc.pid
    cpu0, (run0, wait0), read0 = cpu_seconds(pid), main_thread_times(pid), read_chars(pid)
    t0 = time.monotonic()
    with log.open("ab") as f:
        f.write(data)
    written = time.monotonic()  # the file event comes once the write is over
    end = t0 + DEADLINE
    # Scrapes cost the scraped process CPU: none until it has read the burst's bytes (its
    # /proc counters cost it nothing), then every 5 ms until the count shows the last line.
    while read_chars(pid) - read0 < len(data) or count(url) < target:
        if time.monotonic() > end:
            raise SystemExit(f"{target:.0f} not reached in {DEADLINE:.0f}s")
        time.sleep(0.005)
    done = time.monotonic()
    run, wait = main_thread_times(pid)
    idle = 1.0 - ((run - run0) + (wait - wait0)) / (done - written)
    return Burst(cpu_seconds(pid) - cpu0, done - t0, idle=idle)


def latency(log: Path, url: str, samples: int, gap: float, base: float) -> tuple[float, float]:
    """p50 and p99 milliseconds from appending one event to a scrape that counts it."""
    line = (
        b'{"event":"auth.jwt_validated","outcome":"success","timestamp":"2026-02-01T12:00:00Z"}\n'
    )
    times = []
    with log.open("ab", buffering=0) as f:
        for i in range(samples):
            time.sleep(gap)
            t0 = time.monotonic()
            f.write(line)
            while serve_count(url) < base + i + 1:
                pass
            times.append((time.monotonic() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def serve_command(py: str, log: Path) -> tuple[list[str], str]:
    """A serve process tailing ``log`` on a free loopback port, and its metrics URL."""
    port = free_port()
    cmd = [py, "-m", "log_exporter", "serve", "--file", str(log),
           "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"]  # fmt: skip
    return cmd, f"http://127.0.0.1:{port}/metrics"


def mtail_command(mtail: str, work: Path, log: Path) -> tuple[list[str], str]:
    """An mtail following ``log`` with the benchmark's programs on a free loopback port (its
    own logs in ``work``), and its metrics URL."""
    port = free_port()
    logs = work / "mtail-logs"
    logs.mkdir(exist_ok=True)
    cmd = [mtail, "--progs", str(HERE / "mtail"), "--logs", str(log), "--emit_prog_label=false",
           "--address=127.0.0.1", f"--port={port}", "--stderrthreshold=FATAL",
           f"--log_dir={logs}"]  # fmt: skip
    return cmd, f"http://127.0.0.1:{port}/metrics"


def run_serve(tree: Path, work: Path, data: bytes, n: int, args: argparse.Namespace) -> Burst:
    py, env = python_of(tree)
    log = work / "sustainbot.jsonl"
    log.write_bytes(b"")
    cmd, url = serve_command(py, log)
    with running(cmd, env, url, serve_count) as proc:
        result = burst(proc, log, data, url, serve_count, n)
        if args.samples:
            result.p50, result.p99 = latency(log, url, args.samples, args.sample_gap, n)
        result.rss = peak_rss_mb(proc.pid)
    log.unlink()
    return result


def steady(
    proc: subprocess.Popen[bytes],
    log: Path,
    lines: list[bytes],
    rate: int,
    url: str,
    count: Callable[[str], float] | None,
) -> Burst:
    """Append ``lines`` one write each (as a logging handler does), ``rate`` a second in 10 ms
    slices; CPU seconds until all are read (counted, for serve), and the wall time."""
    time.sleep(0.3)
    pid = proc.pid
    cpu0, read0 = cpu_seconds(pid), read_chars(pid)
    per_slice = max(1, rate // 100)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    t0 = time.monotonic()
    try:
        for i in range(0, len(lines), per_slice):
            for line in lines[i : i + per_slice]:
                os.write(fd, line)
            pause = t0 + (i + per_slice) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    finally:
        os.close(fd)
    total = sum(map(len, lines))
    end = time.monotonic() + DEADLINE
    while read_chars(pid) - read0 < total or (count is not None and count(url) < len(lines)):
        if time.monotonic() > end:
            raise SystemExit("the steady writes were not all read")
        time.sleep(0.01)
    if count is None:
        time.sleep(0.2)  # mtail: no line count to wait on; its reads are done, let it finish
    return Burst(cpu_seconds(pid) - cpu0, time.monotonic() - t0, events=len(lines))


def run_steady_serve(tree: Path, work: Path, lines: list[bytes], rate: int) -> Burst:
    py, env = python_of(tree)
    log = work / "steady.jsonl"
    log.write_bytes(b"")
    cmd, url = serve_command(py, log)
    with running(cmd, env, url, serve_count) as proc:
        result = steady(proc, log, lines, rate, url, serve_count)
    log.unlink()
    return result


def run_steady_mtail(mtail: str, work: Path, lines: list[bytes], rate: int) -> Burst:
    log = work / "steady-mtail.jsonl"
    log.write_bytes(b"")
    cmd, url = mtail_command(mtail, work, log)
    with running(cmd, None, url, mtail_count) as proc:
        result = steady(proc, log, lines, rate, url, None)
    log.unlink()
    return result


def run_mtail(mtail: str, work: Path, data: bytes, requests: float) -> Burst:
    log = work / "mtail.jsonl"
    log.write_bytes(b"")
    cmd, url = mtail_command(mtail, work, log)
    with running(cmd, None, url, mtail_count) as proc:
        result = burst(proc, log, data, url, mtail_count, requests)
        result.idle = None  # a Go program's main thread is not where it works
    log.unlink()
    return result


def run_replay(tree: Path, log: Path, empty: Path) -> Burst:
    """Replay's CPU on ``log`` less its CPU on an empty file (start-up), and its wall."""
    py, env = python_of(tree)

    def once(path: Path) -> tuple[float, float]:
        cmd = [py, "-m", "log_exporter", "replay", "--quiet", "--jobs", "1", "-o", os.devnull,
               str(path)]  # fmt: skip
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"replay failed: {status}")
        return usage.ru_utime + usage.ru_stime, time.monotonic() - t0

    cpu, wall = once(log)
    start_cpu, start_wall = once(empty)
    return Burst(cpu - start_cpu, wall - start_wall)


def spread(xs: list[float], fmt: str) -> str:
    return f"{format(statistics.median(xs), fmt)} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"


def report(results: dict[str, list[Burst]], n: int, rounds: int) -> None:
    """Medians and ranges of every contender's runs."""
    print(f"\n{n} events, medians (min-max) of {rounds} alternated rounds")
    for name, bs in results.items():
        cpu = [b.cpu for b in bs]
        line = (
            f"{name:28} CPU s {spread(cpu, '.2f')}"
            f", wall s {spread([b.wall for b in bs], '.2f')}"
            f", CPU/wall {spread([b.cpu / b.wall for b in bs], '.2f')}"
            f", us/event {spread([b.cpu / (b.events or n) * 1e6 for b in bs], '.2f')}"
            f", events per CPU s {statistics.median((b.events or n) / b.cpu for b in bs):,.0f}"
        )
        if bs[0].idle is not None:
            line += f", main thread idle {spread([b.idle or 0.0 for b in bs], '.0%')}"
        if bs[0].rss:
            line += f", peak RSS {max(b.rss for b in bs):.1f} MiB"
        if bs[0].p50:
            line += (
                f", latency p50 {spread([b.p50 for b in bs], '.1f')} ms"
                f", p99 {spread([b.p99 for b in bs], '.1f')} ms"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (medians)")
    parser.add_argument("--tree", type=Path, action="append", help="source tree(s) to run")
    parser.add_argument("--samples", type=int, default=200, help="latency samples per serve run")
    parser.add_argument("--sample-gap", type=float, default=0.02, help="seconds between samples")
    parser.add_argument("--no-mtail", action="store_true", help="leave mtail out")
    parser.add_argument(
        "--steady",
        default="",
        help="comma-separated rates (events/s): also write the events one by one at each rate",
    )
    parser.add_argument("--no-burst", action="store_true", help="only the --steady rates")
    parser.add_argument("--steady-seconds", type=float, default=5.0, help="seconds of each rate")
    args = parser.parse_args()
    mtail = shutil.which("mtail")
    if mtail is None and not args.no_mtail:
        raise SystemExit("needs mtail (Debian package mtail), or --no-mtail")
    trees = [t.resolve() for t in (args.tree or [HERE.parent])]
    work = Path(tempfile.mkdtemp(prefix="sidecar-cost-"))
    try:
        source = work / "events.jsonl"
        model = generate(source, args.events)
        data = source.read_bytes()
        n = model.lines
        requests = sum(
            v for (name, _), v in model.values.items() if name == "sustainbot_http_requests_total"
        )
        empty = work / "empty.jsonl"
        empty.write_bytes(b"")
        print(f"{n} events, {len(data) / 1e6:.1f} MB", flush=True)
        contenders: dict[str, Callable[[], Burst]] = {}
        if not args.no_burst:
            for tree in trees:
                contenders[f"serve [{tree.name}]"] = functools.partial(
                    run_serve, tree, work, data, n, args
                )
                contenders[f"replay --jobs 1 [{tree.name}]"] = functools.partial(
                    run_replay, tree, source, empty
                )
            if mtail is not None and not args.no_mtail:
                contenders["mtail"] = lambda: run_mtail(mtail, work, data, requests)
        all_lines = [line + b"\n" for line in data.split(b"\n")[:-1]]
        for rate in [int(r) for r in args.steady.split(",") if r]:
            some = all_lines[: int(rate * args.steady_seconds)]
            for tree in trees:
                contenders[f"serve steady {rate}/s [{tree.name}]"] = functools.partial(
                    run_steady_serve, tree, work, some, rate
                )
            if mtail is not None and not args.no_mtail:
                contenders[f"mtail steady {rate}/s"] = functools.partial(
                    run_steady_mtail, mtail, work, some, rate
                )
        results: dict[str, list[Burst]] = {name: [] for name in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            # Alternated: the order turns every round, so a drift in the load falls on all alike.
            for name in names[r % len(names) :] + names[: r % len(names)]:
                b = contenders[name]()
                results[name].append(b)
                lat = f", p50 {b.p50:.1f} ms, p99 {b.p99:.1f} ms" if b.p50 else ""
                print(f"  round {r + 1} {name}: {b.cpu:.2f} CPU s, {b.wall:.2f} s wall{lat}",
                      flush=True)  # fmt: skip
        report(results, n, args.rounds)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
