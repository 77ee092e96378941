"""The cost of exemplars (issue 14): catch-up and /metrics render with and without them.

Run by hand: ``.venv/bin/python benchmarks/exemplars.py [--rounds N] [--events N]``.
Target: within 10% of the same run without exemplars, for catch-up and for the render.

Every measurement is taken for both variants in the same run, alternated (the order swapped
each round, so a machine getting busier or quieter favours neither), and reported as the median
with the spread seen. The variants differ only in the spec's ``exemplar = "trace_id"`` lines.

- In-process catch-up (``Pipeline.feed``, batches of 1000): the built-in spec on SustainBot's
  realistic mix (``pipeline_catchup.make_lines``), and 10k counter series.
- ``log-exporter serve`` catch-up: a real process started on a file of that mix, timed until
  ``/readyz`` answers 200 (the file as it was at start is all in /metrics).
- In-process render at 10k series (counters only, and half histograms), text and OpenMetrics.
- What the store holds at 10k series with and without (tracemalloc).
"""

from __future__ import annotations

import argparse
import functools
import gc
import gzip
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_catchup import make_lines
from render import SERIES_PER_HISTOGRAM, SPEC, free_port

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import Registry, StoreCollector
from log_exporter.prometheus.negotiate import select_encoder
from log_exporter.spec import compile_spec, default_spec_text, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
EXEMPLAR = 'exemplar = "trace_id"\n'
# benchmarks/render.py's spec with the setting on both of its metrics.
WIDE_SPEC = re.sub(r"(labels = .*\n)", lambda m: m.group(1) + EXEMPLAR, SPEC)
Variant = str  # "without" or "with"


def without(spec_text: str) -> str:
    return spec_text.replace(EXEMPLAR, "")


def wide_events(series: int, histogram_share: float, repeat: int) -> list[bytes]:
    """Lines over ``series`` exposed series (as benchmarks/render.py), each series hit
    ``repeat`` times, every line with a distinct trace id and a timestamp."""
    hist_sets = int(series * histogram_share) // SERIES_PER_HISTOGRAM
    counters = series - hist_sets * SERIES_PER_HISTOGRAM
    lines = []
    n = 0
    for r in range(repeat):
        for i in range(counters):
            n += 1
            lines.append(
                orjson.dumps(
                    {"timestamp": f"2026-02-01T14:{r % 60:02d}:00.{i % 1000:03d}Z", "event": "req",
                     "trace_id": f"{n:032x}", "route": f"/r/{i // 5}", "status": str(200 + i % 5)}
                )
            )  # fmt: skip
        for i in range(hist_sets):
            n += 1
            lines.append(
                orjson.dumps(
                    {"timestamp": f"2026-02-01T14:{r % 60:02d}:00.{i % 1000:03d}Z", "event": "dur",
                     "trace_id": f"{n:032x}", "route": f"/h/{i}", "seconds": (n % 100) / 10}
                )
            )  # fmt: skip
    return lines


def batches(lines: list[bytes], size: int = 1000) -> list[Batch]:
    return [
        Batch(lines[i : i + size], bytes_read=sum(len(x) + 1 for x in lines[i : i + size]))
        for i in range(0, len(lines), size)
    ]


def fed(spec_text: str, work: list[Batch]) -> Store:
    spec = load_spec(spec_text, "bench.toml")
    store = Store(spec.definitions)
    pipeline = Pipeline(compile_spec(spec), store)
    for batch in work:
        pipeline.feed(batch)
    return store


def alternated(rounds: int, measure: Callable[[Variant], float]) -> dict[Variant, list[float]]:
    out: dict[Variant, list[float]] = {"without": [], "with": []}
    for r in range(rounds):
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        for variant in order:
            gc.collect()
            out[variant].append(measure(variant))
    return out


