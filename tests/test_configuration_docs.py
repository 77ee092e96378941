"""Every setting the programs read is in .env.example and explained in docs/configuration.md, and
the exporter reads its settings only through its settings table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from log_exporter import settings

ROOT = Path(__file__).resolve().parent.parent
SETTING = re.compile(r"""["'](JSON_LOG_PATH|(?:SUSTAINBOT|LOG_EXPORTER|CLOUDWATCH)_[A-Z_]+)["']""")
# What reading a variable looks like in Python, besides passing the environment on.
READS_ENVIRONMENT = re.compile(r"environ\.get\(|environ\[|getenv\(")


def _named_in(package: str) -> set[str]:
    """The settings named as string literals in ``package``'s code."""
    names: set[str] = set()
    constants: set[str] = set()
    for source in (ROOT / package).rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        names.update(SETTING.findall(text))
        # A module constant named like a setting (listed in __all__) is not a setting.
        constants.update(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[:=]", text, flags=re.MULTILINE))
    return names - constants


def _exporter_table() -> set[str]:
    return {name for s in (*settings.SERVE, *settings.CLOUDWATCH) for name in s.env}


def _settings_read_by_code() -> set[str]:
    return _named_in("sustainbot") | _exporter_table()


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_env_example_lists_every_setting() -> None:
    """A setting the code reads but .env.example does not list would surprise an operator."""
    code = _settings_read_by_code()
    assert code, "the scan found no settings at all; the pattern is broken"
    assert code - _env_example_names() == set()


def test_env_example_lists_a_setting_nobody_reads() -> None:
    """A setting in .env.example that no code reads would silently do nothing."""
    assert _env_example_names() - _settings_read_by_code() == set()


def test_configuration_doc_explains_every_setting() -> None:
    """docs/configuration.md explains every setting in .env.example."""
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = {name for name in _env_example_names() if f"`{name}`" not in doc}
    assert missing == set()


def test_configuration_doc_stale_against_program_pages() -> None:
    """docs/configuration.md (and the settings tables of the exporter's pages) are regenerated
    whenever a settings table changes."""
    script = ROOT / "scripts" / "gen_configuration_doc.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_exporter_code_names_no_setting_outside_its_table() -> None:
    """A variable the exporter's code names is a row of the settings table, so it is documented."""
    assert _named_in("log_exporter") - _exporter_table() == set()


def test_only_the_settings_table_reads_the_environment() -> None:
    """Outside log_exporter/settings.py the exporter reads no variable itself: its values come
    from one overlay (flag, environment, default), not from a lookup nobody documented."""
    readers = {
        str(source.relative_to(ROOT))
        for source in (ROOT / "log_exporter").rglob("*.py")
        if source != ROOT / "log_exporter" / "settings.py"
        and READS_ENVIRONMENT.search(source.read_text(encoding="utf-8"))
    }
    assert readers == set()
