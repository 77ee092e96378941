"""Prometheus operators' habits on the command line: durations written as Prometheus writes them,
a subcommand's own usage on a wrong flag, a refused ``--step`` that would do nothing, and the
built-in spec printed to start one's own from (docs/exporter.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from log_exporter import settings
from log_exporter.cli import build_parser
from tests.support.serve import run_cli


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 5.0), ("2.5", 2.5), ("20s", 20.0), ("1m", 60.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
def test_duration_is_read_as_prometheus_writes_it(text: str, seconds: float) -> None:
    """A number of seconds and a Prometheus duration both give the seconds they stand for."""
    assert settings.seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1m1h", "1.5m", "20 s", "abc"])
def test_malformed_duration_is_refused(text: str) -> None:
    """Units out of order, fractions of a unit and stray words are not durations."""
    with pytest.raises(ValueError, match="not a duration"):
        settings.seconds(text)


def test_serve_takes_durations_from_flags_and_variables() -> None:
    """`--state-interval 1m` and `LOG_EXPORTER_DRAIN_TIMEOUT=20s` reach serve as seconds."""
    parser = build_parser({"LOG_EXPORTER_DRAIN_TIMEOUT": "20s"})
    args = parser.parse_args(["serve", "--state-interval", "1m", "--drain-quiet", "1500ms"])
    assert (args.state_interval, args.drain_quiet, args.drain_timeout) == (60.0, 1.5, 20.0)


def test_bad_duration_names_the_flag_and_variable() -> None:
    """A duration that does not parse is a usage error naming the flag and its variable."""
    result = run_cli(["serve", "--state-interval", "5 minutes"])
    assert result.returncode == 2
    assert "--state-interval" in result.stderr
    assert "LOG_EXPORTER_STATE_INTERVAL" in result.stderr
    assert "a duration such as 20s or 1m" in result.stderr


def test_unknown_flag_shows_the_subcommands_own_usage() -> None:
    """`serve --bogus` answers with serve's usage (its flags), not the list of subcommands."""
    result = run_cli(["serve", "--bogus"])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("usage: log-exporter serve")
    assert "log-exporter serve: error: unrecognized arguments: --bogus" in result.stderr


def test_step_without_openmetrics_is_refused(tmp_path: Path) -> None:
    """`--step` only samples OpenMetrics output; with the text format it is refused, exit 2,
    rather than silently ignored."""
    log = tmp_path / "app.jsonl"
    log.write_text("", encoding="utf-8")
    result = run_cli(["replay", "--step", "1m", str(log)])
    assert (result.returncode, result.stdout) == (2, "")
    assert "--step applies to --format openmetrics only" in result.stderr


def test_step_as_a_duration_samples_like_its_seconds(tmp_path: Path) -> None:
    """`--step 1m` writes the same OpenMetrics backfill as `--step 60`."""
    log = tmp_path / "app.jsonl"
    log.write_text(
        "".join(
            f'{{"event":"aim.request","timestamp":"2026-12-07T10:0{m}:00Z",'
            f'"workflow_name":"w","drag_mode":"draft","actor_role":"analyst"}}\n'
            for m in range(5)
        ),
        encoding="utf-8",
    )
    outputs = []
    for step in ("1m", "60"):
        result = run_cli(["replay", "--format", "openmetrics", "--step", step, str(log)])
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    # One sample a minute over the five minutes the events span.
    assert outputs[0].count("sustainbot_aim_requests_total{") >= 5


def test_printed_spec_is_the_built_in_one_and_loads(tmp_path: Path) -> None:
    """`print-spec` writes the built-in spec, which `check-spec` accepts as a file of one's own."""
    printed = run_cli(["print-spec"])
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("# SustainBot's event contract")
    mine = tmp_path / "mine.toml"
    mine.write_text(printed.stdout, encoding="utf-8")
    checked = run_cli(["check-spec", str(mine)])
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("OK: ")