def report(title: str, unit: str, samples: dict[Variant, list[float]], higher_better: bool) -> None:
    """Medians with their spread, and the cost of exemplars as extra time three ways: medians,
    bests (the least disturbed runs), and the median of each round's own ratio (robust to a
    machine whose load drifts during the run)."""
    med = {v: statistics.median(s) for v, s in samples.items()}
    best = {v: (max(s) if higher_better else min(s)) for v, s in samples.items()}

    def cost(without: float, with_: float) -> float:
        # As a cost in time: throughput 20% lower is 25% more time.
        return ((without / with_) if higher_better else (with_ / without)) * 100 - 100

    rounds = zip(samples["without"], samples["with"], strict=True)
    paired = statistics.median(cost(a, b) for a, b in rounds)
    print(f"{title}")
    for v, s in samples.items():
        spread = (max(s) - min(s)) / med[v] * 100
        print(f"  {v:<8} exemplars: median {med[v]:>10,.1f} {unit}  (min {min(s):,.1f}, "
              f"max {max(s):,.1f}: spread {spread:.0f}% of the median, {len(s)} runs)")  # fmt: skip
    medians, bests = cost(med["without"], med["with"]), cost(best["without"], best["with"])
    print(f"  cost of exemplars: {medians:+.1f}% (medians), {bests:+.1f}% (bests), "
          f"{paired:+.1f}% (per round)")  # fmt: skip


def catchup_in_process(rounds: int, title: str, spec_text: str, lines: list[bytes]) -> None:
    work = batches(lines)

    def measure(variant: Variant) -> float:
        text = spec_text if variant == "with" else without(spec_text)
        start = time.perf_counter()
        fed(text, work)
        return len(lines) / (time.perf_counter() - start)

    samples = alternated(rounds, measure)
    report(f"{title}: Pipeline.feed, {len(lines):,} events", "events/s", samples, True)


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return int(resp.status)
    except OSError:
        return 0


def serve_command(log: Path, spec: Path, port: int) -> list[str]:
    """``log-exporter serve`` on ``log`` with ``spec``, quiet, on 127.0.0.1:``port``."""
    address = f"127.0.0.1:{port}"
    return [sys.executable, "-m", "log_exporter", "serve", "--file", str(log), "--spec",
            str(spec), "--web.listen-address", address, "--log.level", "warn"]  # fmt: skip


def wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    """Until the exporter on ``port`` answers /readyz with 200 (it has caught up)."""
    end = time.monotonic() + 300
    while get_status(f"http://127.0.0.1:{port}/readyz") != 200:
        if time.monotonic() > end or proc.poll() is not None:
            raise SystemExit("the exporter did not become ready")
        time.sleep(0.02)


def serve_files(tmp: Path, lines: list[bytes]) -> tuple[Path, dict[Variant, Path]]:
    """The log of ``lines`` and the built-in spec with and without exemplars, in ``tmp``."""
    log = tmp / "sustainbot.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    specs = {"with": tmp / "with.toml", "without": tmp / "without.toml"}
    specs["with"].write_text(default_spec_text())
    specs["without"].write_text(without(default_spec_text()))
    return log, specs


