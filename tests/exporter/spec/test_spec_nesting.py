"""A spec nested deeper than any spec needs is a clear error everywhere a spec is read: the
loader, `check-spec`, and a SIGHUP reload, which keeps the old spec (docs/spec.md)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from log_exporter.spec import SpecError, load_spec
from tests.support.contract import contract_line
from tests.support.serve import Exporter, append, run_cli

DEEP_ARRAY = "version = 1\nx = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_TABLE = "version = 1\nx = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n"
# Parsed by tomllib without trouble, but deeper than the loader walks.
NESTED_40 = "version = 1\nx = " + "[" * 40 + "]" * 40 + "\n"

PINGS = """version = 1

[metrics.demo_pings_total]
type = "counter"
help = "Pings, by colour."
events = ["ping"]
labels = ["color"]
"""


@pytest.mark.parametrize("text", [DEEP_ARRAY, DEEP_TABLE, NESTED_40], ids=["array", "table", "40"])
def test_deep_nesting_is_a_spec_error(text: str) -> None:
    """Arrays or inline tables nested thousands deep give a SpecError naming the file, never a
    RecursionError."""
    with pytest.raises(SpecError) as caught:
        load_spec(text, "deep.toml")
    assert caught.value.errors
    assert all(e.startswith("deep.toml: ") and "nested deeper" in e for e in caught.value.errors)


def test_check_spec_answers_deep_nesting_without_a_traceback(tmp_path: Path) -> None:
    """`check-spec` on a deeply nested file exits 1 with one line naming the file."""
    spec = tmp_path / "deep.toml"
    spec.write_text(DEEP_ARRAY, encoding="utf-8")
    result = run_cli(["check-spec", str(spec)])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{spec}: ")


@pytest.mark.slow
def test_sighup_with_a_deeply_nested_spec_keeps_the_old_one(tmp_path: Path) -> None:
    """A SIGHUP reload of a spec nested thousands deep is a failed reload: the process lives and
    keeps counting with the old spec."""
    spec, log = tmp_path / "spec.toml", tmp_path / "app.jsonl"
    spec.write_text(PINGS)
    append(log, contract_line("ping", color="blue"))
    with Exporter(tmp_path, ["--file", str(log), "--spec", str(spec)]) as exporter:
        exporter.wait_healthy()
        exporter.wait_metric("demo_pings_total", 1.0, color="blue")
        spec.write_text(DEEP_TABLE)
        exporter.send(signal.SIGHUP)
        exporter.wait_metric("log_exporter_spec_reloads_total", 1.0, result="failure")
        assert exporter.proc.poll() is None
        append(log, contract_line("ping", color="blue"))
        exporter.wait_metric("demo_pings_total", 2.0, color="blue")
        assert exporter.stop() == 0
