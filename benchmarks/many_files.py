"""serve over many files (a node's /var/log/pods): idle CPU, catch-up, memory per label set.

Run by hand: ``.venv/bin/python benchmarks/many_files.py [--idle-files 500] [--seconds 30]``.
Each figure comes from a real ``log-exporter serve`` process (its CPU time and RSS read from
/proc), reading a pods-shaped tree of JSON-lines files written before it starts:

* idle: N files (one pod each, so N label sets), read to their end, then nothing written: the
  exporter's CPU over ``--seconds`` as a share of one core, against one file, alternated.
  Target: under 2% of one core for 500 files.
* catch-up: the same events as 100 files of a pattern and as one plain file, read from their
  start; events/s from the process's start until /readyz (every file read and counted; the
  count checked on /metrics after), alternated, with a scrape's time once caught up. Target:
  100 files >= 80% of one.
* memory: RSS once caught up, N label sets against one file; the difference per label set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_catchup import make_lines

PATTERN = "pods/{namespace}_{pod}_{_}/app/*.log"
_TICKS = os.sysconf("SC_CLK_TCK")


def _write_tree(root: Path, files: int, lines: list[bytes]) -> None:
    per = len(lines) // files
    for i in range(files):
        directory = root / "pods" / f"bench_pod-{i}_uid-{i}" / "app"
        directory.mkdir(parents=True)
        chunk = lines[i * per : (i + 1) * per]
        (directory / "0.log").write_bytes(b"\n".join(chunk) + b"\n")


def _write_one(root: Path, lines: list[bytes]) -> None:
    (root / "one.jsonl").write_bytes(b"\n".join(lines) + b"\n")


class _Serve:
    def __init__(self, root: Path, file_arg: str, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "log_exporter",
                "serve",
                "--file",
                file_arg,
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--log.level",
                "warn",
            ],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def parsed(self) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "log_exporter_lines_total" and s.labels.get("result") == "parsed":
                    total += s.value
        return total

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=30) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_ready(self, n: int, timeout: float = 600) -> tuple[float, float]:
        """Seconds from now until /readyz says every file is read and counted (a scrape of a
        page of many label sets costs enough to slow the reading down: /readyz costs nothing),
        checked against ``n`` parsed lines on /metrics; with the process's CPU seconds then (the
        check's scrape left out)."""
        start = time.monotonic()
        while not self.ready():
            if time.monotonic() - start > timeout or self.proc.poll() is not None:
                raise SystemExit("gave up waiting for readiness")
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        cpu = self.cpu_seconds()
        if self.parsed() != n:
            raise SystemExit(f"ready with {self.parsed()} lines counted, not {n}")
        return elapsed, cpu

    def scrape_seconds(self) -> float:
        start = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=60) as r:
            r.read()
        return time.perf_counter() - start

    def wait_parsed(self, n: int, timeout: float = 600) -> float:
        """Seconds from now until /metrics counts ``n`` parsed lines."""
        start = time.monotonic()
        while self.parsed() < n:
            if time.monotonic() - start > timeout or self.proc.poll() is not None:
                raise SystemExit(f"gave up waiting for {n} lines")
            time.sleep(0.05)
        return time.monotonic() - start

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def _idle(root: Path, file_arg: str, n: int, seconds: float, port: int) -> tuple[float, int]:
    serve = _Serve(root, file_arg, port)
    try:
        serve.wait_parsed(n)
        time.sleep(2)  # let the start-up's garbage settle
        before = serve.cpu_seconds()
        time.sleep(seconds)
        share = (serve.cpu_seconds() - before) / seconds
        return share, serve.rss_bytes()
    finally:
        serve.stop()


