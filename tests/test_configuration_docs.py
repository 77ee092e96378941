"""Every setting the programs read is in .env.example and explained in docs/configuration.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTING = re.compile(r"""["'](JSON_LOG_PATH|(?:SUSTAINBOT|LOG_EXPORTER|CLOUDWATCH)_[A-Z_]+)["']""")


def _settings_read_by_code() -> set[str]:
    names: set[str] = set()
    constants: set[str] = set()
    for package in ("sustainbot", "log_exporter"):
        for source in (ROOT / package).rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            names.update(SETTING.findall(text))
            # A module constant named like a setting (listed in __all__) is not a setting.
            constants.update(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[:=]", text, flags=re.MULTILINE))
    return names - constants


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_env_example_missing_a_setting() -> None:
    """A setting the code reads but .env.example does not list would surprise an operator."""
    code = _settings_read_by_code()
    assert code, "the scan found no settings at all; the pattern is broken"
    assert code - _env_example_names() == set()


def test_env_example_lists_a_setting_nobody_reads() -> None:
    """A setting in .env.example that no code reads would silently do nothing."""
    assert _env_example_names() - _settings_read_by_code() == set()


def test_configuration_doc_missing_a_setting() -> None:
    """docs/configuration.md explains every setting in .env.example."""
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = {name for name in _env_example_names() if f"`{name}`" not in doc}
    assert missing == set()


def test_configuration_doc_stale_against_program_pages() -> None:
    """docs/configuration.md is regenerated whenever a program's settings table changes."""
    script = ROOT / "scripts" / "gen_configuration_doc.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
