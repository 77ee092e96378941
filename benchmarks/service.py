"""Requests/s of SustainBot under gunicorn, and what writing its events costs per request.

Run by hand: ``.venv/bin/python benchmarks/service.py [--requests N] [--rounds N]``.

The same app (``create_app(settings, writer=...)``, the real routes, auth, governance and
workflows) is served three ways, each by gunicorn with ``sustainbot serve``'s settings
(``sustainbot.serving.gunicorn_options``: gevent workers, 2 by default) in a process of its own:

* ``file``: the real ``EventWriter`` on a file in a temporary directory, as in production;
* ``devnull``: the real ``EventWriter`` on /dev/null: every event is built, serialized and
  written with its own ``write()``; the kernel discards the bytes, so no disk or page cache;
* ``noop``: a writer whose ``emit`` does nothing and reports success: the same service
  writing nothing.

Load: a fixed mix of execute requests from ``--clients`` keep-alive connections, sent by ``wrk``
when it is installed (``apt-get install wrk``; a C load generator that takes little CPU from
the service) or else by as many Python threads using ``http.client``. Either runs on the same
machine and takes CPU from the service, so absolute figures are lower bounds; the variants are
measured alternately, round after round, and the medians compared.

In-process: microseconds per ``EventWriter.emit`` of a realistic ``audit.entry`` to a file, to
/dev/null and the no-op, the direct cost of one event.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sustainbot.auth import mint_token
from sustainbot.events import EventWriter
from sustainbot.settings import Settings

SECRET = "benchmark-secret-that-is-long-enough-for-hs256"
VARIANTS = ("file", "devnull", "noop")
DEADLINE = 120.0
EXECUTE = "/workflows/governed/execute"


class NoopWriter(EventWriter):
    """Writes nothing and reports success: the service as if it had no event log."""

    def emit(self, event: str, *, trace_id: str, logger: str, message: str, **_: Any) -> bool:
        return True


def make_writer(variant: str, directory: Path) -> EventWriter:
    if variant == "file":
        return EventWriter(directory / "sustainbot.jsonl")
    if variant == "devnull":
        return EventWriter(os.devnull)
    # /dev/null as its path so /healthz's open check passes; emit never writes to it.
    return NoopWriter(os.devnull)


def _aim(workflow: str, mode: str, text: str) -> dict[str, Any]:
    return {
        "workflow_name": workflow,
        "drag_mode": mode,
        "aim": {"actor": "governed assistant", "input": text, "mission": "benchmark"},
    }


# (role, body, expected status): mostly successful executions, as a busy service sees.
MIX: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("analyst", _aim("carbon_audit", "analysis", "We used 1,200 kWh and drove 340 km."), 200),
    (
        "engineer",
        _aim(
            "generate_report",
            "draft",
            "Energy use fell 12 percent. You should always check the meters. "
            "Teams must report weekly. Deploy the new dashboard after review.",
        ),
        200,
    ),
    ("approver", _aim("deploy_staging", "execute", "Deploy api@1.4.2 and web@2.0.0."), 200),
    ("admin", _aim("summarise_incident", "research", "Sev1 outage at 09:14. Fixed 09:52."), 200),
    ("engineer", _aim("deploy_staging", "execute", "Deploy api@1.4.2."), 403),
)


# --- the server side: one gunicorn per variant, in a child process ---------------------------


def serve(variant: str, directory: Path, workers: int, threads: int) -> None:
    """Build the app around the variant's writer and serve it with gunicorn until SIGTERM."""
    from sustainbot.app import create_app
    from sustainbot.serving import gunicorn_options, run_gunicorn

    app = create_app(Settings(jwt_secret=SECRET), writer=make_writer(variant, directory))

    def announce(server: Any) -> None:
        for listener in server.LISTENERS:
            print(f"listening on {listener}", flush=True)

    del threads  # the gevent worker has no thread count; kept for the command line
    options = gunicorn_options("127.0.0.1:0", workers, loglevel="warning", when_ready=announce)

    run_gunicorn(app, options)


