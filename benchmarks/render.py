"""/metrics render time and RSS with 10k series, in-process and through a real serve process.

Run by hand: ``.venv/bin/python benchmarks/render.py [--series N] [--scrapes N]``.
Target on a 2-core machine: render <= 100 ms at 10k series, RSS <= 80 MB.

"Series" counts exposed time series (sample lines), as Prometheus does: a histogram label set
with 11 buckets is 14 series (11 + +Inf + _sum + _count). Two shapes are measured: counters only,
and half counters / half histograms.
"""

from __future__ import annotations

import argparse
import gzip
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.prometheus.negotiate import select_encoder
from log_exporter.spec import compile_spec, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch

BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
SERIES_PER_HISTOGRAM = len(BUCKETS) + 3
DEADLINE = 120.0

SPEC = f"""version = 1
series_cap = 100000

[metrics.bench_requests_total]
type = "counter"
help = "Requests, by route and status."
events = ["req"]
labels = ["route", "status"]

[metrics.bench_duration_seconds]
type = "histogram"
help = "Durations, by route."
events = ["dur"]
value = "seconds"
buckets = {BUCKETS}
labels = ["route"]
"""


def events(series: int, histogram_share: float) -> list[bytes]:
    """Lines that create ``series`` exposed series, ``histogram_share`` of them histograms."""
    hist_sets = int(series * histogram_share) // SERIES_PER_HISTOGRAM
    counters = series - hist_sets * SERIES_PER_HISTOGRAM
    lines = [
        orjson.dumps({"event": "req", "route": f"/r/{i // 5}", "status": str(200 + i % 5)})
        for i in range(counters)
    ]
    lines += [
        orjson.dumps({"event": "dur", "route": f"/h/{i}", "seconds": (i % 100) / 10})
        for i in range(hist_sets)
    ]
    return lines


def in_process(lines: list[bytes], runs: int) -> tuple[float, float, float, int]:
    """Median ms of (Prometheus text, OpenMetrics, the snapshot under the lock), and bytes."""
    spec = load_spec(SPEC, "bench.toml")
    store = Store(spec.definitions)
    Pipeline(compile_spec(spec), store).feed(Batch(lines))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))

    def timed(render: object) -> float:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            render(registry)  # type: ignore[operator]
            samples.append((time.perf_counter() - start) * 1000)
        return statistics.median(samples)

    # The only part of a scrape that holds the store's lock, so the longest ingestion can wait.
    snapshot_ms = timed(lambda _registry: store.snapshot())
    return (
        timed(generate_latest),
        # The encoder the server picks for Prometheus' Accept header.
        timed(select_encoder("application/openmetrics-text; version=1.0.0")[0]),
        snapshot_ms,
        len(generate_latest(registry)),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as resp:
        return bytes(resp.read())


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def through_http(lines: list[bytes], scrapes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, log = Path(tmp) / "bench.toml", Path(tmp) / "bench.jsonl"
        spec_path.write_text(SPEC)
        log.write_bytes(b"\n".join(lines) + b"\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "log_exporter", "serve", "--file", str(log), "--spec",
             str(spec_path), "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
        )  # fmt: skip
        try:
            end = time.monotonic() + DEADLINE
            while True:
                try:
                    if get(base + "/readyz", {}):
                        break
                except OSError:
                    pass
                if time.monotonic() > end or proc.poll() is not None:
                    raise SystemExit("the exporter did not become ready")
                time.sleep(0.05)
            variants = {
                "Prometheus text": {},
                "OpenMetrics": {"Accept": "application/openmetrics-text; version=1.0.0"},
                "text + gzip": {"Accept-Encoding": "gzip"},
            }
            for name, headers in variants.items():
                samples = []
                for _ in range(scrapes):
                    start = time.perf_counter()
                    body = get(base + "/metrics", headers)
                    samples.append((time.perf_counter() - start) * 1000)
                size = len(body)
                plain = len(gzip.decompress(body)) if "Accept-Encoding" in headers else size
                print(
                    f"  HTTP {name:<16} p50 {statistics.median(samples):6.1f} ms, "
                    f"max {max(samples):6.1f} ms, {size / 1024:7.0f} KiB on the wire "
                    f"({plain / 1024:.0f} KiB rendered)"
                )
            rss, peak = rss_mb(proc.pid)
            print(f"  serve RSS {rss:.1f} MiB (peak {peak:.1f} MiB)")
        finally:
            proc.terminate()
            proc.wait(timeout=DEADLINE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    for title, share in (("counters only", 0.0), ("half histograms", 0.5)):
        lines = events(args.series, share)
        text_ms, om_ms, snapshot_ms, size = in_process(lines, args.scrapes)
        print(f"{args.series:,} series, {title}: {size / 1024:.0f} KiB of text")
        print(f"  in-process render: {text_ms:.1f} ms text, {om_ms:.1f} ms OpenMetrics"
              "   (target <= 100 ms)")  # fmt: skip
        print(f"  store lock held per scrape (snapshot): {snapshot_ms:.2f} ms")
        through_http(lines, args.scrapes)


if __name__ == "__main__":
    main()
