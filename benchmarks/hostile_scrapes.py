"""The HTTP side under hostile and heavy scraping, measured from outside a real ``serve``.

Run by hand: ``.venv/bin/python benchmarks/hostile_scrapes.py [--tree DIR ...] [--repeat N]``.

* slow readers: 8 connections each pipeline 400 ``GET /metrics`` with a 1 KB receive buffer
  and never read; meanwhile ``--probes`` ``/healthz`` probes spread over 20 s, one connection
  each, with a 5 s timeout.
  Reported: the probes' median and worst latency, and how many timed out.
* 50 concurrent scrapes of the built-in spec's text page (a realistic event mix): p50 and p99
  over ``--rounds`` rounds.
* RSS under 50 concurrent scrapes of a 12 MB text page (one histogram with 3 open labels at the
  default bound, 256 bytes, and the default cap, 1000 series): the process's RSS before and its
  peak (VmHWM) after.

``--tree`` runs the exporter from another checkout's source tree (``PYTHONPATH``), e.g. one
extracted with ``git archive``, so a change is measured against its base in the same session;
with several trees each scenario alternates between them ``--repeat`` times. Figures depend on
the machine and its load: quote them with it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import orjson

DEADLINE = 120.0
HERE = Path(__file__).resolve().parent

WIDE_SPEC = """
[metrics.wide_seconds]
type = "histogram"
help = "A wide page: three open labels at the default bound and cap."
events = ["wide"]
value = "seconds"
labels = ["a", "b", "c"]
buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def builtin_lines() -> list[bytes]:
    sys.path.insert(0, str(HERE))
    from pipeline_catchup import make_lines

    return make_lines(20_000)


def wide_lines() -> list[bytes]:
    lines = []
    for i in range(1000):
        values = {k: f"{k}{i:06d}".ljust(256, "x") for k in "abc"}
        lines.append(orjson.dumps({"event": "wide", "seconds": i % 7, **values}))
    return lines


@contextmanager
def exporter(tree: Path, lines: list[bytes], spec: str | None) -> Iterator[tuple[int, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bench.jsonl"
        log.write_bytes(b"\n".join(lines) + b"\n")
        args = [sys.executable, "-m", "log_exporter", "serve", "--file", str(log)]
        if spec is not None:
            spec_path = Path(tmp) / "bench.toml"
            spec_path.write_text(spec)
            args += ["--spec", str(spec_path)]
        port = free_port()
        args += ["--web.listen-address", f"127.0.0.1:{port}", "--log.level", "error"]
        env = dict(os.environ, PYTHONPATH=str(tree))
        proc = subprocess.Popen(args, env=env, cwd=tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            end = time.monotonic() + DEADLINE
            while True:
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > end or proc.poll() is not None:
                    raise SystemExit("the exporter did not become ready")
                time.sleep(0.05)
            yield proc.pid, base
        finally:
            proc.kill()
            proc.wait(timeout=DEADLINE)


def get(url: str, timeout: float = 60.0) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        size = len(r.read())
    return time.perf_counter() - start, size


def concurrently(n: int, task: Callable[[], tuple[float, int]]) -> list[tuple[float, int]]:
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    go = threading.Barrier(n)

    def run() -> None:
        go.wait()
        result = task()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def slow_readers(tree: Path, probes: int) -> str:
    with exporter(tree, builtin_lines(), None) as (_, base):
        host, port = base.removeprefix("http://").split(":")
        readers = []
        for _ in range(8):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.connect((host, int(port)))
            sock.setblocking(False)
            with suppress(BlockingIOError):
                sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 400)
            readers.append(sock)
        # Probes spread over 20 s: the readers' kernel buffers take a few seconds to fill,
        # and only then would a handler thread block on them.
        latencies, timeouts = [], 0
        for _ in range(probes):
            next_probe = time.monotonic() + 20.0 / probes
            try:
                latencies.append(get(base + "/healthz", 5.0)[0])
            except OSError:
                timeouts += 1
                latencies.append(5.0)
            time.sleep(max(0.0, next_probe - time.monotonic()))
        for sock in readers:
            sock.close()
    return (
        f"/healthz under 8 slow readers: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"worst {max(latencies) * 1000:.0f} ms, {timeouts}/{probes} timed out (5 s)"
    )


def concurrent_builtin(tree: Path, rounds: int) -> str:
    with exporter(tree, builtin_lines(), None) as (_, base):
        samples: list[float] = []
        size = 0
        for _ in range(rounds):
            results = concurrently(50, lambda: get(base + "/metrics"))
            samples += [seconds for seconds, _ in results]
            size = results[0][1]
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return (
        f"50 concurrent scrapes of the built-in text page ({size / 1024:.0f} KiB): "
        f"p50 {statistics.median(samples) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )


def wide_rss(tree: Path) -> str:
    with exporter(tree, wide_lines(), WIDE_SPEC) as (pid, base):
        _, size = get(base + "/metrics")
        before, _ = rss_mb(pid)
        results = concurrently(50, lambda: get(base + "/metrics", 120.0))
        _now, peak = rss_mb(pid)
    worst = max(s for s, _ in results)
    return (
        f"50 concurrent scrapes of a {size / 2**20:.1f} MiB page: RSS {before:.0f} MiB before, "
        f"peak {peak:.0f} MiB, slowest scrape {worst:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", help="source tree(s) to run")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", choices=("slow", "concurrent", "rss"), action="append", help="scenarios"
    )
    args = parser.parse_args()
    trees = args.tree or [HERE.parent]
    scenarios: dict[str, Callable[[Path], str]] = {
        "slow": lambda t: slow_readers(t, args.probes),
        "concurrent": lambda t: concurrent_builtin(t, args.rounds),
        "rss": wide_rss,
    }
    for name in args.only or list(scenarios):
        for _ in range(args.repeat):
            for tree in trees:
                print(f"[{tree.name}] {scenarios[name](tree)}", flush=True)


if __name__ == "__main__":
    main()
