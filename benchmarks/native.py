"""Native histograms: what observing costs against classic buckets, and what a protobuf scrape
costs against an OpenMetrics one, every variant alternated in one run.

Run by hand: ``.venv/bin/python benchmarks/native.py [--rounds N] [--events N] [--series N]``.

- Feed: CPU seconds (``time.process_time``) to observe ``--events`` durations into a histogram
  of 20 label sets, through the compiled spec program (the observation alone, events already
  parsed) and through ``Pipeline.feed`` (lines, parse included): 12 classic buckets (the
  workflow histogram's), native buckets only (factor 1.1, schema 3), and both.
- Render: a store of ``--series`` exposed series (half counters, half histograms with 11 classic
  buckets, as benchmarks/render.py), and the same store whose histograms also have native
  buckets: median ms of the OpenMetrics render and the protobuf render (the encoders the server
  picks for those Accept headers), bytes per exposed series, plain and gzipped; and the same
  protobuf page built with the ``protobuf`` package's message objects (the alternative to the
  hand-written encoder), for the choice between them.
- SustainBot: ``--events`` events as the app writes them through ``Pipeline.feed`` with the
  built-in spec, against the same spec without its ``native`` lines: what turning native buckets
  on costs per event of the real log.
"""

from __future__ import annotations

import argparse
import functools
import gc
import gzip
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
import render  # a sibling script, not a package

from log_exporter.native import spans_and_deltas
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import Registry, StoreCollector
from log_exporter.prometheus.families import StoreFamily
from log_exporter.prometheus.negotiate import select_encoder
from log_exporter.prometheus.protobuf import varint
from log_exporter.spec import Spec, compile_spec, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PROTOBUF = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
)
CLASSIC12 = "buckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]"
NATIVE = "native = { bucket_factor = 1.1 }"
FEED_VARIANTS = {"classic 12": CLASSIC12, "native": NATIVE, "both": f"{CLASSIC12}\n{NATIVE}"}

FEED_SPEC = """
[metrics.bench_seconds]
type = "histogram"
help = "Durations."
events = ["dur"]
labels = ["route"]
value = "seconds"
{extra}
"""


