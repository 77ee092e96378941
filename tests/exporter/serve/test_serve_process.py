"""``log-exporter serve`` as a real process: ingestion, readiness, settings, logs and exit codes."""

from __future__ import annotations

import gzip
import json
import platform
import socket
from pathlib import Path

import pytest

from log_exporter import __version__, buildinfo
from log_exporter.prometheus import selfmetrics
from tests.support.contract import contract_line
from tests.support.ports import free_port
from tests.support.serve import Exporter, append, run_cli, sample
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow


def test_events_appended_after_start_show_in_metrics(tmp_path: Path) -> None:
    """Events written to a log that did not exist at start are counted once it appears."""
    log = tmp_path / "logs" / "sustainbot.jsonl"
    with Exporter(tmp_path, ["--file", str(log)]) as exporter:
        exporter.wait_healthy()
        log.parent.mkdir()
        append(
            log,
            contract_line(
                "aim.request", drag_mode="draft", actor_role="engineer", workflow_name="w"
            )
            + contract_line(
                "aim.request", drag_mode="draft", actor_role="engineer", workflow_name="w"
            )
            + contract_line("auth.jwt_validated", outcome="failure")
            + b"{not json\n",
        )
        exporter.wait_metric(
            "sustainbot_aim_requests_total",
            2.0,
            drag_mode="draft",
            actor_role="engineer",
            workflow_name="w",
        )
        samples = exporter.metrics()
        assert sample(samples, "sustainbot_jwt_validations_total", outcome="failure") == 1.0
        assert sample(samples, "log_exporter_lines_total", result="parsed") == 3.0
        assert sample(samples, "log_exporter_lines_total", result="malformed") == 1.0
        assert sample(samples, "log_exporter_bytes_read_total") == log.stat().st_size
        assert sample(samples, "log_exporter_lag_bytes") == 0.0
        build = sample(
            samples,
            "log_exporter_build_info",
            version=__version__,
            revision=buildinfo.revision(),
            python_version=platform.python_version(),
        )
        assert build == 1.0
        assert exporter.stop() == 0


def test_readyz_means_the_existing_file_was_read(tmp_path: Path) -> None:
    """When /readyz first answers 200, every line present at start is already in /metrics."""
    log = tmp_path / "big.jsonl"
    n = 20_000
    append(log, contract_line("auth.failed", failure_type="expired") * n)
    with Exporter(tmp_path, ["--file", str(log)]) as exporter:
        exporter.wait_healthy()

        def ready() -> bool:
            status, body = exporter.get("/readyz")
            assert (status, json.loads(body)) in ((200, {"ready": True}), (503, {"ready": False}))
            return status == 200

        wait_for(ready, "/readyz to answer 200")
        samples = exporter.metrics()
        assert (
            sample(samples, "sustainbot_authentication_failures_total", failure_type="expired") == n
        )
        assert exporter.stop() == 0


