"""The whole serve path, measured from outside: a real ``log-exporter serve`` process.

Run by hand: ``.venv/bin/python benchmarks/serve_latency.py [--samples N] [--burst N]``.

* write-to-scrape latency: append one line, poll /metrics until its effect shows; p50/p99.
  Target p99 <= 100 ms.
* catch-up: append a burst of N realistic events in one write, time until /metrics counts them
  all; events/s. Target >= 150k events/s.
* RSS of the serve process (current and peak). Target <= 80 MB.

``--rotate-every SECONDS`` does the same while a second thread rotates the log the way
logrotate's ``create`` does (shift ``F.N`` to ``F.N+1``, rename ``F`` to ``F.1``, create a new
``F``) every SECONDS, from the latency samples to the end of the catch-up. The writer reopens the
path when it no longer names its file, as ``logging.handlers.WatchedFileHandler`` does. The
burst is written in ``--chunk`` events per write at ``--burst-rate`` events/s (well above what
the exporter reads, so the reader still sets the pace; one write would take a few tens of ms and
no rotation could fall inside it); the first rotation comes 0.1 s after the burst starts. Every
sample must be counted exactly once (more is a double count, a 15 s stall below is a loss); after
the catch-up and ``--settle`` seconds, the lines in all generations, the lines counted and the
lines written must be equal, or the run fails. ``--compare-rotation`` runs without rotation and
with rotation every second, both with the chunked writer (``--repeat`` times each, alternately),
and prints a table of the medians. ``--sample-gap`` spaces the latency samples so that rotations
fall among them.

Figures depend on the machine and its load; run on an idle machine and quote them with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PARSED = re.compile(rb'^log_exporter_lines_total\{result="parsed"\} (\S+)$', re.M)
LINES = re.compile(rb'^log_exporter_lines_total\{result="[^"]*"\} (\S+)$', re.M)
ROTATIONS = re.compile(rb"^log_exporter_file_rotations_total (\S+)$", re.M)
DEADLINE = 120.0
STALL = 15.0  # seconds without progress that mean lines were lost (rotation runs)


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


def scrape(url: str) -> tuple[float, float, float]:
    """(parsed lines, lines of every result, rotations noticed) from one scrape."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    parsed = PARSED.search(body)
    rotations = ROTATIONS.search(body)
    return (
        float(parsed.group(1)) if parsed else 0.0,
        sum(float(m.group(1)) for m in LINES.finditer(body)),
        float(rotations.group(1)) if rotations else 0.0,
    )


class Rotator(threading.Thread):
    """Rotates ``path`` as logrotate's ``create`` does, every ``interval`` seconds."""

    def __init__(self, path: Path, interval: float, first: float) -> None:
        super().__init__(daemon=True)
        self.path, self.interval, self.first = path, interval, first
        self.times: list[float] = []  # monotonic time of each rotation
        self.stop = threading.Event()

    def rotate(self) -> None:
        name = self.path.name
        numbered = []
        for sibling in self.path.parent.iterdir():
            suffix = sibling.name[len(name) + 1 :]
            if sibling.name.startswith(name + ".") and suffix.isdigit():
                numbered.append(int(suffix))
        for n in sorted(numbered, reverse=True):
            os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        os.rename(self.path, f"{self.path}.1")
        # The writer may have recreated it already (it reopens the path when it changed).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        self.times.append(time.monotonic())

    def run(self) -> None:
        due = time.monotonic() + self.first
        while not self.stop.wait(max(0.0, due - time.monotonic())):
            self.rotate()
            due += self.interval

    def halt(self) -> None:
        self.stop.set()
        self.join()


