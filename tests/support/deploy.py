"""Helpers shared by the deployment tests: repository paths, YAML, a real Prometheus, and the
metric names the shipped queries may use."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ports import free_port
from tests.support.processes import spawn, terminate
from tests.support.replay_model import CONTRACT_FAMILIES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(path: Path) -> list[Any]:
    """Parse every document of a multi-document YAML file, skipping empty ones."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


class Prometheus:
    """A real Prometheus on an ephemeral loopback port over ``data``, scraping nothing.

    The backfill and dashboard tests query blocks made by promtool; retention is long enough
    for their data from a day ago not to be deleted at the first compaction.
    """

    def __init__(self, binary: str, data: Path, tmp: Path, ready_within: float = 120.0) -> None:
        config = tmp / "prometheus.yml"
        config.write_text("global:\n  evaluation_interval: 1h\n", encoding="utf-8")
        self.log_path = tmp / "prometheus.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=400d",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            self.log_path,
        )
        try:
            self._wait_ready(ready_within)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:  # not listening yet, or 503 while it loads the blocks
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)  # polling a condition with a deadline, not waiting for luck

    def api(self, path: str, **params: str | float) -> Any:
        """Call the HTTP API; a query error comes back as the JSON error body, not an exception."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` at ``at``; fails the test on a query error."""
        body = self.api("/api/v1/query", query=expr, time=f"{at:.3f}")
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within a minute."""
        terminate(self.proc)


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
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
