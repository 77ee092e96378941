"""Pipeline.feed's CPU per event, this checkout against another: typed decoding's gain (issue 27).

Run by hand:

    .venv/bin/python benchmarks/typed_decoding.py --against DIR [--events 200000] [--rounds 5]
        [--instructions]

DIR is another checkout of this project (the "before"). ``benchmarks/replay.py``'s generator
writes ``--events`` contract events once; each round runs one child process per checkout (its
own source tree first on ``PYTHONPATH``, this interpreter), the order turning every round, and
the child times ``Pipeline.feed`` over the whole file in 1,000-line batches into a new store
with the built-in spec (CPU time, ``time.process_time``, the best of two feeds). Also, in this
process: the decoding alone, ``orjson.loads`` against the spec's typed decoders (its single Struct
and its Struct per event type), per line.

``--instructions`` also counts instructions with ``valgrind --tool=cachegrind`` (the load of a
shared machine does not change them): the file's first 30,000 events fed three times into one
store against once, the difference divided by the 60,000 events of the second and third feeds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from replay import generate  # noqa: E402 - a sibling script, not a package

CHILD = """
import gc, sys, time
from log_exporter.pipeline import Pipeline
from log_exporter.spec import compile_spec
from log_exporter.spec.load import default_spec_text, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch
path, limit, feeds, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = open(path, "rb").read().split(b"\\n")[:-1][:limit]
work = [
    Batch(lines[i : i + 1000], bytes_read=sum(len(x) + 1 for x in lines[i : i + 1000]))
    for i in range(0, len(lines), 1000)
]
spec = load_spec(default_spec_text(), "bench.toml")
if mode == "count":
    # Into one store, as replay feeds: series already there after the first feed.
    pipeline = Pipeline(compile_spec(spec), Store(spec.definitions), exemplars=False)
    for _ in range(feeds):
        for b in work:
            pipeline.feed(b)
    sys.exit(0)
best = []
for _ in range(feeds):
    pipeline = Pipeline(compile_spec(spec), Store(spec.definitions))
    gc.collect()
    t = time.process_time()
    for b in work:
        pipeline.feed(b)
    best.append(time.process_time() - t)
print(min(best) / len(lines) * 1e9)
"""

I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def child(
    tree: Path, events: Path, limit: int, feeds: int, mode: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a child feeding with ``tree``'s exporter."""
    # PYTHONSAFEPATH: ``-c`` puts the working directory first on the path, a checkout too.
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONSAFEPATH="1")
    return [sys.executable, "-c", CHILD, str(events), str(limit), str(feeds), mode], env


def timed(tree: Path, events: Path, n: int) -> float:
    cmd, env = child(tree, events, n, 2, "time")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip())


def instructions(tree: Path, events: Path, feeds: int) -> int:
    cmd, env = child(tree, events, 30_000, feeds, "count")
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cachegrind-out-file=/dev/null", *cmd],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    m = I_REFS.search(out.stderr)
    assert m is not None, out.stderr[-2000:]
    return int(m.group(1).replace(",", ""))


def decode_only(events: Path, n: int) -> None:
    """orjson.loads against the typed decoders, per line, in this process (best of 3)."""
    import orjson

    from log_exporter.spec import compile_spec
    from log_exporter.spec.load import default_spec_text, load_spec

    lines = events.read_bytes().split(b"\n")[:-1][:n]
    typed = compile_spec(load_spec(default_spec_text(), "bench.toml")).typed
    for name, fn in (
        ("orjson.loads", orjson.loads),
        ("typed decode, one Struct", typed.decode_all),
        ("typed decode, a Struct per event type", typed.decode),
    ):
        best = []
        for _ in range(3):
            t = time.process_time()
            for raw in lines:
                fn(raw)
            best.append(time.process_time() - t)
        print(f"{name}: {min(best) / len(lines) * 1e9:.0f} ns per line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (medians)")
    parser.add_argument("--instructions", action="store_true", help="count them (valgrind)")
    args = parser.parse_args()
    trees = {"before": args.against.resolve(), "after": HERE.parent}
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        generate(events, args.events)
        n = len(events.read_bytes().split(b"\n")) - 1
        decode_only(events, n)
        times: dict[str, list[float]] = {name: [] for name in trees}
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                times[name].append(timed(trees[name], events, n))
        for name, xs in times.items():
            print(
                f"Pipeline.feed, {name}: {statistics.median(xs):.0f} ns per event "
                f"({min(xs):.0f}-{max(xs):.0f}, {n} events, {args.rounds} rounds)"
            )
        ratios = [b / a for b, a in zip(times["before"], times["after"], strict=True)]
        print(f"before / after, round by round: median {statistics.median(ratios):.3f}")
        if args.instructions:
            if shutil.which("valgrind") is None:
                sys.exit("--instructions needs valgrind")
            for name, tree in trees.items():
                one, three = instructions(tree, events, 1), instructions(tree, events, 3)
                print(f"instructions per event, {name}: {(three - one) / 60_000:,.0f}")


if __name__ == "__main__":
    main()