def start_server(
    variant: str, directory: Path, workers: int, threads: int
) -> tuple[subprocess.Popen[bytes], int]:
    out = directory / f"{variant}.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", variant, "--dir", str(directory),
             "--workers", str(workers), "--threads", str(threads)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", out.read_text())
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"the {variant} server exited:\n{out.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the {variant} server did not start in {DEADLINE:.0f}s")


def cpu_seconds(root: int) -> float:
    """User + system CPU time of process ``root`` and its children (the gunicorn workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process exited while we looked
            continue
        # Fields after the parenthesised command name, which may itself contain spaces.
        pid = int(text.split(" ", 1)[0])
        fields = text.rsplit(")", 1)[1].split()
        if pid == root or int(fields[1]) == root:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the load generator ----------------------------------------------------------------------


def run_load(port: int, requests: int, clients: int, tokens: dict[str, str]) -> float:
    """Send ``requests`` requests from ``clients`` keep-alive threads; return requests/s."""
    prepared = [
        (json.dumps(body).encode(), {"Authorization": f"Bearer {tokens[role]}",
                                     "Content-Type": "application/json"}, status)
        for role, body, status in MIX
    ]  # fmt: skip
    counter = iter(range(requests))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                payload, headers, expected = prepared[i % len(prepared)]
                conn.request("POST", EXECUTE, body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != expected:
                    failures.append(f"status {response.status}, expected {expected}")
                    return
        except OSError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"load failed: {failures[:3]}")
    return requests / elapsed


WRK_SCRIPT = """
local bodies = {%(bodies)s}
local headers = {%(headers)s}
local threads = {}
local i = 0
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function request()
  i = i %% #bodies + 1
  return wrk.format("POST", "%(path)s", headers[i], bodies[i])
