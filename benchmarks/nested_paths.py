"""What field paths cost: the same events flat, and nested one level down under a spec with paths.

Run by hand (a minute or two):

    .venv/bin/python benchmarks/nested_paths.py [--events 200000] [--rounds 5]

Generates SustainBot's contract events (``benchmarks/replay.py``'s generator), writes each once as
it is and once wrapped as ``{"e": EVENT}``, and rewrites the built-in spec so every field it names
(labels, values, matches, exemplars, partitions, CloudWatch dimensions, the event type and the
timestamp, through ``[input]``) is the path ``e.FIELD``. Both go through ``Pipeline.feed`` in
batches, as serve feeds them, in alternated rounds; the two stores must end equal. Target: the
nested case costs at most 15% more than the flat one.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay import generate

from log_exporter.pipeline import Pipeline
from log_exporter.spec import Spec, compile_spec, load_default_spec
from log_exporter.spec.model import InputSpec, LabelSpec
from log_exporter.store import Store
from log_exporter.values import Batch

BATCH = 1000


def nested_spec(spec: Spec, key: str) -> Spec:
    """``spec`` with every field it reads moved under ``key``."""

    def label(lb: LabelSpec) -> LabelSpec:
        return dataclasses.replace(lb, field=f"{key}.{lb.field}")

    metrics = []
    for m in spec.metrics:
        rules = tuple(
            dataclasses.replace(
                r,
                match=tuple(dataclasses.replace(t, path=(key, *t.path)) for t in r.match),
                value=None if r.value is None else f"{key}.{r.value}",
            )
            for r in m.rules
        )
        cw = m.cloudwatch
        if cw is not None:
            dims = tuple(dataclasses.replace(d, source=label(d.source)) for d in cw.dimensions)  # type: ignore[arg-type]
            cw = dataclasses.replace(cw, dimensions=dims)
        metrics.append(
            dataclasses.replace(
                m,
                labels=tuple(label(lb) for lb in m.labels),
                rules=rules,
                cloudwatch=cw,
                exemplar=None
                if m.exemplar is None
                else dataclasses.replace(m.exemplar, field=f"{key}.{m.exemplar.field}"),
                partition=None if m.partition is None else label(m.partition),
            )
        )
    return Spec(
        spec.source, tuple(metrics), InputSpec((key, "event"), (key, "timestamp"), "rfc3339")
    )


def feed(spec: Spec, batches: list[list[bytes]]) -> tuple[float, Store]:
    store = Store(spec.definitions)
    pipeline = Pipeline(compile_spec(spec), store)
    t0 = time.perf_counter()
    for lines in batches:
        pipeline.feed(Batch(lines, bytes_read=0))
    return time.perf_counter() - t0, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "events.jsonl"
        generate(log, args.events)
        flat = log.read_bytes().splitlines()
    nested = [orjson.dumps({"e": orjson.loads(raw)}) for raw in flat]
    flat_spec = load_default_spec()
    specs = {"flat": (flat_spec, flat), "nested": (nested_spec(flat_spec, "e"), nested)}
    times: dict[str, list[float]] = {name: [] for name in specs}
    stores = {}
    for r in range(args.rounds):
        for name in list(specs)[r % 2 :] + list(specs)[: r % 2]:  # alternated
            spec, lines = specs[name]
            batches = [lines[i : i + BATCH] for i in range(0, len(lines), BATCH)]
            elapsed, stores[name] = feed(spec, batches)
            times[name].append(elapsed)
    a, b = (stores[n].snapshot() for n in ("flat", "nested"))
    if [m.series for m in a.metrics] != [m.series for m in b.metrics]:
        raise SystemExit("the nested events did not give the flat events' series")
    flat_s, nested_s = (statistics.median(times[n]) for n in ("flat", "nested"))
    print(f"{len(flat)} events, median of {args.rounds} alternated rounds")
    print(f"flat   {flat_s:.3f} s  {len(flat) / flat_s:,.0f} events/s")
    print(f"nested {nested_s:.3f} s  {len(flat) / nested_s:,.0f} events/s")
    print(f"nested costs {100 * (nested_s / flat_s - 1):+.1f}% (target: at most +15%)")


if __name__ == "__main__":
    main()
