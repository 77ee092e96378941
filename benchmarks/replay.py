"""Replay throughput against mtail, a naive client_python loop and the orjson parse-only limit.

Run by hand (takes a few minutes, needs the Debian package ``mtail``):

    .venv/bin/python benchmarks/replay.py [--events 400000] [--big 4000000] [--keep DIR]

Generates one file of contract events (keys always in the same order, so mtail's regular
expressions work; every value inside the contract's closed sets), then runs each contender as a
whole process on it, side by side, timing wall clock and peak RSS of the child:

- ``log-exporter replay --format prometheus`` (its output checked exact against a model computed
  here while generating, independently of log-exporter);
- ``mtail --one_shot`` with ``benchmarks/mtail/sustainbot.mtail`` (its counts checked too);
- a naive baseline: ``json.loads`` and prometheus_client ``labels().inc()/observe()`` per event;
- the parse-only limit: ``orjson.loads`` on every line and nothing else.

Then replay's peak RSS on a file of ``--big`` events, which must stay flat.
Targets: replay >= 4x mtail's events/s (aim: >= 8x, close to the parse-only limit).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
MTAIL_PROGS = HERE / "mtail"

DRAG = ("draft", "research", "analysis", "grunt", "execute")
WORKFLOWS = ("esg_report", "supplier_audit", "carbon_ledger", "policy_review")
ROUTES = (("GET", "/api/v1/aim"), ("POST", "/api/v1/workflows/<name>"), ("GET", "/healthz"))
WORKFLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

Key = tuple[str, frozenset[tuple[str, str]]]
PID = 4242  # one app process writes the file


class Model:
    """Expected final values, kept while generating: the contract's rules, nothing shared."""

    def __init__(self) -> None:
        self.values: dict[Key, float] = defaultdict(float)
        self.active = 0
        self.lines = 0

    def inc(self, name: str, by: float = 1.0, /, **labels: str) -> None:
        self.values[(name, frozenset(labels.items()))] += by

    def observe(self, name: str, value: float, buckets: Sequence[float], **labels: str) -> None:
        for le in buckets:
            if value <= le:
                self.inc(f"{name}_bucket", le=repr(float(le)), **labels)
            else:
                self.inc(f"{name}_bucket", 0.0, le=repr(float(le)), **labels)
        self.inc(f"{name}_bucket", le="inf", **labels)
        self.inc(f"{name}_count", **labels)
        self.inc(f"{name}_sum", value, **labels)