end
function response(status, hdrs, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      io.write(string.format("status %%d %%d\\n", status, n))
    end
  end
end
"""


def wrk_script(tokens: dict[str, str]) -> str:
    """A wrk Lua script cycling through MIX and reporting every response status it saw."""
    bodies = ", ".join(f"[==[{json.dumps(body)}]==]" for _, body, _ in MIX)
    headers = ", ".join(
        f'{{["Authorization"] = "Bearer {tokens[role]}", ["Content-Type"] = "application/json"}}'
        for role, _, _ in MIX
    )
    return WRK_SCRIPT % {"bodies": bodies, "headers": headers, "path": EXECUTE}


def run_wrk(port: int, seconds: float, clients: int, script: Path) -> tuple[float, int]:
    """Run wrk for ``seconds``; return (requests/s, requests completed)."""
    result = subprocess.run(
        ["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds:g}s", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=seconds + DEADLINE, check=True,
    )  # fmt: skip
    out = result.stdout
    if "Socket errors" in out:
        raise SystemExit(f"wrk saw socket errors:\n{out}")
    statuses: dict[int, int] = {}
    for status, n in re.findall(r"^status (\d+) (\d+)$", out, re.M):  # one line per thread
        statuses[int(status)] = statuses.get(int(status), 0) + int(n)
    expected = {status for _, _, status in MIX}
    if set(statuses) != expected:
        raise SystemExit(f"unexpected statuses {statuses}, expected {sorted(expected)}:\n{out}")
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))  # type: ignore[union-attr]
    return rps, sum(statuses.values())


# --- the in-process cost of one event --------------------------------------------------------


def audit_fields() -> dict[str, Any]:
    """The fields of a typical audit.entry, as the app writes it for an allowed execution."""
    return {
        "outcome": "success",
        "drag_mode": "analysis",
        "decision": "allow",
        "reasons": [],
        "actor": "Dana Operator",
        "actor_role": "analyst",
        "workflow_name": "carbon_audit",
        "mission": "Q1 carbon audit for the board",
        "aim_actor": "carbon analyst",
        "input_sha256": "9f2c" * 16,
        "input_chars": 412,
    }


def emit_cost_us(writer: EventWriter, n: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` microseconds per emit over ``n`` emits (best = least disturbed)."""
    fields = audit_fields()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            writer.emit(
                "audit.entry",
                trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
                logger="sustainbot.audit",
                message="execute carbon_audit: success",
                **fields,
            )
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--load", choices=("auto", "wrk", "python"), default="auto", help="load generator"
    )
    parser.add_argument("--seconds", type=float, default=10, help="wrk: seconds per measurement")
    parser.add_argument("--requests", type=int, default=4000, help="python: requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per variant")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="ignored (gevent workers)")
    parser.add_argument("--emits", type=int, default=20_000, help="emits per in-process timing")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.dir, args.workers, args.threads)
        return

    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    settings = Settings(jwt_secret=SECRET)
    tokens = {role: mint_token(settings, actor="Dana Operator", role=role) for role, _, _ in MIX}
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu_per_request: dict[str, list[float]] = {v: [] for v in VARIANTS}
    events_per_request = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            (Path(tmp) / variant).mkdir()
        script = Path(tmp) / "mix.lua"
        script.write_text(wrk_script(tokens))
        for _ in range(args.rounds):
            for variant in VARIANTS:
                directory = Path(tmp) / variant
                log = directory / "sustainbot.jsonl"
                proc, port = start_server(variant, directory, args.workers, args.threads)
                try:
                    # Warm-up: first-request imports and connection set-up are not measured.
                    if use_wrk:
                        run_wrk(port, 1, args.clients, script)
                    else:
                        run_load(port, 200, args.clients, tokens)
                    lines_before = log.read_bytes().count(b"\n") if log.exists() else 0
                    cpu_before = cpu_seconds(proc.pid)
                    if use_wrk:
                        rps, completed = run_wrk(port, args.seconds, args.clients, script)
                    else:
                        rps = run_load(port, args.requests, args.clients, tokens)
                        completed = args.requests
                    cpu = cpu_seconds(proc.pid) - cpu_before
                    results[variant].append(rps)
                    cpu_per_request[variant].append(1e6 * cpu / completed)
                    if variant == "file":
                        written = log.read_bytes().count(b"\n") - lines_before
                        events_per_request = written / completed
                finally:
                    stop_server(proc)
        costs = {
            "file": emit_cost_us(EventWriter(Path(tmp) / "emit.jsonl"), args.emits),
            "devnull": emit_cost_us(EventWriter(os.devnull), args.emits),
            "noop": emit_cost_us(NoopWriter(os.devnull), args.emits),
        }

    # Other work on the machine only ever slows a round down, so the best round is the least
    # disturbed; CPU time per request is barely affected by it and is the steadier figure.
    rps_of = {v: max(results[v]) for v in VARIANTS}
    cpu_of = {v: statistics.median(cpu_per_request[v]) for v in VARIANTS}
    size = f"{args.seconds:g} s" if use_wrk else f"{args.requests} requests"
    print(
        f"service: {args.workers} gunicorn gevent workers; load: "
        f"{'wrk' if use_wrk else 'Python threads'}, {args.clients} keep-alive connections, "
        f"{size} x {args.rounds} rounds per variant"
    )
    print("  variant  requests/s (best; every round)      service CPU per request (median)")
    for variant in VARIANTS:
        rounds = ", ".join(f"{r:.0f}" for r in results[variant])
        print(f"  {variant:8s} {rps_of[variant]:6.0f}  [{rounds:24s}]   {cpu_of[variant]:6.0f} us")
    for variant in ("file", "devnull"):
        drop = 100 * (1 - rps_of[variant] / rps_of["noop"])
        extra = cpu_of[variant] - cpu_of["noop"]
        print(
            f"  {variant} vs noop: {drop:.1f}% fewer requests/s, "
            f"{extra:.0f} us more CPU per request"
        )
    print(f"events per request (file variant): {events_per_request:.2f}")
    print(f"in-process cost per emit of an audit.entry ({args.emits} emits, best of 5):")
    for variant in VARIANTS:
        print(f"  {variant:8s} {costs[variant]:6.2f} us")
    per_event = costs["file"] - costs["noop"]
    print(
        f"so writing the events costs about {events_per_request * per_event:.0f} us of CPU per "
        f"request ({events_per_request:.1f} events x {per_event:.2f} us)"
    )


if __name__ == "__main__":
    main()
