"""Valid scrape latency while a wrong-password flood runs: ``ab`` against a basic-auth exporter.

Run by hand: ``.venv/bin/python benchmarks/auth_flood.py [--code DIR ...] [--rounds N]``.

Each round starts an exporter (``MetricsServer`` with one user at bcrypt cost 10, in a process of
its own) from each ``--code`` directory in turn (a directory holding a ``log_exporter`` package,
e.g. another revision unpacked with ``git archive``; default: this checkout), logs in once with
the right password (cached from then on, as Prometheus' scrapes are), then runs
``ab -c CONCURRENCY -n REQUESTS -A prometheus:wrong`` and, while it runs, one valid scrape after
another on new connections. Prints p50/p99/max of the valid scrapes and ab's duration per code
and round, alternating the codes so that the machine's load falls on both alike.

Needs ``ab`` (apache2-utils). Figures depend on the machine and its load; quote them with it.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bcrypt

SERVER = """
import sys, threading
from pathlib import Path
from prometheus_client import CollectorRegistry, Counter
from log_exporter.prometheus.server import MetricsServer
from log_exporter.prometheus.webconfig import load_web_config
registry = CollectorRegistry()
Counter("demo_events", "Events seen.", registry=registry).inc(2)
srv = MetricsServer(registry, listen="127.0.0.1:0", web_config=load_web_config(Path(sys.argv[1])))
srv.start()
print(srv.address[1], flush=True)
sys.stdin.read()
srv.shutdown()
"""


# Prometheus' default scrape timeout: a valid scrape not answered by then counts as this long.
TIMEOUT_SECONDS = 10.0


def _scrape(port: int, auth: str) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": auth})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"valid scrape got {response.status}")
    except TimeoutError:
        return TIMEOUT_SECONDS
    finally:
        conn.close()
    return time.perf_counter() - started


def _round(code: Path, config: Path, concurrency: int, requests: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(code))
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=code,
        env=env,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        auth = "Basic " + base64.b64encode(b"prometheus:right").decode()
        _scrape(port, auth)  # cached from now on
        flood = subprocess.Popen(
            ["ab", "-q", "-c", str(concurrency), "-n", str(requests), "-s", "60",
             "-A", "prometheus:wrong", f"http://127.0.0.1:{port}/metrics"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started = time.perf_counter()
        times = []
        while flood.poll() is None:
            times.append(_scrape(port, auth))
        took = time.perf_counter() - started
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=60)
    times.sort()
    return {
        "scrapes": len(times),
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * times[min(len(times) - 1, int(0.99 * len(times)))],
        "max_ms": 1000 * times[-1],
        "timeouts": sum(t >= TIMEOUT_SECONDS for t in times),
        "ab_s": took,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=250)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--cost", type=int, default=10)
    args = parser.parse_args()
    codes = args.code or [Path(__file__).resolve().parents[1]]
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"auth-flood-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "web.yml"
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=args.cost)).decode()
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    print("code\tround\tscrapes\ttimeouts\tp50_ms\tp99_ms\tmax_ms\tab_s")
    for n in range(args.rounds):
        for code in codes:
            r = _round(code.resolve(), config, args.concurrency, args.requests)
            print(
                f"{code}\t{n}\t{r['scrapes']:.0f}\t{r['timeouts']:.0f}\t{r['p50_ms']:.1f}\t{r['p99_ms']:.1f}\t"
                f"{r['max_ms']:.1f}\t{r['ab_s']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