def test_start_at_end_skips_history(tmp_path: Path) -> None:
    """With --start-at end, lines already in the file are not counted, new ones are."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.failed", failure_type="expired") * 5)
    with Exporter(tmp_path, ["--file", str(log), "--start-at", "end"]) as exporter:
        exporter.wait_healthy()
        # Ready means the start position was taken, so what follows is "new".
        exporter.wait_metric("log_exporter_lag_bytes", 0.0)
        append(log, contract_line("auth.failed", failure_type="missing_token"))
        exporter.wait_metric(
            "sustainbot_authentication_failures_total", 1.0, failure_type="missing_token"
        )
        samples = exporter.metrics()
        assert (
            sample(samples, "sustainbot_authentication_failures_total", failure_type="expired")
            is None
        )
        assert exporter.stop() == 0


def test_oversized_and_malformed_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    """A line over --max-line-bytes and garbage lines are counted and reading carries on."""
    log = tmp_path / "app.jsonl"
    append(
        log,
        b'{"event": "auth.failed", "failure_type": "'
        + b"x" * 5000
        + b'"}\n'
        + b"\xff\xfe garbage\n"
        + b"[1, 2]\n"
        + contract_line("auth.failed", failure_type="expired"),
    )
    with Exporter(tmp_path, ["--file", str(log), "--max-line-bytes", "1024"]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric(
            "sustainbot_authentication_failures_total", 1.0, failure_type="expired"
        )
        samples = exporter.metrics()
        assert sample(samples, "log_exporter_lines_total", result="oversized") == 1.0
        assert sample(samples, "log_exporter_lines_total", result="malformed") == 2.0
        assert sample(samples, "log_exporter_lines_total", result="parsed") == 1.0
        assert exporter.stop() == 0


def test_environment_configures_file_and_listen(tmp_path: Path) -> None:
    """JSON_LOG_PATH (the app's own setting) and LOG_EXPORTER_LISTEN work without flags."""
    log = tmp_path / "from-env.jsonl"
    append(log, contract_line("auth.jwt_validated", outcome="success"))
    port = free_port()
    env = {"JSON_LOG_PATH": str(log), "LOG_EXPORTER_LISTEN": f"127.0.0.1:{port}"}
    with Exporter(tmp_path, [], env=env, port=port) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("sustainbot_jwt_validations_total", 1.0, outcome="success")
        assert exporter.stop() == 0


def test_log_exporter_file_wins_over_json_log_path(tmp_path: Path) -> None:
    """LOG_EXPORTER_FILE takes precedence over the app's JSON_LOG_PATH."""
    wanted, other = tmp_path / "wanted.jsonl", tmp_path / "other.jsonl"
    append(wanted, contract_line("auth.jwt_validated", outcome="success"))
    append(other, contract_line("auth.jwt_validated", outcome="failure"))
    env = {"LOG_EXPORTER_FILE": str(wanted), "JSON_LOG_PATH": str(other)}
    with Exporter(tmp_path, [], env=env) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("sustainbot_jwt_validations_total", 1.0, outcome="success")
        assert (
            sample(exporter.metrics(), "sustainbot_jwt_validations_total", outcome="failure")
            is None
        )
        assert exporter.stop() == 0


def test_openmetrics_and_gzip_through_the_process(tmp_path: Path) -> None:
    """A real scrape asking for OpenMetrics with gzip gets a compressed OpenMetrics page."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.jwt_validated", outcome="success"))
    with Exporter(tmp_path, ["--file", str(log)]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("sustainbot_jwt_validations_total", 1.0, outcome="success")
        status, body = exporter.get(
            "/metrics",
            headers={
                "Accept": "application/openmetrics-text; version=1.0.0",
                "Accept-Encoding": "gzip",
            },
        )
        assert status == 200
        text = gzip.decompress(body).decode()
        assert text.endswith("# EOF\n")
        assert 'sustainbot_jwt_validations_total{outcome="success"} 1.0' in text
        assert exporter.stop() == 0


def test_own_logs_are_json_lines_on_stderr(tmp_path: Path) -> None:
    """Every line the exporter writes to stderr is a JSON object with ts, level, logger, msg."""
    with Exporter(tmp_path, ["--file", str(tmp_path / "none.jsonl")]) as exporter:
        exporter.wait_healthy()
        assert exporter.stop() == 0
        records = exporter.log_records()
    assert records, "the exporter logged nothing"
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys()
        assert record["ts"].endswith("Z")
    serving = next(r for r in records if r["msg"] == "serving")
    assert serving["url"] == f"http://127.0.0.1:{exporter.port}/metrics"


def test_sigint_stops_cleanly_like_sigterm(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) stops the exporter with exit code 0 and no traceback."""
    import signal

    with Exporter(tmp_path, ["--file", str(tmp_path / "x.jsonl")]) as exporter:
        exporter.wait_healthy()
        assert exporter.stop(signal.SIGINT) == 0
        assert "Traceback" not in exporter.stderr()


def test_bad_spec_fails_at_start_naming_file_table_and_field(tmp_path: Path) -> None:
    """An invalid --spec stops the exporter with exit 2 and names the file, table and field."""
    spec = tmp_path / "bad.toml"
    spec.write_text(
        'version = 1\n[metrics.foo_seconds]\ntype = "histogram"\nhelp = "h"\n'
        'events = ["e"]\nvalue = "v"\nbuckets = [2, 1]\n'
    )
    result = run_cli(
        [
            "serve",
            "--file",
            str(tmp_path / "x"),
            "--spec",
            str(spec),
            "--web.listen-address",
            f"127.0.0.1:{free_port()}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    record = json.loads(result.stderr.splitlines()[-1])
    assert record["level"] == "error"
    assert str(spec) in record["msg"]
    assert "[metrics.foo_seconds]" in record["msg"]
    assert "buckets" in record["msg"]
    assert "Traceback" not in result.stderr


def test_unreadable_spec_fails_at_start(tmp_path: Path) -> None:
    """A --spec path that does not exist stops the exporter with exit 2 naming it."""
    missing = tmp_path / "missing.toml"
    result = run_cli(["serve", "--file", "x", "--spec", str(missing)], cwd=tmp_path)
    assert result.returncode == 2
    assert str(missing) in result.stderr


def test_bad_web_config_fails_at_start(tmp_path: Path) -> None:
    """An invalid --web.config.file stops the exporter with exit 2 naming the file and field."""
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n  alice: plaintext\n")
    result = run_cli(["serve", "--file", "x", "--web.config.file", str(config)], cwd=tmp_path)
    assert result.returncode == 2
    message = json.loads(result.stderr.splitlines()[-1])["msg"]
    assert str(config) in message
    assert "alice" in message


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--listen", "9464"], {}, "expected [host]:port"),
        (["--web.listen-address", "9464"], {}, "--web.listen-address '9464': expected"),
        (["--web.telemetry-path", "metrics"], {}, "--web.telemetry-path"),
        (["--web.telemetry-path=/healthz"], {}, "already served"),
        ([], {"LOG_EXPORTER_LOG_FORMAT": "xml"}, "--log.format / LOG_EXPORTER_LOG_FORMAT"),
        ([], {"LOG_EXPORTER_START_AT": "middle"}, "LOG_EXPORTER_START_AT"),
        ([], {"LOG_EXPORTER_LOG_LEVEL": "chatty"}, "LOG_EXPORTER_LOG_LEVEL"),
        (["--state-interval", "0"], {}, "--state-interval"),
        # A save interval of infinity would never save until SIGTERM, and kill -9 would lose all.
        (["--state-interval", "inf"], {}, "not a finite number"),
        ([], {"LOG_EXPORTER_MAX_LINE_BYTES": "1MiB"}, "LOG_EXPORTER_MAX_LINE_BYTES"),
        ([], {"LOG_EXPORTER_STATE_INTERVAL": "5 seconds"}, "LOG_EXPORTER_STATE_INTERVAL"),
    ],
)
def test_bad_setting_fails_at_start_naming_it(
    tmp_path: Path, args: list[str], env: dict[str, str], fragment: str
) -> None:
    """A malformed flag or environment value stops the exporter with exit 2 and names it."""
    result = run_cli(["serve", "--file", "x", *args], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert fragment in result.stderr


def test_file_that_is_a_directory_fails_at_start(tmp_path: Path) -> None:
    """--file naming a directory stops the exporter with exit 2 instead of serving nothing."""
    (tmp_path / "logs").mkdir()
    result = run_cli(["serve", "--file", str(tmp_path / "logs")], cwd=tmp_path)
    assert result.returncode == 2
    assert "not a regular file" in result.stderr


def test_port_in_use_fails_at_start(tmp_path: Path) -> None:
    """If the listen port is taken, the exporter exits 2 saying it cannot listen there."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            ["serve", "--file", "x", "--web.listen-address", f"127.0.0.1:{port}"], cwd=tmp_path
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
    assert "cannot listen" in result.stderr


FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_served_exposition_matches_the_golden_contract_file(tmp_path: Path) -> None:
    """Serving the contract fixture yields exactly the reviewed golden exposition, plus extras.

    The golden file (``fixtures/contract.expected.prom``) is owned by the data-path tests; this
    proves the real process (tailer, pipeline, server) renders the very same page.
    """
    log = tmp_path / "contract.jsonl"
    log.write_bytes((FIXTURES / "contract.jsonl").read_bytes())
    golden = (FIXTURES / "contract.expected.prom").read_text()
    with Exporter(tmp_path, ["--file", str(log)]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("log_exporter_bytes_read_total", float(log.stat().st_size))
        status, body = exporter.get("/metrics")
        assert exporter.stop() == 0
    assert status == 200
    served = body.decode()
    assert served.startswith(golden)
    extra = {
        line.split()[2] for line in served[len(golden) :].splitlines() if line.startswith("# TYPE")
    }
    assert extra == {
        "log_exporter_build_info",
        "log_exporter_lag_bytes",
        "log_exporter_io_errors_total",
        "log_exporter_spec_reloads_total",
        "log_exporter_http_requests_total",
        "log_exporter_http_connection_errors_total",
        *selfmetrics.STANDARD,
    }


def test_rename_rotation_while_serving_counts_every_line_once(tmp_path: Path) -> None:
    """A log rotated by rename while the exporter runs loses and repeats nothing."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.failed", failure_type="expired") * 3)
    with Exporter(tmp_path, ["--file", str(log)]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric(
            "sustainbot_authentication_failures_total", 3.0, failure_type="expired"
        )
        # A writer that has not noticed the rotation yet still appends to the old file.
        rotated = tmp_path / "app.jsonl.1"
        log.rename(rotated)
        append(rotated, contract_line("auth.failed", failure_type="expired"))
        append(log, contract_line("auth.failed", failure_type="expired") * 2)
        exporter.wait_metric(
            "sustainbot_authentication_failures_total", 6.0, failure_type="expired"
        )
        exporter.wait_metric("log_exporter_file_rotations_total", 1.0)
        size = log.stat().st_size + rotated.stat().st_size
        exporter.wait_metric("log_exporter_bytes_read_total", float(size))
        assert exporter.stop() == 0


def test_listening_beyond_loopback_without_auth_is_warned(tmp_path: Path) -> None:
    """Binding every interface without a web config works but logs a warning saying so."""
    port = free_port()
    args = ["--file", str(tmp_path / "x.jsonl"), "--web.listen-address", f"0.0.0.0:{port}"]
    with Exporter(tmp_path, args, port=port) as exporter:
        exporter.wait_healthy()
        assert exporter.stop() == 0
    warnings = [r for r in exporter.log_records() if r["level"] == "warning"]
    assert any("without authentication" in r["msg"] for r in warnings), warnings


def test_loopback_listen_logs_no_exposure_warning(tmp_path: Path) -> None:
    """The default loopback listener is quiet: no exposure warning to get used to ignoring."""
    with Exporter(tmp_path, ["--file", str(tmp_path / "x.jsonl")]) as exporter:
        exporter.wait_healthy()
        assert exporter.stop() == 0
    assert not [r for r in exporter.log_records() if r["level"] == "warning"]


def test_basic_auth_without_tls_is_warned(tmp_path: Path) -> None:
    """Basic auth over plain HTTP works but logs that passwords travel in clear text."""
    import bcrypt

    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    args = ["--file", str(tmp_path / "x.jsonl"), "--web.config.file", str(web)]
    with Exporter(tmp_path, args, auth=("prometheus", "pw")) as exporter:
        exporter.wait_healthy()
        assert exporter.stop() == 0
    warnings = [r["msg"] for r in exporter.log_records() if r["level"] == "warning"]
    assert any("without TLS" in msg for msg in warnings), warnings
