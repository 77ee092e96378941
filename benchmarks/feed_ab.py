"""The feed cost of exemplars before and after a change: this checkout against another one.

Run by hand: ``.venv/bin/python benchmarks/feed_ab.py --against DIR [--rounds N]
[--serve-rounds N]``, DIR being another checkout of this project (the "before", e.g. an export
of main). ``benchmarks/exemplars.py`` measures with against without in one run; this measures
the change to that cost in one run too, every variant alternated (the order reversed each
round), so a machine getting busier or quieter favours none.

- ``Pipeline.feed`` in this process, CPU time (``time.process_time``: other processes on a
  shared machine disturb it less than the wall clock): without exemplars, with them through
  DIR's spec code generator, with them through this checkout's. DIR's
  ``log_exporter/spec/codegen.py`` is loaded beside this checkout's package, so only the
  generated code differs.
- ``log-exporter serve`` catch-up to ``/readyz`` (the issue's measure), each checkout's own
  process, with and without exemplars: wall time and the process's CPU seconds.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from exemplars import (
    WIDE_SPEC,
    batches,
    serve_command,
    serve_files,
    wait_ready,
    wide_events,
    without,
)
from pipeline_catchup import make_lines
from render import free_port

from log_exporter.pipeline import Pipeline
from log_exporter.spec import codegen, compile_spec, default_spec_text, load_spec, program
from log_exporter.store import Store

HERE = Path(__file__).resolve().parent.parent


def load_codegen(checkout: Path) -> ModuleType:
    path = checkout / "log_exporter" / "spec" / "codegen.py"
    spec = importlib.util.spec_from_file_location("codegen_before", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a spec code generator")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alternated(
    rounds: int, names: list[str], measure: Callable[[str], float]
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            out[name].append(measure(name))
    return out


def report(
    title: str, unit: str, samples: dict[str, list[float]], pairs: list[tuple[str, str]]
) -> None:
    """Medians and every run; for each (a, b) of ``pairs``, b's extra time over a's, from the
    medians and as the median of each round's own ratio. ``unit`` "s" is a time, else a rate."""
    print(title)
    for name, s in samples.items():
        runs = " ".join(f"{x:,.3f}" if unit == "s" else f"{x / 1000:,.0f}k" for x in s)
        med = statistics.median(s)
        shown = f"{med:,.3f} s" if unit == "s" else f"{med / 1000:,.0f}k {unit}"
        print(f"  {name:<28} median {shown:>16}   runs: {runs}")

    def cost(a: float, b: float) -> float:
        return (b / a if unit == "s" else a / b) * 100 - 100

    for a, b in pairs:
        rounds = zip(samples[a], samples[b], strict=True)
        per = statistics.median(cost(x, y) for x, y in rounds)
        med = cost(statistics.median(samples[a]), statistics.median(samples[b]))
        print(f"  {b} against {a}: {med:+.1f}% time (medians), {per:+.1f}% (per round)")


def feed_in_process(
    rounds: int, title: str, spec_text: str, lines: list[bytes], before: ModuleType
) -> None:
    work = batches(lines)
    after = codegen.store_function
    variants: dict[str, tuple[str, Any]] = {
        "without exemplars": (without(spec_text), after),
        "with, before": (spec_text, before.store_function),
        "with, after": (spec_text, after),
    }

    def measure(name: str) -> float:
        text, store_function = variants[name]
        # program.py calls the store_function it imported: rebinding its name swaps the generator.
        setattr(program, "store_function", store_function)  # noqa: B010
        try:
            spec = load_spec(text, "bench.toml")
            store = Store(spec.definitions)
            pipeline = Pipeline(compile_spec(spec), store)
        finally:
            setattr(program, "store_function", after)  # noqa: B010
        start = time.process_time()
        for batch in work:
            pipeline.feed(batch)
        return len(lines) / (time.process_time() - start)

    samples = alternated(rounds, list(variants), measure)
    pairs = [
        ("without exemplars", "with, before"),
        ("without exemplars", "with, after"),
        ("with, before", "with, after"),
    ]
    report(f"{title}: Pipeline.feed, {len(lines):,} events, CPU time", "events/s", samples, pairs)


def serve_catchup(rounds: int, lines: list[bytes], before: Path) -> None:
    checkouts = {"before": before, "after": HERE}
    with tempfile.TemporaryDirectory() as tmp:
        log, specs = serve_files(Path(tmp), lines)
        cpu: dict[str, list[float]] = {}

        def measure(name: str) -> float:
            checkout, variant = name.split(", ")
            port = free_port()
            env = {**os.environ, "PYTHONPATH": str(checkouts[checkout])}
            start = time.perf_counter()
            proc = subprocess.Popen(
                serve_command(log, specs[variant], port), cwd=checkouts[checkout], env=env
            )
            try:
                wait_ready(proc, port)
                rate = len(lines) / (time.perf_counter() - start)
            finally:
                proc.terminate()
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode = 0  # reaped by wait4
            cpu.setdefault(name, []).append(usage.ru_utime + usage.ru_stime)
            return rate

        names = ["before, without", "before, with", "after, without", "after, with"]
        samples = alternated(rounds, names, measure)
        pairs = [("before, without", "before, with"), ("after, without", "after, with")]
        title = f"log-exporter serve catch-up to /readyz, {len(lines):,} events (start included)"
        report(f"{title}, wall", "events/s", samples, pairs)
        report(f"{title}, the process's CPU seconds", "s", {n: cpu[n] for n in names}, pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout (before)")
    parser.add_argument("--rounds", type=int, default=12, help="runs of each in-process variant")
    parser.add_argument("--serve-rounds", type=int, default=8, help="runs of each serve variant")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    before = load_codegen(args.against)
    mix = make_lines(args.events)
    feed_in_process(args.rounds, "built-in spec, SustainBot mix", default_spec_text(), mix, before)
    repeat = max(1, args.events // args.series)
    wide = wide_events(args.series, 0.0, repeat=repeat)
    feed_in_process(args.rounds, f"{args.series:,} counter series", WIDE_SPEC, wide, before)
    half = wide_events(args.series, 0.5, repeat=repeat)
    feed_in_process(
        args.rounds, f"{args.series:,} series, half histograms", WIDE_SPEC, half, before
    )
    if args.serve_rounds:
        serve_catchup(args.serve_rounds, mix, args.against)


if __name__ == "__main__":
    main()
