#!/usr/bin/env bash
# The observability demo behind `make demo`: SustainBot and its log-exporter sidecar side by side.
#
# Starts the service with a throwaway JWT secret and the sidecar tailing its JSONL log, drives a
# short scenario, then shows what each side produced: a few raw events, one audit entry, and the
# metrics the sidecar derived from them. Everything runs on loopback ports that are checked free;
# logs live in a temporary directory that is removed at the end (DEMO_KEEP=1 keeps it).
#
# Needs the project's virtualenv on PATH (`make demo` does that): python, sustainbot, log-exporter.
set -euo pipefail

cd "$(dirname "$0")/.."

for tool in python sustainbot log-exporter; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "demo: '$tool' not found on PATH; run it through 'make demo'" >&2
        exit 1
    fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sustainbot-demo.XXXXXX")"
APP_PID=""
EXPORTER_PID=""

stop() {
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        # Both programs stop cleanly on SIGTERM; give them a generous moment before insisting.
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "demo: $name did not stop on SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop "$EXPORTER_PID" log-exporter
    stop "$APP_PID" sustainbot
    if [ "${DEMO_KEEP:-0}" = "1" ]; then
        echo "demo: logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    # Ask the kernel for a free loopback port, then release it for the service to bind.
    python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() {
    # wait_http URL NAME PID: poll URL until it answers 200, the process dies, or 60 s pass.
    python - "$1" "$2" "$3" <<'PY'
import os, sys, time, urllib.request

url, name, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"demo: {name} exited during start-up; see its log above")
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(f"demo: {name} did not answer {url} within 60 s")
PY
}

section() {
    # Bold only on a terminal, so a captured run (CI, a pasted log) has no escape codes.
    if [ -t 1 ]; then
        printf '\n\033[1m== %s ==\033[0m\n' "$1"
    else
        printf '\n== %s ==\n' "$1"
    fi
}

APP_PORT="$(free_port)"
EXPORTER_PORT="$(free_port)"
while [ "$EXPORTER_PORT" = "$APP_PORT" ]; do EXPORTER_PORT="$(free_port)"; done
APP_URL="http://127.0.0.1:$APP_PORT"
METRICS_URL="http://127.0.0.1:$EXPORTER_PORT/metrics"

export JSON_LOG_PATH="$WORK/sustainbot.jsonl"
# A fresh secret per run: it exists only in this shell's environment and dies with the demo.
SUSTAINBOT_JWT_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
export SUSTAINBOT_JWT_SECRET

section "Starting SustainBot on $APP_URL and the log-exporter sidecar on $METRICS_URL"
sustainbot serve --host 127.0.0.1 --port "$APP_PORT" >"$WORK/sustainbot.out" 2>&1 &
APP_PID=$!
log-exporter serve --file "$JSON_LOG_PATH" \
    --web.listen-address "127.0.0.1:$EXPORTER_PORT" 2>"$WORK/log-exporter.log" &
EXPORTER_PID=$!

if ! wait_http "$APP_URL/healthz" sustainbot "$APP_PID"; then
    tail -n 20 "$WORK/sustainbot.out" >&2 || true
    exit 1
fi
if ! wait_http "http://127.0.0.1:$EXPORTER_PORT/healthz" log-exporter "$EXPORTER_PID"; then
    tail -n 20 "$WORK/log-exporter.log" >&2 || true
    exit 1
fi
echo "both are up (sustainbot pid $APP_PID, log-exporter pid $EXPORTER_PID)"

section "Driving the scenario"
python scripts/demo_scenario.py "$APP_URL"

section "A few of the JSONL events SustainBot wrote ($(wc -l <"$JSON_LOG_PATH") lines in all)"
python - "$JSON_LOG_PATH" <<'PY'
import json, sys

wanted = ["app.started", "aim.request", "workflow.completed", "auth.failed", "http.request"]
shown = set()
with open(sys.argv[1], "rb") as f:
    for raw in f:
        event = json.loads(raw)
        kind = event.get("event")
        if kind in wanted and kind not in shown:
            shown.add(kind)
            print(json.dumps(event, separators=(",", ":")))
PY

section "One audit entry (the person appears here, never in a metric label)"
python - "$JSON_LOG_PATH" <<'PY'
import json, sys

with open(sys.argv[1], "rb") as f:
    for raw in f:
        event = json.loads(raw)
        if event.get("event") == "audit.entry":
            print(json.dumps(event, indent=2))
            break
    else:
        print("(no audit entry written)")