class Appender:
    """Appends to whatever file ``path`` names, reopening when it changed (WatchedFileHandler)."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd, self.ident = path, -1, (0, 0)

    def write(self, data: bytes) -> None:
        try:
            st = os.stat(self.path)
            current = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self.fd < 0 or current != self.ident:
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            st = os.fstat(self.fd)
            self.ident = (st.st_dev, st.st_ino)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def generations(log: Path) -> list[tuple[str, int]]:
    """(name, lines) of the log and its numbered siblings, newest first."""
    siblings = [p for p in log.parent.iterdir() if p.name.startswith(log.name + ".")]
    files = [log, *sorted(siblings, key=lambda p: int(p.name.rpartition(".")[2]))]
    return [(p.name, p.read_bytes().count(b"\n")) for p in files]


def wait_exact(url: str, target: int, log: Path, what: str) -> float:
    """Poll until exactly ``target`` lines are counted; fail loudly on more, or on a stall."""
    end = time.monotonic() + DEADLINE
    last, changed = -1.0, time.monotonic()
    while True:
        parsed, total, rotations = scrape(url)
        now = time.monotonic()
        if parsed > target or total > target:
            raise SystemExit(
                f"DOUBLE COUNT during {what}: {total:.0f} lines counted ({parsed:.0f} parsed), "
                f"{target} written; rotations noticed {rotations:.0f}; "
                f"generations (name, lines): {generations(log)}"
            )
        if parsed == target:
            return now
        if total != last:
            last, changed = total, now
        if now - changed > STALL or now > end:
            raise SystemExit(
                f"LOST LINES during {what}: {total:.0f} lines counted ({parsed:.0f} parsed), "
                f"{target} written, no progress for {now - changed:.0f} s; rotations noticed "
                f"{rotations:.0f}; generations (name, lines): {generations(log)}"
            )


@contextlib.contextmanager
def running_exporter(log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``log-exporter serve`` on ``log``, once /metrics answers: the process and that URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = subprocess.Popen(
        [sys.executable, "-m", "log_exporter", "serve", "--file", str(log),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
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
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)


def measure(
    args: argparse.Namespace, rotate_every: float | None, samples: list[bytes], chunks: list[bytes]
) -> dict[str, float]:
    """One run of the exporter: latency samples, then the catch-up burst."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sustainbot.jsonl"
        log.touch()
        with running_exporter(log) as (proc, url):
            rotator = None
            try:
                idle_rss, _ = rss_mb(proc.pid)
                writer = Appender(log)
                if rotate_every:
                    rotator = Rotator(log, rotate_every, rotate_every)
                    rotator.start()

                # Latency: one line at a time (distinct events, as the service writes), each waited
                # for before the next.
                latencies = []
                for i, line in enumerate(samples):
                    start = time.monotonic()
                    writer.write(line + b"\n")
                    latencies.append(wait_exact(url, i + 1, log, "the latency samples") - start)
                    time.sleep(args.sample_gap)
                sample_rotations = 0
                if rotator:
                    rotator.halt()
                    sample_rotations = len(rotator.times)

                # Catch-up: the burst in chunks, rotated every ``rotate_every`` seconds meanwhile.
                expected = args.samples + args.burst
                before = parsed_lines(url)
                if rotate_every:
                    rotator = Rotator(log, rotate_every, min(0.1, rotate_every))
                start = time.monotonic()
                if rotator:
                    rotator.start()
                for n, chunk in enumerate(chunks):
                    if args.burst_rate:  # paced, so that the write spans rotations
                        time.sleep(
                            max(0.0, start + n * args.chunk / args.burst_rate - time.monotonic())
                        )
                    writer.write(chunk)
                written = time.monotonic()
                writer.close()
                done = wait_exact(url, expected, log, "the catch-up")
                elapsed = done - start
                rss, peak = rss_mb(proc.pid)
                burst_rotations = []
                if rotator:
                    rotator.halt()
                    burst_rotations = rotator.times
                # Let late reads and rotated files' grace periods pass, then check exactness.
                time.sleep(args.settle)
                parsed, total, noticed = scrape(url)
                on_disk = generations(log)
            finally:
                if rotator and rotator.is_alive():
                    rotator.halt()

    in_files = sum(n for _, n in on_disk)
    if not (parsed == total == in_files == expected) or before != args.samples:
        raise SystemExit(
            f"NOT EXACT: {expected} lines written, {in_files} in {len(on_disk)} generations, "
            f"{total:.0f} counted ({parsed:.0f} parsed), {before:.0f} before the burst; "
            f"generations (name, lines): {on_disk}"
        )
    ms = [x * 1000 for x in latencies]
    return {
        "p50": statistics.median(ms),
        "p99": percentile(ms, 0.99),
        "max": max(ms),
        "elapsed": elapsed,
        "rate": args.burst / elapsed,
        "write": written - start,
        "idle_rss": idle_rss,
        "rss": rss,
        "peak": peak,
        "rotations": sample_rotations + len(burst_rotations),
        "in_write": sum(1 for t in burst_rotations if t < written),
        "in_burst": len(burst_rotations),
        "noticed": noticed,
        "generations": len(on_disk),
        "expected": expected,
        "counted": total,
        "in_files": in_files,
    }


