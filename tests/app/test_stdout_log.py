"""SustainBot with ``JSON_LOG_PATH=-``: its events on stdout, one whole line per write, framed by a
container runtime into a CRI log that ``log-exporter replay --input-format cri`` counts."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from log_exporter.cli import main as exporter
from tests.support.kubelet import cri_lines
from tests.support.processes import clean_env, terminate
from tests.support.serve import parse_metrics, sample
from tests.support.service import BIN, SECRET
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow


class Runtime:
    """What containerd does with a container's stdout: each line it reads from the pipe written
    to the CRI log, cut into P chunks over 16 KiB."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.lines: list[bytes] = []
        self._proc = proc
        self._log = log
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        assert self._proc.stdout is not None
        with open(self._log, "ab") as out:
            for raw in self._proc.stdout:
                line = raw.rstrip(b"\n")
                self.lines.append(line)
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
                out.write(b"".join(cri_lines(stamp, "stdout", line)))
                out.flush()

    def join(self) -> None:
        self._thread.join(timeout=60)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


def test_events_go_to_stdout_whole_and_a_cri_replay_counts_each(tmp_path: Path) -> None:
    """Two workers answering concurrent requests write every event to stdout as one whole JSON
    line (no file is created); framed by the runtime, replay counts each event once and the
    one line that is no event (the listening address) as unstructured."""
    env = clean_env()
    env.update({"SUSTAINBOT_JWT_SECRET": SECRET, "JSON_LOG_PATH": "-"})
    log = tmp_path / "0.log"
    with (tmp_path / "stderr").open("wb") as err:
        proc = subprocess.Popen(
            [str(BIN), "serve", "--port", "0", "--workers", "2"],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=tmp_path,
        )
    try:
        runtime = Runtime(proc, log)

        def announced() -> int | None:
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            for line in runtime.lines:
                match = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
                if match:
                    return int(match.group(1))
            return None

        port = wait_for(announced, "sustainbot serve to announce its port")

        def get(path: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("GET", path)
                return conn.getresponse().status
            finally:
                conn.close()

        wait_for(lambda: get("/healthz") == 200, "/healthz to answer 200")
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get, ["/healthz", "/no-such-page"] * 40))
        assert statuses.count(200) == 40
    finally:
        terminate(proc)
    runtime.join()
    assert not (tmp_path / "logs").exists()
    (*events,) = (json.loads(line) for line in runtime.lines if not line.startswith(b"sustainbot:"))
    assert len(runtime.lines) - len(events) == 1
    assert {"app.started", "http.request", "app.stopped"} <= {e["event"] for e in events}
    out = tmp_path / "out.prom"
    assert exporter(["replay", "--quiet", "--input-format", "cri", "-o", str(out), str(log)]) == 0
    samples = parse_metrics(out.read_text())
    assert sample(samples, "log_exporter_lines_total", result="parsed") == len(events)
    assert sample(samples, "log_exporter_lines_total", result="unstructured") == 1
    assert sample(samples, "log_exporter_lines_total", result="malformed") == 0