PY

section "Waiting for the sidecar to read the whole log"
python - "$JSON_LOG_PATH" "$METRICS_URL" <<'PY'
import os, sys, time, urllib.request

path, url = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 60
while True:
    size = os.path.getsize(path)
    with urllib.request.urlopen(url, timeout=5) as resp:
        page = resp.read().decode()
    read = next(
        (float(line.split()[-1]) for line in page.splitlines()
         if line.startswith("log_exporter_bytes_read_total ")),
        0.0,
    )
    if read >= size:
        print(f"read {int(read)} of {size} bytes")
        break
    if time.monotonic() > deadline:
        sys.exit(f"demo: the sidecar read {int(read)} of {size} bytes within 60 s")
    time.sleep(0.1)
PY

section "What the sidecar derived (from $METRICS_URL)"
python - "$METRICS_URL" <<'PY'
import sys, urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
    families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}


def by(family, *labels, suffix=""):
    """Sum a family's samples grouped by the given labels."""
    totals = defaultdict(float)
    f = families.get(family)
    for s in f.samples if f else ():
        if s.name == family + suffix:
            totals[tuple(s.labels.get(l, "") for l in labels)] += s.value
    return dict(sorted(totals.items()))


def table(title, family, *labels):
    rows = by(family, *labels, suffix="_total")
    print(f"\n{title}")
    if not rows:
        print("  (none)")
    for key, value in rows.items():
        print(f"  {' / '.join(key):<48} {value:>6.0f}")


def quantile_bound(q, buckets):
    """The upper bound of the bucket holding the q-th observation: p95 is at most this."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    return next(bound for bound, count in buckets if count >= rank)


def show_seconds(value):
    if value == float("inf"):
        return "above the last bucket"
    return f"<= {value * 1000:g} ms" if value < 1 else f"<= {value:g} s"


def durations(title, family, *labels):
    f = families.get(family)
    groups = defaultdict(list)
    for s in f.samples if f else ():
        if s.name == family + "_bucket":
            key = tuple(s.labels.get(l, "") for l in labels)
            groups[key].append((float(s.labels["le"]), s.value))
    print(f"\n{title}")
    if not groups:
        print("  (none)")
    for key, buckets in sorted(groups.items()):
        buckets.sort()
        p95 = quantile_bound(0.95, buckets)
        print(f"  {' / '.join(key):<48} n={buckets[-1][1]:<4.0f} p95 {show_seconds(p95)}")


table("AIM requests by DRAG mode / role / workflow",
      "sustainbot_aim_requests", "drag_mode", "actor_role", "workflow_name")
table("AIM validation failures by reason / DRAG mode",
      "sustainbot_aim_validation_failures", "failure_reason", "drag_mode")
table("Workflow executions by workflow / outcome",
      "sustainbot_workflow_executions", "workflow_name", "outcome")
table("Workflow errors by workflow / error type",
      "sustainbot_workflow_execution_errors", "workflow_name", "error_type")
durations("Governed workflow duration (from the histogram buckets)",
          "sustainbot_governed_workflow_duration_seconds", "workflow_name", "outcome")
table("Audit log entries by outcome / DRAG mode",
      "sustainbot_audit_log_entries", "outcome", "drag_mode")
table("Prescriptive language detections by DRAG mode / phrase type",
      "sustainbot_prescriptive_language_detections", "drag_mode", "phrase_type")
table("JWT validations by outcome", "sustainbot_jwt_validations", "outcome")
table("Authentication failures by type", "sustainbot_authentication_failures", "failure_type")
table("HTTP requests by method / endpoint / status",
      "sustainbot_http_requests", "method", "endpoint", "status_code")
durations("HTTP request duration", "sustainbot_http_request_duration_seconds", "method", "endpoint")
lines = by("log_exporter_lines", "result", suffix="_total")
print("\nSidecar: lines " + ", ".join(f"{k[0]}={v:.0f}" for k, v in lines.items()))
PY

section "Where to go next"
cat <<EOF
Scrape URL:   $METRICS_URL
              (a Prometheus scrape job for it: deploy/prometheus/prometheus.yml; docs/exporter.md)
Dashboard:    dashboards/ (import into Grafana; alert rules in deploy/prometheus/rules/)
CloudWatch:   the same sidecar ships these metrics to CloudWatch with --cloudwatch
              (CLOUDWATCH_ENABLED=true; see docs/exporter.md and docs/cloudwatch.md)
Stopping both programs now.
EOF
