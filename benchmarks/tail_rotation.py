"""Tailer throughput: a burst read from disk, and a RotatingFileHandler writer rotating fast.

Run by hand: ``.venv/bin/python benchmarks/tail_rotation.py [--lines N] [--max-bytes B]``.
Prints lines/s and MiB/s for a catch-up read, then for a concurrent writer that rotates every
``--max-bytes`` bytes, checking that every line was read exactly once. The tailer has to stay
well above the serve target (150k events/s) so that parsing and the store set the pace.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter

from log_exporter.sources.tail import Tailer

LINE = (
    '{"timestamp":"2026-02-01T14:30:00.123Z","level":"INFO","logger":"sustainbot.events",'
    '"message":"aim.request","event":"aim.request","trace_id":"%032x","schema_version":1,'
    '"drag_mode":"draft","actor_role":"analyst","workflow_name":"esg_report","seq":%d}'
)

WRITER = textwrap.dedent(
    """
    import logging, logging.handlers, sys
    path, count, max_bytes, line = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=1000)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("w")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for i in range(count):
        log.info(line, i, i)
    """
)


def catch_up(directory: str, n: int) -> None:
    path = os.path.join(directory, "burst.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            f.write(LINE % (i, i) + "\n")
    size = os.path.getsize(path)
    tailer = Tailer(path)
    start = time.perf_counter()
    count = 0
    while count < n:
        count += len(tailer.poll().lines)
    elapsed = time.perf_counter() - start
    tailer.close()
    print(
        f"catch-up: {n} lines, {size / 2**20:.1f} MiB in {elapsed:.3f}s: "
        f"{n / elapsed:,.0f} lines/s, {size / 2**20 / elapsed:,.0f} MiB/s"
    )


def rotating(directory: str, n: int, max_bytes: int) -> None:
    path = os.path.join(directory, "rotating.jsonl")
    tailer = Tailer(path, rotation_grace=0.5)
    seen: Counter[bytes] = Counter()
    start = time.perf_counter()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, str(n), str(max_bytes), LINE.replace("%032x", "%d")]
    )
    while writer.poll() is None or sum(seen.values()) < n:
        batch = tailer.poll()
        seen.update(batch.lines)
        if not batch.bytes_read:
            time.sleep(0.001)
        if time.perf_counter() - start > 600:
            break
    elapsed = time.perf_counter() - start
    tailer.close()
    expected = Counter((LINE.replace("%032x", "%d") % (i, i)).encode() for i in range(n))
    missing, extra = expected - seen, seen - expected
    print(
        f"rotating every {max_bytes} bytes: {n} lines in {elapsed:.2f}s "
        f"({tailer.rotations} rotations): {n / elapsed:,.0f} lines/s; "
        f"missing {sum(missing.values())}, extra {sum(extra.values())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--rotating-lines", type=int, default=50_000)
    parser.add_argument("--max-bytes", type=int, default=64 << 10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        catch_up(directory, args.lines)
        rotating(directory, args.rotating_lines, args.max_bytes)


if __name__ == "__main__":
    main()
