"""docs/architecture.md names every module of both packages, and only modules that exist.

A newcomer finds a behaviour by reading the module tables there; a module missing from them, or
a row naming a module that was moved away, sends them to the wrong file.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
PACKAGES = ("log_exporter", "sustainbot")
# The first cell of a table row: `log_exporter.sources.tail.follow` or `sustainbot.emit`.
ROW = re.compile(r"^\|\s*`((?:log_exporter|sustainbot)(?:\.[a-z_0-9]+)*)`\s*\|", re.M)


def _modules() -> set[str]:
    """Every module and subpackage of the two packages, as dotted names."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names - set(PACKAGES)


def _named() -> list[str]:
    return ROW.findall(DOC.read_text(encoding="utf-8"))


def test_every_module_is_named_in_the_architecture_doc() -> None:
    """A module that no row of docs/architecture.md names fails, so a new one gets its row."""
    missing = sorted(_modules() - set(_named()))
    assert not missing, f"docs/architecture.md has no row for: {', '.join(missing)}"


def test_every_module_the_architecture_doc_names_exists() -> None:
    """A row naming a module that does not exist (moved, renamed, deleted) fails."""
    ghosts = sorted(set(_named()) - _modules())
    assert not ghosts, f"docs/architecture.md names modules that do not exist: {', '.join(ghosts)}"


def test_no_module_is_named_twice() -> None:
    """Each module has one row, so there is one place that says what it is for."""
    named = _named()
    twice = sorted({n for n in named if named.count(n) > 1})
    assert not twice, f"named more than once: {', '.join(twice)}"
