"""The command lines an operator of node_exporter types out of habit, run as real processes:
each does what node_exporter's would (docs/exporter.md)."""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from log_exporter import buildinfo, settings
from log_exporter.prometheus import selfmetrics
from tests.support.ports import free_port
from tests.support.processes import binary, clean_env
from tests.support.serve import Exporter, append, parse_metrics, run_cli, sample
from tests.support.waits import DEADLINE

REPO = Path(__file__).resolve().parents[3]
VERSION_LINE = re.compile(
    r"^(?P<name>[\w-]+), version (?P<version>\S+) \(revision: (?P<rev>\w+)\)$"
)


def _git_head() -> str | None:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return None
    result = subprocess.run([git, "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=False, timeout=DEADLINE)  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.fixture
def curl() -> str:
    """The path of a real curl, the client an operator checks an exporter with; skips where it
    is missing, before anything is started."""
    return binary("curl")


def _curl(curl: str, url: str) -> tuple[str, str]:
    """(HTTP status, body) of ``curl URL``; status "000" when nothing answered."""
    result = subprocess.run(
        [curl, "--silent", "--max-time", "30", "--write-out", "\n%{http_code}", url],
        capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    body, _, status = result.stdout.rpartition("\n")
    return status, body


def _run(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    module = {"log-exporter": "log_exporter", "sustainbot": "sustainbot.cli"}[program]
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=clean_env(), timeout=DEADLINE, check=False)  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ("log-exporter", "--version"),
        ("log-exporter", "serve", "--version"),
        ("log-exporter", "replay", "--version"),
        ("log-exporter", "check-spec", "--version"),
        ("sustainbot", "--version"),
        ("sustainbot", "serve", "--version"),
        ("sustainbot", "token", "--version"),
    ],
)
def test_version_missing_on_a_command(argv: tuple[str, ...]) -> None:
    """`PROGRAM [COMMAND] --version` prints name, version, revision and Python, exit 0, as the
    Prometheus tools do."""
    result = _run(*argv)
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    match = VERSION_LINE.match(first)
    assert match is not None, result.stdout
    assert match["name"] == argv[0]
    assert match["version"] == buildinfo.version()
    head = _git_head()
    if head is not None:  # a checkout: the editable install reports its commit
        assert match["rev"] == head
    assert any(line.split() == ["python", "version:", *line.split()[2:]] for line in rest)
    assert sys.version.split()[0] in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ("log-exporter", "serve", "--lis", "127.0.0.1:0"),
        ("log-exporter", "serve", "--web.listen", "127.0.0.1:0"),
        ("log-exporter", "--vers"),
        ("log-exporter", "replay", "--form", "openmetrics", "x"),
        ("sustainbot", "serve", "--por", "1"),
    ],
)
def test_abbreviated_flag_is_refused_with_a_usage_error(argv: tuple[str, ...]) -> None:
    """An abbreviation of a flag is refused with a usage error (exit 2), never taken for it."""
    result = _run(*argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert "error:" in result.stderr


def test_second_listen_address_is_refused() -> None:
    """node_exporter listens on each of several --web.listen-address; this exporter serves one,
    so a second is refused (exit 2) instead of silently replacing the first."""
    result = _run("log-exporter", "serve", "--web.listen-address=127.0.0.1:0", "--listen=:0")
    assert (result.returncode, result.stdout) == (2, "")
    assert "--web.listen-address given twice" in result.stderr


def test_help_hides_a_default_or_variable() -> None:
    """`serve --help` names every flag's environment variable and default."""
    result = _run("log-exporter", "serve", "--help")
    assert result.returncode == 0
    # argparse wraps lines, at hyphens too: compare without any white space.
    text = "".join(result.stdout.split())
    for row in (*settings.SERVE, *settings.CLOUDWATCH):
        shown = row.help_text.replace("%%", "%")
        assert "".join(shown.split()) in text, row.flag
        assert row.env[0] in shown and "default" in shown


def test_every_interface_listen_address_is_refused(
    curl: str, tmp_path: Path, contract_line: Callable[..., bytes]
) -> None:
    """`--web.listen-address=:PORT` serves on every interface, IPv4 and IPv6 loopback alike,
    as node_exporter's `:9100` does."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.jwt_validated", outcome="success"))
    port = free_port()
    with Exporter(tmp_path, ["--file", str(log), f"--web.listen-address=:{port}"],
                  port=port) as exporter:  # fmt: skip
        exporter.wait_healthy()
        status, body = _curl(curl, f"http://127.0.0.1:{port}/metrics")
        assert status == "200" and "log_exporter_lines_total" in body
        if socket.has_ipv6:
            assert _curl(curl, f"http://[::1]:{port}/metrics")[0] == "200"
        serving = next(r for r in exporter.log_records() if r["msg"] == "serving")
        assert serving["url"] == f"http://[::]:{port}/metrics"
        assert any("beyond this host" in r["msg"] for r in exporter.log_records())
        assert exporter.stop() == 0


def test_telemetry_path_still_served_on_the_old_path(
    curl: str, tmp_path: Path, contract_line: Callable[..., bytes]
) -> None:
    """`--web.telemetry-path=/custom` serves the metrics there, links it from the landing page,
    and answers 404 on /metrics, as node_exporter does."""
    log = tmp_path / "app.jsonl"
    append(log, contract_line("auth.jwt_validated", outcome="success"))
    with Exporter(tmp_path, ["--file", str(log), "--web.telemetry-path=/custom"]) as exporter:
        exporter.wait_healthy()
        status, body = _curl(curl, f"{exporter.base}/custom")
        assert status == "200"
        samples = parse_metrics(body)
        assert sample(samples, "log_exporter_lines_total", result="parsed") is not None
        assert _curl(curl, f"{exporter.base}/metrics")[0] == "404"
        assert 'href="/custom"' in _curl(curl, f"{exporter.base}/")[1]
        assert exporter.stop() == 0


def test_standard_metrics_missing_from_metrics(tmp_path: Path) -> None:
    """/metrics carries client_python's process_* and python_* families, with real values, and
    build_info with the revision, so the usual memory, CPU and descriptor panels find them."""
    with Exporter(tmp_path, ["--file", str(tmp_path / "absent.jsonl")]) as exporter:
        exporter.wait_healthy()
        samples = exporter.metrics()
        assert exporter.stop() == 0
    names = {name for name, _ in samples}
    families = {n.removesuffix("_total") for n in selfmetrics.STANDARD}
    assert {n.removesuffix("_total") for n in names} >= families
    assert (sample(samples, "process_resident_memory_bytes") or 0) > 1e6
    assert (sample(samples, "process_open_fds") or 0) >= 3
    builds = [labels for name, labels in samples if name == "log_exporter_build_info"]
    assert [dict(b)["revision"] for b in builds] == [buildinfo.revision()]


def test_deprecated_spellings_stop_working(tmp_path: Path) -> None:
    """`--listen`, `--web-config` and `--log-level` still work, each logged once as deprecated
    naming the flag to use instead."""
    web = tmp_path / "web.yml"
    web.write_text("", encoding="utf-8")
    port = free_port()
    args = ["--file", str(tmp_path / "x.jsonl"), "--listen", f"127.0.0.1:{port}",
            "--web-config", str(web), "--log-level", "debug", "--log-level", "info"]  # fmt: skip
    with Exporter(tmp_path, args, port=port) as exporter:
        exporter.wait_healthy()
        assert exporter.stop() == 0
    warned = [r for r in exporter.log_records() if "deprecated" in r["msg"]]
    assert sorted((r["flag"], r["use"]) for r in warned) == [
        ("--listen", "--web.listen-address"),
        ("--log-level", "--log.level"),
        ("--web-config", "--web.config.file"),
    ]


def test_logfmt_lines_are_json(tmp_path: Path) -> None:
    """`--log.format=logfmt --log.level=warn` writes key=value lines, warnings and errors only."""
    result = run_cli(["serve", "--file", "x", "--log.format=logfmt", "--log.level=warn",
                      "--web.listen-address=bogus"], cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("ts=") for line in lines), result.stderr
    assert " level=error " in lines[-1]
    assert "msg=\"--web.listen-address 'bogus': expected [host]:port" in lines[-1]


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of both programs, the subcommands' included."""
    from log_exporter.cli import build_parser
    from sustainbot.cli import _parser

    found = []
    for name, parser in (("log-exporter", build_parser({})), ("sustainbot", _parser())):
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return found


def test_help_states_every_default_and_no_parser_accepts_abbreviations() -> None:
    """Every option of every command of both programs says its default (or that it is
    required) in --help, and no parser accepts an abbreviation."""
    parsers = _parsers()
    names = {name for name, _ in parsers}
    assert names >= {"log-exporter serve", "log-exporter replay", "sustainbot serve"}
    for name, parser in parsers:
        assert parser.allow_abbrev is False, name
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            help_text = action.help or ""
            assert "default" in help_text or "required" in help_text, (name, action.dest)
