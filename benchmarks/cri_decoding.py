"""What reading a container runtime's (CRI) log costs over plain JSON, on the same events.

Run by hand: ``.venv/bin/python benchmarks/cri_decoding.py [--lines N] [--rounds N]``.

The same SustainBot events (``pipeline_catchup.make_lines``) as a JSONL file and as the CRI lines
the runtime writes for them (time, stream, ``F``, the event), and a CRI variant where one line
in 50 is a 40 KiB event cut into 16 KiB ``P`` chunks with a stderr line between the chunks.
Each is framed in 1 MiB reads (``LineFramer`` or ``CriFramer``) and fed through
``Pipeline.feed`` with the built-in spec, in CPU time (``time.process_time``), every variant
alternated, the order reversed each round, so a machine getting busier favours none. The
framing alone and the whole feed are reported separately: lines per second, the median round.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_catchup import make_lines

from log_exporter.pipeline import Pipeline
from log_exporter.sources.cri import CriFramer
from log_exporter.sources.framing import LineFramer
from log_exporter.spec import compile_spec, default_spec_text, load_spec
from log_exporter.store import Store
from log_exporter.values import Batch

READ = 1 << 20
SPLIT = 16 * 1024


def cri(lines: list[bytes], *, split_every: int = 0) -> bytes:
    """The runtime's file for ``lines``; with ``split_every``, every such line padded to 40 KiB
    and cut into P chunks, a stderr line between its chunks."""
    out = []
    for n, line in enumerate(lines):
        stamp = b"2026-12-07T10:15:%02d.%09dZ" % (n // 10**6 % 60, n % 10**9)
        if split_every and n % split_every == 0:
            big = line[:-1] + b',"padding":"' + b"x" * (40 << 10) + b'"}'
            pieces = [big[i : i + SPLIT] for i in range(0, len(big), SPLIT)]
            for k, piece in enumerate(pieces):
                tag = b"F" if k == len(pieces) - 1 else b"P"
                out.append(stamp + b" stdout " + tag + b" " + piece + b"\n")
                if tag == b"P":
                    out.append(stamp + b" stderr F a library's warning\n")
        else:
            out.append(stamp + b" stdout F " + line + b"\n")
    return b"".join(out)


def frame(data: bytes, framer: LineFramer | CriFramer, is_cri: bool) -> list[Batch]:
    batches = []
    for i in range(0, len(data), READ):
        chunk = data[i : i + READ]
        lines, oversized = framer.feed(chunk)
        batches.append(Batch(lines, oversized=oversized, bytes_read=len(chunk), cri=is_cri))
    return batches


def measure(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    events = make_lines(args.lines)
    inputs = {
        "json": (b"".join(e + b"\n" for e in events), False),
        "cri": (cri(events), True),
        "cri, 1 in 50 split": (cri(events, split_every=50), True),
    }
    program = compile_spec(load_spec(default_spec_text(), "built-in"))
    times: dict[str, dict[str, list[float]]] = {k: {"frame": [], "feed": []} for k in inputs}
    for r in range(args.rounds):
        order = list(inputs) if r % 2 == 0 else list(reversed(inputs))
        for name in order:
            data, is_cri = inputs[name]

            def new(is_cri: bool = is_cri) -> LineFramer | CriFramer:
                return CriFramer(1 << 20) if is_cri else LineFramer(1 << 20)

            def framing(data: bytes = data, is_cri: bool = is_cri) -> object:
                return frame(data, new(), is_cri)

            times[name]["frame"].append(measure(framing))
            batches = frame(data, new(), is_cri)
            pipeline = Pipeline(program, Store(program.spec.definitions))

            def feed(pipeline: Pipeline = pipeline, batches: list[Batch] = batches) -> None:
                for batch in batches:
                    pipeline.feed(batch)

            times[name]["feed"].append(measure(feed))
            assert pipeline.store.lines["parsed"] == len(events), name
    print(f"{len(events)} events, {args.rounds} rounds alternated, median CPU seconds")
    print(f"{'input':<22}{'bytes':>12}{'framing':>12}{'feed':>10}{'lines/s (frame+feed)':>24}")
    for name, (data, _) in inputs.items():
        f = statistics.median(times[name]["frame"])
        d = statistics.median(times[name]["feed"])
        print(f"{name:<22}{len(data):>12}{f:>12.3f}{d:>10.3f}{len(events) / (f + d):>24,.0f}")


if __name__ == "__main__":
    main()