def feed_events(n: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    return [
        {"event": "dur", "route": f"/r/{rng.randrange(20)}", "seconds": rng.lognormvariate(-1, 1.5)}
        for _ in range(n)
    ]


def alternated(
    rounds: int, names: list[str], measure: Callable[[str], float]
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            gc.collect()
            out[name].append(measure(name))
    return out


def feed_seconds(specs: dict[str, Spec], batches: list[Batch], n: int, name: str) -> float:
    """Nanoseconds per line of ``Pipeline.feed`` over ``batches`` with spec ``name``."""
    store = Store(specs[name].definitions)
    pipeline = Pipeline(compile_spec(specs[name]), store)
    start = time.process_time()
    for batch in batches:
        pipeline.feed(batch)
    return (time.process_time() - start) / n * 1e9


def bench_feed(rounds: int, n: int) -> None:
    events = feed_events(n)
    lines = [orjson.dumps(e) for e in events]
    batches = [Batch(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    specs = {
        k: load_spec(FEED_SPEC.format(extra=v), "bench.toml") for k, v in FEED_VARIANTS.items()
    }

    def observe(name: str) -> float:
        store = Store(specs[name].definitions)
        apply = compile_spec(specs[name]).bind(store)["dur"]
        start = time.process_time()
        for ev in events:
            apply(ev)
        return (time.process_time() - start) / n * 1e9

    feed = functools.partial(feed_seconds, specs, batches, n)

    names = list(FEED_VARIANTS)
    for what, measure in (("observe (program only)", observe), ("Pipeline.feed (lines)", feed)):
        results = alternated(rounds, names, measure)
        print(f"feed, {what}, ns per event, median of {rounds} (min):")
        for name in names:
            print(
                f"  {name:11s} {statistics.median(results[name]):7.0f} ({min(results[name]):.0f})"
            )


def bench_sustainbot(rounds: int, n: int) -> None:
    """What the built-in spec's native buckets cost per SustainBot event: ``n`` events as the app
    writes them (``benchmarks/replay.py``'s generator) through ``Pipeline.feed``, with the
    built-in spec and with the same spec without its ``native`` lines."""
    from replay import generate  # a sibling script, not a package

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        generate(path, n)
        lines = path.read_bytes().splitlines()
    batches = [Batch(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    text = (Path(__file__).parents[1] / "log_exporter" / "specs" / "sustainbot.toml").read_text()
    specs = {
        "built-in": load_spec(text, "sustainbot.toml"),
        "no native": load_spec(re.sub(r"^native = .*$", "", text, flags=re.M), "classic.toml"),
    }

    results = alternated(
        rounds, list(specs), functools.partial(feed_seconds, specs, batches, len(lines))
    )
    print(f"SustainBot events, Pipeline.feed, ns per event, median of {rounds} (min):")
    for name, values in results.items():
        print(f"  {name:11s} {statistics.median(values):7.0f} ({min(values):.0f})")


def render_store(series: int, native: bool) -> tuple[Store, int]:
    hist_sets = (series // 2) // render.SERIES_PER_HISTOGRAM
    counters = series - hist_sets * render.SERIES_PER_HISTOGRAM
    # render.py's store, its histogram table (the spec's last) given native buckets too.
    spec = load_spec(render.SPEC + (NATIVE + "\n" if native else ""), "bench.toml")
    store = Store(spec.definitions)
    rng = random.Random(2)
    lines = [
        orjson.dumps({"event": "req", "route": f"/r/{i // 5}", "status": str(200 + i % 5)})
        for i in range(counters)
    ]
    # Ten observations per histogram, spread over a few decades: a few native buckets each.
    lines += [
        orjson.dumps({"event": "dur", "route": f"/h/{i}", "seconds": rng.lognormvariate(-2, 2)})
        for i in range(hist_sets)
        for _ in range(10)
    ]
    Pipeline(compile_spec(spec), store).feed(Batch(lines))
    return store, counters + hist_sets * render.SERIES_PER_HISTOGRAM


def with_protobuf_package(registry: Registry) -> bytes:
    """The protobuf page of the store's metrics built with the ``protobuf`` package's messages."""
    from tests.support.protobuf_decode import MetricFamily  # a dev dependency

    out = []
    for fam in registry.collect():
        if not isinstance(fam, StoreFamily):
            continue  # only the store's families: the bulk of the page
        snapshot = fam.parts[0][0]  # one label set: benchmarks' stores have no others
        d = snapshot.definition
        mf = MetricFamily(name=d.name, help=d.help, type=4 if d.kind == "histogram" else 0)
        for key, value in snapshot.series.items():
            m = mf.metric.add()
            for n, v in sorted(zip(d.labels, key, strict=True)):
                m.label.add(name=n, value=v)
            if d.kind == "counter":
                m.counter.value = value
                continue
            h = m.histogram
            total = 0
            for bound, count in zip([*d.buckets, float("inf")], value, strict=False):
                total += int(count)
                h.bucket.add(cumulative_count=total, upper_bound=bound)
            h.sample_count, h.sample_sum = total, value[-1]
            nb = snapshot.native.get(key)
            if nb is not None:
                h.schema, h.zero_threshold, h.zero_count = nb.schema, 2.938735877055719e-39, nb.zero
                spans, deltas = spans_and_deltas(nb.positive)
                for offset, length in spans:
                    h.positive_span.add(offset=offset, length=length)
                h.positive_delta.extend(deltas)
        data = mf.SerializeToString()
        out.append(varint(len(data)) + data)
    return b"".join(out)


def _registry(store: Store) -> Registry:
    registry = Registry()
    registry.register(StoreCollector(store, build_info=False))
    return registry


def _cold(encoder: Callable[[Any], bytes], store: Store, _registry_: Registry) -> bytes:
    return encoder(_registry(store))


def _timed(encoders: dict[str, Callable[[Any], bytes]], registry: Registry, name: str) -> float:
    start = time.perf_counter()
    encoders[name](registry)
    return (time.perf_counter() - start) * 1000


def bench_render(rounds: int, series: int) -> None:
    om, pb = select_encoder(OPENMETRICS)[0], select_encoder(PROTOBUF)[0]
    for native in (False, True):
        store, exposed = render_store(series, native)
        registry = _registry(store)
        encoders: dict[str, Callable[[Any], bytes]] = {
            "OpenMetrics": om,
            "protobuf": pb,
            # A new collector each time, nothing kept: every series' bytes written anew.
            "protobuf cold": functools.partial(_cold, pb, store),
            # Keeps nothing between scrapes either: compared with the cold one.
            "protobuf pkg": functools.partial(_cold, with_protobuf_package, store),
        }
        pages = {name: enc(registry) for name, enc in encoders.items()}

        results = alternated(rounds, list(encoders), functools.partial(_timed, encoders, registry))
        kind = "classic + native histograms" if native else "classic histograms"
        print(f"render, {exposed} exposed series (counters and {kind}), ms, median of {rounds}:")
        for name in encoders:
            page = pages[name]
            print(
                f"  {name:12s} {statistics.median(results[name]):7.1f} ms "
                f"({min(results[name]):.1f}); {len(page) / exposed:5.1f} B/series, "
                f"gzip {len(gzip.compress(page, 1)) / exposed:4.1f} B/series"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    bench_feed(args.rounds, args.events)
    bench_sustainbot(args.rounds, args.events)
    bench_render(args.rounds * 3, args.series)


if __name__ == "__main__":
    main()
