"""Catch-up speed of the data path: Pipeline.feed over contract events, against bare orjson.loads.

Run by hand: ``.venv/bin/python benchmarks/pipeline_catchup.py [--events N] [--batch B]``.
Target: >= 150k events/s through the whole serve path; the gap to the orjson.loads figure is the
cost of the spec program and the store.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import orjson

from log_exporter.pipeline import Pipeline, Steps
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.store import Store
from log_exporter.values import Batch

DRAG = ["draft", "research", "analysis", "grunt", "execute"]
WORKFLOWS = ["esg_report", "supplier_audit", "carbon_ledger", "policy_review"]
ROUTES = [("GET", "/api/v1/aim"), ("POST", "/api/v1/workflows/<name>"), ("GET", "/healthz")]


def make_lines(n: int, seed: int = 7) -> list[bytes]:
    """A realistic mix: each request brackets a few governance events, as SustainBot writes."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    t = 1_769_956_200.0

    def emit(event: str, **fields: object) -> None:
        nonlocal t
        t += 0.001
        ms = int(t * 1000) % 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"
        record = {
            "timestamp": stamp,
            "level": "INFO",
            "logger": "sustainbot.events",
            "message": event,
            "event": event,
            "trace_id": f"{rng.getrandbits(128):032x}",
            "schema_version": 1,
            **fields,
        }
        lines.append(orjson.dumps(record))

    while len(lines) < n:
        method, endpoint = rng.choice(ROUTES)
        drag = rng.choice(DRAG)
        workflow = rng.choice(WORKFLOWS)
        emit("http.request_started", method=method, endpoint=endpoint)
        emit("auth.jwt_validated", outcome="success")
        emit("aim.request", drag_mode=drag, actor_role="analyst", workflow_name=workflow)
        outcome = rng.choices(["success", "failure", "rejected"], [8, 1, 1])[0]
        extra = {"error_type": "TimeoutError"} if outcome == "failure" else {}
        emit(
            "workflow.completed",
            workflow_name=workflow,
            outcome=outcome,
            drag_mode=drag,
            duration_seconds=round(rng.expovariate(1 / 3), 3),
            **extra,
        )
        emit("audit.entry", outcome=outcome, drag_mode=drag, actor="A. Person", mission="m")
        if rng.random() < 0.2:
            emit(
                "prescriptive_language.detected",
                drag_mode=drag,
                phrase_type="imperative",
                phrase="you must",
            )
        emit(
            "http.request",
            method=method,
            endpoint=endpoint,
            status_code=rng.choice([200, 200, 200, 201, 404, 500]),
            duration_seconds=round(rng.expovariate(1 / 0.05), 4),
        )
    return lines[:n]


def best_of(runs: int, fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1000, help="lines per Batch")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    lines = make_lines(args.events)
    size = sum(len(x) + 1 for x in lines)
    batches = [
        Batch(
            lines[i : i + args.batch], bytes_read=sum(len(x) + 1 for x in lines[i : i + args.batch])
        )
        for i in range(0, len(lines), args.batch)
    ]
    spec = load_default_spec()
    program = compile_spec(spec)

    def loads_only() -> None:
        loads = orjson.loads
        for raw in lines:
            loads(raw)

    def feed_all() -> None:
        pipeline = Pipeline(program, Store(spec.definitions))
        for batch in batches:
            pipeline.feed(batch)

    def in_steps() -> None:
        # Replay's path: line by line in event time, a snapshot at every 60 s step (as
        # ``replay``'s default step), bound without exemplars as replay is.
        store = Store(spec.definitions)
        pipeline = Pipeline(program, store, exemplars=False)

        def cross(t: float) -> float:
            store.snapshot_unlocked(exemplars=False)
            return (t // 60 + 1) * 60

        steps = Steps(cross)
        for batch in batches:
            pipeline.feed_steps(batch, steps)
        pipeline.end_file(steps)

    n = len(lines)
    t_loads = best_of(args.runs, loads_only)
    t_feed = best_of(args.runs, feed_all)
    t_replay = best_of(args.runs, in_steps)
    print(f"{n} events, {size / n:.0f} bytes/line on average, batches of {args.batch}")
    print(f"orjson.loads only : {n / t_loads:>10,.0f} events/s")
    print(f"Pipeline.feed     : {n / t_feed:>10,.0f} events/s ({t_feed / t_loads:.2f}x loads time)")
    print(f"feed_steps, 60 s  : {n / t_replay:>10,.0f} events/s ({t_replay / t_loads:.2f}x)")


if __name__ == "__main__":
    main()