def generate(path: Path, n: int, seed: int = 7) -> Model:
    """Write ``n`` events to ``path``: each request brackets a few governance events."""
    rng = random.Random(seed)
    model = Model()
    t_ms = 1_769_956_200_000
    out: list[bytes] = []
    written = 0
    with path.open("wb") as f:

        def emit(event: str, fields: dict[str, object]) -> None:
            nonlocal t_ms, written
            t_ms += 7
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ms // 1000))
            record: dict[str, object] = {
                "timestamp": f"{stamp}.{t_ms % 1000:03d}Z",
                "level": "INFO",
                "logger": "sustainbot.events",
                "message": event,
                "event": event,
                "trace_id": f"{rng.getrandbits(64):016x}",
                "schema_version": 1,
            }
            record.update(fields)
            out.append(orjson.dumps(record))
            written += 1
            model.lines += 1
            if len(out) >= 10_000:
                f.write(b"\n".join(out) + b"\n")
                out.clear()

        # As the app writes them: its process id on the app and HTTP events (the spec keeps
        # active requests per process), the app's signing algorithm on app.started.
        emit(
            "app.started",
            {
                "version": "1.0.0",
                "phase": "phase-2",
                "compliance_spec": "CSRD-2025",
                "pid": PID,
                "auth_algorithm": "RS256",
            },
        )
        while written < n:
            method, endpoint = rng.choice(ROUTES)
            drag, wf = rng.choice(DRAG), rng.choice(WORKFLOWS)
            emit("http.request_started", {"method": method, "endpoint": endpoint, "pid": PID})
            model.active += 1
            ok = rng.random() < 0.9
            emit("auth.jwt_validated", {"outcome": "success" if ok else "failure"})
            model.inc("sustainbot_jwt_validations_total", outcome="success" if ok else "failure")
            if not ok:
                emit("auth.failed", {"failure_type": "expired_token"})
                model.inc("sustainbot_authentication_failures_total", failure_type="expired_token")
            emit(
                "aim.request",
                {"drag_mode": drag, "actor_role": "analyst", "workflow_name": wf, "actor": "J D"},
            )
            model.inc(
                "sustainbot_aim_requests_total",
                drag_mode=drag,
                actor_role="analyst",
                workflow_name=wf,
            )
            if rng.random() < 0.1:
                emit("aim.validation_failed", {"failure_reason": "missing_aim", "drag_mode": drag})
                model.inc(
                    "sustainbot_aim_validation_failures_total",
                    failure_reason="missing_aim",
                    drag_mode=drag,
                )
            outcome = rng.choices(("success", "failure", "rejected"), (8, 1, 1))[0]
            duration = max(round(rng.expovariate(1 / 4), 3), 0.001)
            fields: dict[str, object] = {
                "workflow_name": wf,
                "outcome": outcome,
                "drag_mode": drag,
                "duration_seconds": duration,
            }
            if outcome == "failure":
                fields["error_type"] = "TimeoutError"
                model.inc(
                    "sustainbot_workflow_execution_errors_total",
                    workflow_name=wf,
                    error_type="TimeoutError",
                )
            emit("workflow.completed", fields)
            model.observe(
                "sustainbot_governed_workflow_duration_seconds",
                duration,
                WORKFLOW_BUCKETS,
                workflow_name=wf,
                outcome=outcome,
                drag_mode=drag,
            )
            model.inc("sustainbot_workflow_executions_total", workflow_name=wf, outcome=outcome)
            emit(
                "audit.entry",
                {"outcome": outcome, "drag_mode": drag, "actor": "J D", "decision": "approved"},
            )
            model.inc("sustainbot_audit_log_entries_total", outcome=outcome, drag_mode=drag)
            if rng.random() < 0.05:
                emit(
                    "prescriptive_language.detected",
                    {"drag_mode": drag, "phrase_type": "must", "phrase": "you must"},
                )
                model.inc(
                    "sustainbot_prescriptive_language_detections_total",
                    drag_mode=drag,
                    phrase_type="must",
                )
            status = 200 if ok else 401
            # Never exactly 0: mtail 3.0 counts a 0 observation in _count but in no bucket, and the
            # comparison is about speed on equivalent work, not about that difference.
            http_duration = max(round(rng.expovariate(1 / 0.08), 4), 0.0001)
            emit(
                "http.request",
                {
                    "method": method,
                    "endpoint": endpoint,
                    "status_code": status,
                    "duration_seconds": http_duration,
                    "pid": PID,
                },
            )
            model.inc(
                "sustainbot_http_requests_total",
                method=method,
                endpoint=endpoint,
                status_code=str(status),
            )
            model.observe(
                "sustainbot_http_request_duration_seconds",
                http_duration,
                HTTP_BUCKETS,
                method=method,
                endpoint=endpoint,
            )
            model.active = max(model.active - 1, 0)
        if out:
            f.write(b"\n".join(out) + b"\n")
    model.values[("sustainbot_active_requests", frozenset())] = float(model.active)
    model.values[
        ("sustainbot_app_info", frozenset({"version": "1.0.0", "phase": "phase-2",
                                           "compliance_spec": "CSRD-2025"}.items()))
    ] = 1.0  # fmt: skip
    return model


