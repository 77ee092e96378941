"""The whole serve path, measured from outside: a real ``log-exporter serve`` process.

Run by hand: ``.venv/bin/python benchmarks/serve_latency.py [--samples N] [--burst N]``.

* write-to-scrape latency: append one line, poll /metrics until its effect shows; p50/p99.
  Target p99 <= 100 ms.
* catch-up: append a burst of N realistic events in one write, time until /metrics counts them
  all; events/s. Target >= 150k events/s.
* RSS of the serve process (current and peak). Target <= 80 MB.

Figures depend on the machine and its load; run on an idle machine and quote them with it.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PARSED = re.compile(rb'^log_exporter_lines_total\{result="parsed"\} (\S+)$', re.M)
DEADLINE = 120.0


def make_lines(n: int) -> list[bytes]:
    """The data-path benchmark's realistic event mix (a sibling script, not a package)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pipeline_catchup import make_lines as generate

    return generate(n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parsed_lines(url: str) -> float:
    with urllib.request.urlopen(url, timeout=30) as resp:
        match = PARSED.search(resp.read())
    return float(match.group(1)) if match else 0.0


def wait_parsed(url: str, target: float) -> float:
    """Poll until the parsed-lines counter reaches ``target``; the monotonic time it did."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if parsed_lines(url) >= target:
            return time.monotonic()
    raise SystemExit(f"the exporter did not reach {target:.0f} parsed lines in {DEADLINE:.0f}s")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of ``pid`` in MiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--burst", type=int, default=500_000, help="events in the catch-up burst")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sustainbot.jsonl"
        log.touch()
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        proc = subprocess.Popen(
            [sys.executable, "-m", "log_exporter", "serve", "--file", str(log),
             "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        )  # fmt: skip
        try:
            end = time.monotonic() + DEADLINE
            while True:
                try:
                    parsed_lines(url)
                    break
                except OSError:
                    if time.monotonic() > end or proc.poll() is not None:
                        raise SystemExit("the exporter did not start") from None
                    time.sleep(0.05)
            idle_rss, _ = rss_mb(proc.pid)

            # Latency: one line at a time, each waited for before the next.
            line = make_lines(1)[0] + b"\n"
            fd = os.open(log, os.O_WRONLY | os.O_APPEND)
            latencies = []
            try:
                for i in range(args.samples):
                    start = time.monotonic()
                    os.write(fd, line)
                    latencies.append(wait_parsed(url, i + 1) - start)
            finally:
                os.close(fd)

            # Catch-up: a burst appended in one go.
            burst = b"\n".join(make_lines(args.burst)) + b"\n"
            before = parsed_lines(url)
            start = time.monotonic()
            with open(log, "ab") as f:
                f.write(burst)
            done = wait_parsed(url, before + args.burst)
            elapsed = done - start
            rss, peak = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=DEADLINE)

    ms = [x * 1000 for x in latencies]
    print(f"write-to-scrape latency over {len(ms)} samples: "
          f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
          f"max {max(ms):.1f} ms   (target p99 <= 100 ms)")  # fmt: skip
    print(f"catch-up: {args.burst:,} events ({len(burst) / 2**20:.0f} MiB) in {elapsed:.2f} s = "
          f"{args.burst / elapsed:,.0f} events/s   (target >= 150,000)")  # fmt: skip
    print(f"RSS: {idle_rss:.1f} MiB idle, {rss:.1f} MiB after the burst, peak {peak:.1f} MiB"
          "   (target <= 80 MB)")  # fmt: skip


if __name__ == "__main__":
    main()
