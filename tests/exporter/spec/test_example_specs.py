"""The example specs shipped for other applications' logs: each is valid, passes its own cases
through the real ``test-spec``, ships in the wheel, and exports a promtool-clean page."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import log_exporter
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.spec import read_spec
from log_exporter.spec.reader import EventReader
from log_exporter.spectest import Evaluator, load_cases
from tests.support.serve import run_cli

PACKAGE = Path(log_exporter.__file__).parent
EXAMPLES = PACKAGE / "specs" / "examples"
REPO = PACKAGE.parent
SPECS = sorted(p for p in EXAMPLES.glob("*.toml") if not p.name.endswith(".cases.toml"))
CASES = sorted(EXAMPLES.glob("*.cases.toml"))
# The logs issue 22 asked examples for; a removed example must be a decision, not an accident.
EXPECTED = {"ecs", "k8s-audit", "logrus", "nginx", "pino", "slog", "structlog", "zap"}


def _cases_of(spec: Path) -> Path:
    return spec.with_name(spec.stem + ".cases.toml")


def test_the_promised_examples_are_all_there() -> None:
    """Every log the documentation lists has its example spec."""
    assert {p.stem for p in SPECS} == EXPECTED


def test_every_example_has_a_cases_file_naming_it_and_no_cases_file_is_orphaned() -> None:
    """Each example spec has NAME.cases.toml beside it whose `spec` is that spec, and back."""
    for spec in SPECS:
        cases = _cases_of(spec)
        assert cases.is_file(), f"{spec.name} has no {cases.name}"
        assert load_cases(str(cases)).spec_path == str(EXAMPLES / spec.name)
    assert {c.name for c in CASES} == {_cases_of(s).name for s in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_example_spec_passes_check_spec(spec: Path) -> None:
    """`log-exporter check-spec` accepts the example spec."""
    result = run_cli(["check-spec", str(spec)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_example_passes_its_cases_through_test_spec(spec: Path) -> None:
    """`log-exporter test-spec` runs the example's cases file and every case passes."""
    result = run_cli(["test-spec", str(_cases_of(spec))])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert " 0 failed" in result.stdout


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_sample_line_is_one_json_object_with_a_time_the_spec_reads(spec: Path) -> None:
    """The sample lines are well-formed and timed, so the cases test the spec, not a typo."""
    reader = EventReader(read_spec(str(spec)).input)
    for case in load_cases(str(_cases_of(spec))).cases:
        for line in case.lines:
            event = orjson.loads(line)
            assert isinstance(event, dict), line
            assert reader.time_of(event) is not None, line


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_example_exposition_passes_promtool(spec: Path) -> None:
    """The page the example exports from all its sample lines passes `promtool check metrics`
    (base units, counters ending in _total)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    evaluator = Evaluator(read_spec(str(spec)))
    for case in load_cases(str(_cases_of(spec))).cases:
        evaluator.feed(case.lines)
    registry = CollectorRegistry()
    registry.register(StoreCollector(evaluator.store))
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(registry),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_examples_are_package_data() -> None:
    """pyproject's package data takes every example and cases file into the wheel."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["log_exporter"]
    # As setuptools globs them: a `*` never reaches into a subfolder.
    globs = [re.compile(re.escape(p).replace(r"\*", "[^/]*")) for p in patterns]
    for path in (*SPECS, *CASES):
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(g.fullmatch(relative) for g in globs), relative


ZAP_HEALTH_CHECK = (
    '{"level":"info","ts":1796658333.320765,"logger":"access","msg":"request served",'
    '"request":{"method":"GET","uri":"/healthz","headers":{"User-Agent":["kube-probe/1.29"]}},'
    '"duration":0.000102,"size":2,"status":200}\n'
)


def test_explain_reads_the_event_field_of_input_and_says_which_operator_failed(
    tmp_path: Path,
) -> None:
    """`check-spec --explain` names the event by `[input]`'s event field and, for each metric
    left unchanged, the path and operator whose test failed."""
    sample = tmp_path / "access.jsonl"
    sample.write_text(ZAP_HEALTH_CHECK)
    result = run_cli(["check-spec", str(EXAMPLES / "zap.toml"), "--explain", str(sample)])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "line 1: event 'request served'"
    assert '  http_requests_total{method="GET",status="200"} +1' in lines
    assert (
        "  http_server_errors_total: unchanged: match failed: status is '200' (wants ge 500)"
        in lines
    )
    assert (
        "  http_request_duration_seconds: unchanged: match failed: request.uri is '/healthz'"
        " (wants not '/healthz')" in lines
    )
    assert (
        "  http_curl_requests_total: unchanged: match failed: request.headers.User-Agent.0 is"
        " 'kube-probe/1.29' (wants regex '^curl/')" in lines
    )


def test_explain_of_a_log_without_event_types_shows_the_metrics_without_events(
    tmp_path: Path,
) -> None:
    """A line with no event field still feeds, and --explain shows, the metrics without
    `events` (nginx's log has no event type at all)."""
    sample = tmp_path / "access.jsonl"
    sample.write_text(
        '{"time":"2026-12-07T15:45:33+00:00","request_method":"GET","uri":"/ok","status":200,'
        '"body_bytes_sent":4,"request_time":0.004}\n'
    )
    result = run_cli(["check-spec", str(EXAMPLES / "nginx.toml"), "--explain", str(sample)])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "line 1: no `event` field holding a string"
    assert '  nginx_http_requests_total{method="GET",status="200"} +1' in lines
    assert (
        "  nginx_http_server_errors_total: unchanged: match failed: status is '200'"
        " (wants ge 500)" in lines
    )
