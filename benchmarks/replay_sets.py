"""Replay over many file sets against one file of the same events: what ``--file`` patterns cost.

Run by hand (a minute or two):

    .venv/bin/python benchmarks/replay_sets.py [--events 400000] [--sets 10] [--files 10]
        [--rounds 3] [--jobs 1,2]

Generates ``--events`` contract events (``benchmarks/replay.py``'s generator) into one file, and
the same lines cut into ``--sets`` x ``--files`` files in a ``/var/log/pods``-shaped tree (each
set a pod directory, its files rotated generations ``0.log.N`` and ``0.log``, consecutive
stretches of the events dealt round-robin to the pods), then times, alternated round by round,
``replay FILE`` and ``replay --file '.../{namespace}_{pod}_{_}/app/*.log'`` (which reads every
pod's generations, each pod a set of its own), for each ``--jobs``. Both outputs are checked: the
sets' counts add up to the single file's (``log_exporter_lines_total``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))

from replay import generate, run_tree  # benchmarks/replay.py


def split_into_pods(whole: Path, root: Path, sets: int, files: int) -> None:
    """The lines of ``whole`` in ``sets`` pod directories of ``files`` generations each."""
    lines = whole.read_bytes().splitlines(keepends=True)
    chunk = max(1, len(lines) // (sets * files))
    per_pod: list[list[list[bytes]]] = [[] for _ in range(sets)]
    for i, start in enumerate(range(0, len(lines), chunk)):
        per_pod[i % sets].append(lines[start : start + chunk])
    for pod, chunks in enumerate(per_pod):
        directory = root / f"bench_pod-{pod}_uid{pod}" / "app"
        directory.mkdir(parents=True)
        # Consecutive chunks of one pod into its generations, oldest the highest number.
        gens: list[list[bytes]] = [[] for _ in range(files)]
        for j, c in enumerate(chunks):
            gens[min(j * files // max(len(chunks), 1), files - 1)] += c
        for g, data in enumerate(gens):
            name = "0.log" if g == files - 1 else f"0.log.{files - 1 - g}"
            (directory / name).write_bytes(b"".join(data))


def parsed_lines(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "log_exporter_lines_total" and s.labels.get("result") == "parsed":
                total += s.value
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="1,2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-sets-") as tmp:
        work = Path(tmp)
        whole = work / "events.jsonl"
        events = generate(whole, args.events).lines
        root = work / "pods"
        split_into_pods(whole, root, args.sets, args.files)
        pattern = str(root / "{namespace}_{pod}_{_}" / "app" / "*.log")
        exe = [sys.executable, "-m", "log_exporter", "replay", "--quiet"]
        contenders = {}
        for jobs in args.jobs.split(","):
            contenders[f"one file, --jobs {jobs}"] = [*exe, "--jobs", jobs, str(whole)]
            contenders[f"{args.sets} sets x {args.files} files, --jobs {jobs}"] = [
                *exe,
                "--jobs",
                jobs,
                "--file",
                pattern,
            ]
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                out = work / "out.prom"
                m = run_tree(contenders[name], out)
                walls[name].append(m.wall)
                got = parsed_lines(out.read_text())
                if got != events:
                    raise SystemExit(f"{name}: {got} events, not {events}")
        print(f"{events} events; wall seconds per run, median; events/s at the median")
        for name in names:
            med = statistics.median(walls[name])
            runs = ", ".join(f"{w:.2f}" for w in walls[name])
            print(f"| {name} | {med:.2f} | {runs} | {events / med:,.0f} |")


if __name__ == "__main__":
    main()
