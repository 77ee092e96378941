"""Helpers shared by the deployment tests: repository paths, YAML, and the metric names the
shipped queries may use."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.support.replay_model import CONTRACT_FAMILIES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` imported as a module (the scripts are not a package), so tests call
    its generator directly."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    """Parse every document of a multi-document YAML file, skipping empty ones."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


# The metric families the event contract derives, and the exporter's self-metrics: every query
# shipped in deploy/ and dashboards/ may use only these (plus Prometheus's own `up`).
CONTRACT_METRICS = frozenset(CONTRACT_FAMILIES)
# Self-metrics served only while CloudWatch shipping is on.
CLOUDWATCH_ONLY_METRICS = frozenset({"log_exporter_rotation_lost_lines_total"})
SELF_METRICS = {
    "log_exporter_lines_total",
    "log_exporter_bytes_read_total",
    "log_exporter_lag_bytes",
    "log_exporter_last_event_timestamp_seconds",
    "log_exporter_build_info",
    "log_exporter_series_overflow_total",
    "log_exporter_invalid_values_total",
    # Served with --state only, as every shipped sidecar runs.
    "log_exporter_state_saves_total",
    "log_exporter_resume_misses_total",
    "log_exporter_file_rotations_total",
    # Served with CloudWatch shipping only.
    "log_exporter_cloudwatch_backlog_bytes",
    "log_exporter_cloudwatch_rejected_events_total",
    # client_python's process collector (issue 13's standard metrics).
    "process_resident_memory_bytes",
    *CLOUDWATCH_ONLY_METRICS,
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def json_patch(doc: Any, operations: list[dict[str, Any]]) -> Any:
    """``doc`` after RFC 6902 ``operations`` (add, remove, replace, move), as kustomize applies
    them: enough to check an overlay's patches offline, without kustomize."""
    import copy

    doc = copy.deepcopy(doc)

    def parent(path: str) -> tuple[Any, str]:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def remove(path: str) -> Any:
        node, key = parent(path)
        return node.pop(int(key)) if isinstance(node, list) else node.pop(key)

    def add(path: str, value: Any) -> None:
        node, key = parent(path)
        if isinstance(node, list):
            node.insert(len(node) if key == "-" else int(key), value)
        else:
            node[key] = value

    for op in operations:
        if op["op"] == "add":
            add(op["path"], op["value"])
        elif op["op"] == "remove":
            remove(op["path"])
        elif op["op"] == "replace":
            remove(op["path"])
            add(op["path"], op["value"])
        elif op["op"] == "move":
            add(op["path"], remove(op["from"]))
        else:
            raise ValueError(f"unsupported JSON patch operation {op['op']!r}")
    return doc