def catchup_serve(rounds: int, lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log, specs = serve_files(Path(tmp), lines)

        def measure(variant: Variant) -> float:
            port = free_port()
            start = time.perf_counter()
            proc = subprocess.Popen(serve_command(log, specs[variant], port))
            try:
                wait_ready(proc, port)
                return len(lines) / (time.perf_counter() - start)
            finally:
                proc.terminate()
                proc.wait(timeout=60)

        samples = alternated(rounds, measure)
        title = f"log-exporter serve catch-up to /readyz, {len(lines):,} events (start included)"
        report(title, "events/s", samples, True)


def render(rounds: int, series: int, share: float, title: str) -> None:
    """Render times of one page, two ways: unchanged since the previous render (a scrape of an
    idle sidecar: every kept text is reused), and after an event on every series since it (the
    worst case for the kept texts: every exemplar is new and composed), fed outside the timing."""
    work = batches(wide_events(series, share, repeat=3))
    touch = batches(wide_events(series, share, repeat=1))
    registries, pipelines = {}, {}
    for variant in ("without", "with"):
        text = WIDE_SPEC if variant == "with" else without(WIDE_SPEC)
        spec = load_spec(text, "bench.toml")
        store = Store(spec.definitions)
        pipelines[variant] = Pipeline(compile_spec(spec), store)
        for batch in work:
            pipelines[variant].feed(batch)
        # serve's kind of registry, whose text scrapes collect no exemplars.
        registry = Registry()
        registry.register(StoreCollector(store))
        registries[variant] = registry
    # The encoders the server picks: Prometheus's Accept header, and none (the text format);
    # the OpenMetrics page gzipped as the server sends it to Prometheus (which asks for gzip);
    # and client_python's OpenMetrics encoder, which the server used before its own.
    om, plain = select_encoder(OPENMETRICS)[0], select_encoder("")[0]
    client_python = functools.partial(openmetrics_latest, escaping="allow-utf-8")

    def served(registry: CollectorRegistry) -> bytes:
        return gzip.compress(om(registry), compresslevel=1)

    encoders = (
        ("text", plain, True),
        ("OpenMetrics", om, True),
        ("OpenMetrics, gzipped as served", served, True),
        ("OpenMetrics, client_python", client_python, False),
    )
    for name, encode, both in encoders:
        for changed in (False, True) if both else (False,):

            def measure(
                variant: Variant,
                encode: Callable[[CollectorRegistry], bytes] = encode,
                changed: bool = changed,
            ) -> float:
                registry = registries[variant]
                encode(registry)  # what the previous scrape saw
                if changed:
                    for batch in touch:
                        pipelines[variant].feed(batch)
                start = time.perf_counter()
                encode(registry)
                return (time.perf_counter() - start) * 1000

            size = {v: len(encode(r)) / 1024 for v, r in registries.items()}
            samples = alternated(rounds, measure)
            sizes = f"{size['without']:.0f} KiB without, {size['with']:.0f} KiB with"
            when = "every series changed since" if changed else "unchanged since the last scrape"
            report(
                f"render {series:,} series, {title}, {name}, {when} ({sizes})", "ms", samples, False
            )


def memory(series: int) -> None:
    """Bytes the store holds after the same events, with and without exemplars, and what the
    collector keeps from one OpenMetrics scrape to the next (each series' texts)."""
    work = batches(wide_events(series, 0.5, repeat=3))
    om = select_encoder(OPENMETRICS)[0]
    held, texts = {}, {}
    for variant in ("without", "with"):
        text = WIDE_SPEC if variant == "with" else without(WIDE_SPEC)
        gc.collect()
        tracemalloc.start()
        store = fed(text, work)
        gc.collect()
        held[variant] = tracemalloc.get_traced_memory()[0]
        registry = CollectorRegistry()
        registry.register(StoreCollector(store))
        om(registry)
        gc.collect()
        texts[variant] = tracemalloc.get_traced_memory()[0] - held[variant]
        tracemalloc.stop()
        del store, registry
    extra = held["with"] - held["without"]
    print(f"store memory, {series:,} series, half histograms (tracemalloc, after the events)")
    print(f"  without {held['without'] / 2**20:.1f} MiB, with {held['with'] / 2**20:.1f} MiB: "
          f"+{extra / 2**20:.1f} MiB, {extra / series:.0f} bytes per series")  # fmt: skip
    kept = {v: f"{n / 2**20:.1f} MiB" for v, n in texts.items()}
    print(f"  kept between OpenMetrics scrapes: without {kept['without']}, with {kept['with']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="runs of each variant")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--serve-rounds", type=int, default=4)
    parser.add_argument("--render-only", action="store_true", help="only the render sections")
    args = parser.parse_args()
    if args.render_only:
        render(args.rounds, args.series, 0.0, "counters only")
        render(args.rounds, args.series, 0.5, "half histograms")
        return
    mix = make_lines(args.events)
    catchup_in_process(args.rounds, "built-in spec, SustainBot mix", default_spec_text(), mix)
    wide = wide_events(args.series, 0.0, repeat=max(1, args.events // args.series))
    catchup_in_process(args.rounds, f"{args.series:,} counter series", WIDE_SPEC, wide)
    render(args.rounds, args.series, 0.0, "counters only")
    render(args.rounds, args.series, 0.5, "half histograms")
    memory(args.series)
    catchup_serve(args.serve_rounds, mix)


if __name__ == "__main__":
    main()
