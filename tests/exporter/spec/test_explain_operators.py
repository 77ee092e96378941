"""`check-spec --explain` on a spec of another application's log: its [input] event field,
nested paths and a numeric match operator are explained as the compiled program applies them."""

from __future__ import annotations

from pathlib import Path

from tests.support.serve import run_cli

ZAP_SPEC = """version = 1

[input]
event_field = "msg"
timestamp = { field = "ts", format = "unix" }

[metrics.http_server_errors_total]
type = "counter"
help = "Requests answered with a 5xx status, by method."
events = ["request served"]
labels = [{ name = "method", field = "request.method" }]
match = { status = { ge = 500 } }
"""

LINES = (
    '{"level":"info","ts":1796658333.3,"msg":"request served",'
    '"request":{"method":"GET"},"status":200}\n'
    '{"level":"info","ts":1796658334.3,"msg":"request served",'
    '"request":{"method":"GET"},"status":503}\n'
    '{"level":"info","ts":1796658335.3,"msg":"shutting down"}\n'
)


def test_explain_names_the_failed_operator_and_the_nested_label(tmp_path: Path) -> None:
    """A 200 is explained as failing `ge 500`, a 503 counts under the nested method, and an
    event type no metric reads says so."""
    spec, log = tmp_path / "zap.toml", tmp_path / "access.log"
    spec.write_text(ZAP_SPEC, encoding="utf-8")
    log.write_text(LINES, encoding="utf-8")
    result = run_cli(["check-spec", str(spec), "--explain", str(log)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "OK: 1 metrics",
        "line 1: event 'request served'",
        "  http_server_errors_total: unchanged: match failed: status is '200' (wants ge 500)",
        "line 2: event 'request served'",
        '  http_server_errors_total{method="GET"} +1',
        "line 3: event 'shutting down': no metric reads this event",
    ]