def _catch_up(root: Path, file_arg: str, n: int, port: int) -> tuple[float, float, float]:
    """Events/s from the process's start until ready, events per CPU second of the process
    (imports included; steadier than the wall clock on a shared machine), and one scrape's
    seconds after."""
    serve = _Serve(root, file_arg, port)
    try:
        elapsed, cpu = serve.wait_ready(n)
        rate, cpu_rate = n / elapsed, n / cpu
        return rate, cpu_rate, min(serve.scrape_seconds() for _ in range(3))
    finally:
        serve.stop()


def _idle_figures(work: Path, args: argparse.Namespace) -> None:
    """The idle CPU and RSS of many files against one, and the memory per label set."""
    idle_lines = make_lines(args.idle_files * 10)
    many, one = work / "idle-many", work / "idle-one"
    _write_tree(many, args.idle_files, idle_lines)
    one.mkdir()
    _write_one(one, idle_lines[:10])
    shares: dict[str, list[float]] = {"many": [], "one": []}
    rss: dict[str, list[int]] = {"many": [], "one": []}
    for _ in range(args.rounds):
        share, size = _idle(many, PATTERN, len(idle_lines), args.seconds, args.port)
        shares["many"].append(share)
        rss["many"].append(size)
        share, size = _idle(one, "one.jsonl", 10, args.seconds, args.port)
        shares["one"].append(share)
        rss["one"].append(size)
    for key, label in (("many", f"{args.idle_files} files"), ("one", "1 file")):
        rounds = ", ".join(f"{100 * s:.2f}%" for s in shares[key])
        print(
            f"idle, {label}: CPU median {100 * statistics.median(shares[key]):.2f}% of one "
            f"core ({rounds}); RSS median {statistics.median(rss[key]) / 2**20:.1f} MiB"
        )
    per_set = (statistics.median(rss["many"]) - statistics.median(rss["one"])) / (
        args.idle_files - 1
    )
    print(f"memory per label set (one file each): {per_set / 1024:.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-files", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0, help="idle measurement")
    parser.add_argument("--events", type=int, default=400_000, help="catch-up events")
    parser.add_argument("--catchup-files", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=19555)
    parser.add_argument("--no-idle", action="store_true", help="only the catch-up")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="many-files-"))
    try:
        if not args.no_idle:
            _idle_figures(work, args)
        lines = make_lines(args.events)
        tree, flat = work / "catch-many", work / "catch-one"
        _write_tree(tree, args.catchup_files, lines)
        flat.mkdir()
        n = (len(lines) // args.catchup_files) * args.catchup_files
        _write_one(flat, lines[:n])
        rates: dict[str, list[float]] = {"many": [], "one": []}
        scrapes: dict[str, list[float]] = {"many": [], "one": []}
        cpu_rates: dict[str, list[float]] = {"many": [], "one": []}
        for _ in range(args.rounds):
            for key, root, arg in (("many", tree, PATTERN), ("one", flat, "one.jsonl")):
                rate, cpu_rate, scrape = _catch_up(root, arg, n, args.port)
                rates[key].append(rate)
                cpu_rates[key].append(cpu_rate)
                scrapes[key].append(scrape)
        for key, label in (("many", f"{args.catchup_files} files"), ("one", "1 file")):
            rounds = ", ".join(f"{r:,.0f}" for r in rates[key])
            median = statistics.median(rates[key])
            print(f"catch-up, {label}: median {median:,.0f} events/s ({rounds})")
            cpu = ", ".join(f"{r:,.0f}" for r in cpu_rates[key])
            print(f"  per CPU second: median {statistics.median(cpu_rates[key]):,.0f} ({cpu})")
            scrape = 1000 * statistics.median(scrapes[key])
            print(f"  a scrape of its /metrics once caught up: {scrape:.0f} ms")
        ratio = statistics.median(rates["many"]) / statistics.median(rates["one"])
        print(f"catch-up, {args.catchup_files} files / 1 file: {100 * ratio:.0f}%")
        ratio = statistics.median(cpu_rates["many"]) / statistics.median(cpu_rates["one"])
        print(f"  per CPU second: {100 * ratio:.0f}%")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
