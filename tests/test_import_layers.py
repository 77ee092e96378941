"""The import layers of log_exporter: the stages below a sink never import it, nor a command.

Every import counts, at module level or inside a function, under TYPE_CHECKING too: a cycle
hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "log_exporter"
# Where data comes from and what the pipeline applies: none of them knows where it goes.
STAGES = ("sources", "spec", "parse", "values", "limits", "pipeline", "store")
# Where data goes: the exposition at scrape, replay's output, CloudWatch.
SINKS = (
    "prometheus",
    "cloudwatch",
    "replay",
    "server",
    "collector",
    "omencoder",
    "omfamily",
    "selfmetrics",
    "webconfig",
    "openmetrics",
)
COMMANDS = ("cli", "serve", "__main__")


def _group(module: str) -> str:
    """``log_exporter.spec.codegen`` -> ``spec``: the package, or the flat module."""
    return module.split(".")[1] if module.count(".") else module


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every log_exporter module ``path`` imports, wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            # ``from log_exporter import settings`` imports the module log_exporter.settings.
            if node.module == "log_exporter":
                names = [f"log_exporter.{a.name}" for a in node.names]
            else:
                names = [node.module]
        else:
            continue
        yield from (n for n in names if n.startswith("log_exporter."))


def _graph() -> dict[str, set[str]]:
    """Group -> the groups its modules import (itself left out)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _group(_module_of(path))
        if source == "log_exporter":
            continue
        targets = graph.setdefault(source, set())
        targets.update(_group(m) for m in _imports(path))
        targets.discard(source)
    return graph


def test_stages_import_no_sink_and_no_command() -> None:
    """No module of sources, spec, parse, values, limits, pipeline or store imports a sink or a
    command, not even inside a function."""
    graph = _graph()
    wrong = {g: sorted(graph.get(g, set()) & {*SINKS, *COMMANDS}) for g in STAGES}
    assert not {g: w for g, w in wrong.items() if w}


def test_sinks_import_no_command() -> None:
    """No module of a sink (replay, CloudWatch, the exposition) imports a command module."""
    graph = _graph()
    wrong = {g: sorted(graph.get(g, set()) & set(COMMANDS)) for g in SINKS}
    assert not {g: w for g, w in wrong.items() if w}


def test_packages_of_the_stages_are_in_no_cycle() -> None:
    """No chain of imports leads from sources, spec or replay back to itself."""
    graph = _graph()
    for start in ("sources", "spec", "replay"):
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            group = todo.pop()
            assert group != start, f"{start} imports itself through another package"
            if group not in seen:
                seen.add(group)
                todo.extend(graph.get(group, ()))
