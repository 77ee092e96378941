"""A real Prometheus server for the tests, on an ephemeral loopback port, queried over its API."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import spawn, terminate
from tests.support.waits import wait_for

# Scraping nothing: for the tests that query blocks backfilled by promtool.
IDLE = {"global": {"evaluation_interval": "1h"}}


class Prometheus:
    """A real Prometheus with ``config`` (JSON is valid YAML), its log and config in
    ``directory``, its TSDB in ``data`` (by default a new one in ``directory``), and any other
    command-line ``flags`` (``--enable-feature=...``).

    Retention is long enough for data backfilled from a day ago not to be deleted at the first
    compaction.
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        config: dict[str, Any] = IDLE,
        data: Path | None = None,
        ready_within: float = 120.0,
        flags: tuple[str, ...] = (),
    ) -> None:
        config_path = directory / "prometheus.yml"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        self.log_path = directory / "prometheus.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'tsdb' if data is None else data}",
                "--storage.tsdb.retention.time=400d",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *flags,
            ],
            self.log_path,
            cwd=directory,
        )
        try:
            wait_for(self._ready, "Prometheus to be ready", timeout=ready_within, explain=self.log)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        """The end of Prometheus's own log, for a failure message."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=5) as resp:
                return bool(resp.status == 200)
        except OSError:  # not listening yet, or 503 while it loads the blocks
            return False

    def api(self, path: str, **params: str | float) -> Any:
        """Call the HTTP API; a query error comes back as the JSON error body, not an exception."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                return json.load(exc)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (at ``at``, by default now); fails on a query error."""
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self.api("/api/v1/query", **params)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """``/api/v1/query_exemplars``: per series, its labels and exemplars (needs the server
        started with ``--enable-feature=exemplar-storage``); fails on a query error."""
        body = self.api(
            "/api/v1/query_exemplars", query=expr, start=f"{start:.3f}", end=f"{end:.3f}"
        )
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        """The scrape targets with their health and last error."""
        return list(self.api("/api/v1/targets")["data"]["activeTargets"])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within the deadline."""
        terminate(self.proc)