def report(label: str, r: dict[str, float]) -> None:
    print(
        f"{label}: catch-up {r['rate']:,.0f} events/s ({r['elapsed']:.2f} s, written in "
        f"{r['write']:.2f} s), latency p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms max "
        f"{r['max']:.1f} ms, peak RSS {r['peak']:.1f} MiB, rotations {r['rotations']} made "
        f"({r['in_burst']} during the catch-up, {r['in_write']} inside the write) / "
        f"{r['noticed']:.0f} noticed; exact: {r['expected']:,} written, {r['in_files']:,} in "
        f"{r['generations']} files, {r['counted']:,.0f} counted",
        flush=True,
    )


def compare(args: argparse.Namespace, samples: list[bytes], chunks: list[bytes]) -> None:
    runs: dict[str, list[dict[str, float]]] = {"none": [], "1 s": []}
    for i in range(args.repeat):
        for label, every in (("none", None), ("1 s", 1.0)):
            runs[label].append(measure(args, every, samples, chunks))
            report(f"run {i + 1}, rotation {label}", runs[label][-1])

    def med(label: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[label])

    print(
        f"\nmedians of {args.repeat} run(s) each; {args.burst:,} events in chunks of "
        f"{args.chunk:,} written at {args.burst_rate:,.0f} events/s (0: unpaced), "
        f"{args.samples} latency samples {args.sample_gap * 1000:.0f} ms apart"
    )
    print(
        "| rotation | catch-up events/s | burst written in | latency p50 | latency p99 "
        "| peak RSS | rotations made / noticed (during the catch-up) | exact count |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label in runs:
        exact = f"{runs[label][0]['expected']:,} = counted, every run"
        print(
            f"| {label} | {med(label, 'rate'):,.0f} | {med(label, 'write'):.2f} s "
            f"| {med(label, 'p50'):.1f} ms "
            f"| {med(label, 'p99'):.1f} ms | {med(label, 'peak'):.1f} MiB "
            f"| {med(label, 'rotations'):.0f} / {med(label, 'noticed'):.0f} "
            f"({med(label, 'in_burst'):.0f}) | {exact} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--burst", type=int, default=500_000, help="events in the catch-up burst")
    parser.add_argument(
        "--rotate-every", type=float, metavar="SECONDS", help="rotate the log every SECONDS"
    )
    parser.add_argument(
        "--compare-rotation", action="store_true", help="without and with rotation every 1 s"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (--compare-rotation)")
    parser.add_argument(
        "--chunk", type=int, default=5_000, help="events per write of the burst (rotation runs)"
    )
    parser.add_argument(
        "--burst-rate",
        type=float,
        default=1_000_000,
        help="events/s the chunked burst is written at (rotation runs; 0: as fast as possible)",
    )
    parser.add_argument(
        "--sample-gap", type=float, default=0.0, help="seconds between latency samples"
    )
    parser.add_argument(
        "--settle", type=float, default=7.0, help="seconds to wait before the exactness check"
    )
    args = parser.parse_args()
    if args.rotate_every or args.compare_rotation:
        # Every event distinct, samples included: no two generations start with the same line.
        lines = make_lines(args.samples + args.burst)
        samples, burst = lines[: args.samples], lines[args.samples :]
        chunks = [
            b"".join(line + b"\n" for line in burst[i : i + args.chunk])
            for i in range(0, args.burst, args.chunk)
        ]
        del lines, burst
        if args.compare_rotation:
            compare(args, samples, chunks)
        else:
            every = args.rotate_every
            report(f"rotation every {every:g} s", measure(args, every, samples, chunks))
        return
    single(args)


def single(args: argparse.Namespace) -> None:
    """The run without rotation options: the burst appended in one write."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sustainbot.jsonl"
        log.touch()
        with running_exporter(log) as (proc, url):
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
