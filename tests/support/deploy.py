"""Helpers shared by the deployment tests: repository paths, YAML, and the metric names the
shipped queries may use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.replay_model import CONTRACT_FAMILIES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    """Parse every document of a multi-document YAML file, skipping empty ones."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


# The metric families the event contract derives, and the exporter's self-metrics: every query
# shipped in deploy/ and dashboards/ may use only these (plus Prometheus's own `up`).
CONTRACT_METRICS = frozenset(CONTRACT_FAMILIES)
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
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