NAIVE = r"""
import json, sys
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
r = CollectorRegistry()
P = "sustainbot_"
aim = Counter(P + "aim_requests", "", ["drag_mode", "actor_role", "workflow_name"], registry=r)
val = Counter(P + "aim_validation_failures", "", ["failure_reason", "drag_mode"], registry=r)
wfd = Histogram(P + "governed_workflow_duration_seconds", "",
                ["workflow_name", "outcome", "drag_mode"], registry=r,
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
wfe = Counter(P + "workflow_executions", "", ["workflow_name", "outcome"], registry=r)
err = Counter(P + "workflow_execution_errors", "", ["workflow_name", "error_type"], registry=r)
aud = Counter(P + "audit_log_entries", "", ["outcome", "drag_mode"], registry=r)
pre = Counter(P + "prescriptive_language_detections", "", ["drag_mode", "phrase_type"], registry=r)
jwt = Counter(P + "jwt_validations", "", ["outcome"], registry=r)
auf = Counter(P + "authentication_failures", "", ["failure_type"], registry=r)
act = Gauge(P + "active_requests", "", registry=r)
req = Counter(P + "http_requests", "", ["method", "endpoint", "status_code"], registry=r)
hd = Histogram(P + "http_request_duration_seconds", "", ["method", "endpoint"], registry=r,
               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
active = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        e = json.loads(line)
        k = e["event"]
        if k == "aim.request":
            aim.labels(e["drag_mode"], e["actor_role"], e["workflow_name"]).inc()
        elif k == "aim.validation_failed":
            val.labels(e["failure_reason"], e["drag_mode"]).inc()
        elif k == "workflow.completed":
            wf, outcome = e["workflow_name"], e["outcome"]
            wfd.labels(wf, outcome, e["drag_mode"]).observe(e["duration_seconds"])
            wfe.labels(wf, outcome).inc()
            if outcome == "failure":
                err.labels(wf, e["error_type"]).inc()
        elif k == "audit.entry":
            aud.labels(e["outcome"], e["drag_mode"]).inc()
        elif k == "prescriptive_language.detected":
            pre.labels(e["drag_mode"], e["phrase_type"]).inc()
        elif k == "auth.jwt_validated":
            jwt.labels(e["outcome"]).inc()
        elif k == "auth.failed":
            auf.labels(e["failure_type"]).inc()
        elif k == "http.request_started":
            active += 1
            act.set(active)
        elif k == "http.request":
            req.labels(e["method"], e["endpoint"], str(e["status_code"])).inc()
            hd.labels(e["method"], e["endpoint"]).observe(e["duration_seconds"])
            active = max(active - 1, 0)
            act.set(active)
sys.stdout.buffer.write(generate_latest(r))
"""

PARSE_ONLY = r"""
import sys, orjson
loads = orjson.loads
with open(sys.argv[1], "rb") as f:
    carry = b""
    while chunk := f.read(1 << 20):
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for line in lines:
            loads(line)
    if carry:
        loads(carry)
"""


def _norm(name: str, labels: dict[str, str]) -> Key:
    labels = dict(labels)
    labels.pop("prog", None)
    if "le" in labels:
        labels["le"] = "inf" if labels["le"] in ("+Inf", "Inf") else repr(float(labels["le"]))
    return (name, frozenset(labels.items()))


def read_exposition(path: Path) -> dict[Key, float]:
    values: dict[Key, float] = {}
    for fam in text_string_to_metric_families(path.read_text("utf-8")):
        for s in fam.samples:
            ours = s.name.startswith("sustainbot_") and not s.name.endswith("_created")
            if ours or s.name == "log_exporter_lines_total":
                values[_norm(s.name, s.labels)] = s.value
    return values


def check(name: str, got: dict[Key, float], model: Model, *, exact: bool) -> str:
    want = {k: v for k, v in model.values.items()}
    missing = [k for k in want if k not in got]

    def differs(a: float, b: float) -> bool:
        return a != b if exact else abs(a - b) > 1e-6 * max(1.0, abs(b))

    wrong = [k for k in want if k in got and differs(got[k], want[k])]
    extra = [k for k in got if k not in want and not k[0].startswith("log_exporter_")]
    if missing or wrong or extra:
        sample = (missing + wrong + extra)[:5]
        counts = f"{len(missing)} missing, {len(wrong)} wrong, {len(extra)} extra"
        return f"{name}: MISMATCH ({counts}): {sample}"
    return f"{name}: all {len(want)} modelled samples {'exact' if exact else 'equal'}"


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants now (a replay's workers are its children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError, ValueError):
            todo += map(int, Path(f"/proc/{p}/task/{p}/children").read_text().split())
    return out


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Measure:
    wall: float  # seconds
    cpu: float  # user + system seconds of the process and its workers
    rss_total: int  # KiB: the sum of each process's peak (parent and workers)
    rss_max: int  # KiB: the largest single process's peak


def run_tree(cmd: Sequence[str], out: Path) -> Measure:
    """Run ``cmd`` with stdout to ``out``: wall and CPU seconds, peak RSS over its processes.

    The peaks are each process's VmHWM, polled every 20 ms (a worker's peak is read before it
    ends; a process living under 20 ms may be missed, which a replay's workers do not).
    """
    peaks: dict[int, int] = {}
    with out.open("wb") as stdout:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
        while True:
            # wait4: the child's CPU, which includes the workers it waited for.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            for p in _tree(proc.pid):
                peaks[p] = max(peaks.get(p, 0), _hwm_kib(p))
            time.sleep(0.02)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measure(wall, cpu, sum(peaks.values()), max(peaks.values(), default=0))


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--big", type=int, default=4_000_000, help="0 skips the big file")
    parser.add_argument("--keep", help="directory for the generated files (default: a temp dir)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (medians)")
    parser.add_argument("--jobs", default="1,2", help="replay --jobs values to time")
    parser.add_argument("--quick", action="store_true", help="no naive and parse-only baselines")
    args = parser.parse_args()
    mtail = shutil.which("mtail")
    if mtail is None:
        raise SystemExit("needs mtail (Debian package mtail)")

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="replay-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [("small", args.events, 7)] + ([("big", args.big, 8)] if args.big else [])
    py = sys.executable
    jobs = [int(j) for j in args.jobs.split(",")]
    for label, n_events, seed in sizes:
        log = work / f"events-{label}.jsonl"
        t0 = time.perf_counter()
        model = generate(log, n_events, seed=seed)
        model.values[("log_exporter_lines_total", frozenset({("result", "parsed")}))] = model.lines
        print(f"\ngenerated {model.lines} events, {log.stat().st_size / 1e6:.1f} MB "
              f"in {time.perf_counter() - t0:.1f}s -> {log}")  # fmt: skip
        contenders: dict[str, list[str]] = {
            f"replay --jobs {j}": [py, "-m", "log_exporter", "replay", "--quiet", "--jobs", str(j),
                                   str(log)]
            for j in jobs
        }  # fmt: skip
        # glog writes mtail's own log files to $TMPDIR, or /tmp, where they would outlive the run;
        # in the work directory they go with it. Not --logtostderr: its stderr is read only once
        # it has exited, so a full pipe would stall it.
        mtail_logs = work / "mtail-logs"
        mtail_logs.mkdir(exist_ok=True)
        contenders["mtail --one_shot"] = [
            mtail, "--one_shot", "--one_shot_format=prometheus", "--emit_prog_label=false",
            "--progs", str(MTAIL_PROGS), "--logs", str(log),
            "--address=127.0.0.1", "--port=0", "--stderrthreshold=FATAL",
            f"--log_dir={mtail_logs}",
        ]  # fmt: skip
        if label == "small" and not args.quick:
            contenders["naive json+client_python"] = [py, "-c", NAIVE, str(log)]
            contenders["orjson.loads only"] = [py, "-c", PARSE_ONLY, str(log)]
        results: dict[str, list[Measure]] = {name: [] for name in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            # Alternated: the order turns every round, so a drift in the machine's load falls
            # on every contender alike.
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                out = work / f"out-{label}-{name.replace(' ', '_')}.txt"
                results[name].append(run_tree(contenders[name], out))
                if r == 0 and name.startswith("replay"):
                    print(check(name, read_exposition(out), model, exact=True))
                elif r == 0 and name == "mtail --one_shot":
                    mtail_model = Model()
                    mtail_model.values = {
                        k: v
                        for k, v in model.values.items()
                        if not k[0].startswith("log_exporter_")
                    }
                    print(check(name, read_exposition(out), mtail_model, exact=False))
        n = model.lines
        base = median([m.wall for m in results["mtail --one_shot"]])
        one = median([m.wall for m in results[f"replay --jobs {jobs[0]}"]])
        print(f"\n{label}: {n} events, medians of {args.rounds} alternated rounds")
        print(f"{'contender':28} {'wall s':>7} {'cpu s':>7} {'events/s':>11} {'x mtail':>7} "
              f"{'x jobs ' + str(jobs[0]):>8} {'RSS total':>10} {'RSS max':>8}")  # fmt: skip
        for name, ms in results.items():
            wall = median([m.wall for m in ms])
            cpu = median([m.cpu for m in ms])
            rss_t = max(m.rss_total for m in ms) / 1024
            rss_m = max(m.rss_max for m in ms) / 1024
            print(f"{name:28} {wall:7.2f} {cpu:7.2f} {n / wall:11,.0f} {base / wall:7.2f} "
                  f"{one / wall:8.2f} {rss_t:8.1f}MB {rss_m:6.1f}MB")  # fmt: skip
        print("walls:", {k: [round(m.wall, 2) for m in v] for k, v in results.items()})
        if not args.keep:
            log.unlink()
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
