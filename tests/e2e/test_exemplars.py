"""From a metric to the requests behind it: a real Prometheus (exemplar storage on) scrapes the real
sidecar tailing the log the real SustainBot writes under load, and every trace id it stores as an
exemplar leads to that request's events in the JSONL (docs/exporter.md, "Exemplars")."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sustainbot.auth import mint_token
from sustainbot.settings import Settings
from tests.support.load import scraping_sidecar, send_governed
from tests.support.prometheus import Prometheus
from tests.support.serve import Exporter
from tests.support.service import SECRET, Service
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

CLIENTS = 6
REQUESTS_PER_CLIENT = 60
DURATION = "sustainbot_governed_workflow_duration_seconds"
DETECTIONS = "sustainbot_prescriptive_language_detections_total"
# Governed executions of several workflows, modes and outcomes; most texts hold prescriptive
# phrases ("should", "must"), one asks the workflow to fail.
BODIES = (
    ("approver", "deploy_staging", "execute", "Deploy api@1.4.2. You must check it."),
    ("analyst", "carbon_audit", "analysis", "We used 1,200 kWh. You should always check."),
    ("engineer", "generate_report", "draft", "You should always check the meters."),
    ("admin", "generate_report", "execute", "Board summary #simulate-failure"),
    ("admin", "summarise_incident", "research", "Sev1 at 09:14. You must restore it."),
)


def _events_by_trace(log: Path) -> dict[str, list[dict[str, Any]]]:
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in log.read_bytes().splitlines():
        event = json.loads(line)
        by_trace[event["trace_id"]].append(event)
    return by_trace


def _exemplar_count(prom: Prometheus, expr: str, start: float) -> int:
    return sum(len(s["exemplars"]) for s in prom.exemplars(expr, start, time.time() + 60))


def test_prometheus_exemplars_lead_to_the_requests_events_in_the_log(
    tmp_path: Path, prometheus_binary: str
) -> None:
    """Under load, Prometheus stores exemplars for the workflow duration histogram and the
    detections counter; each trace id is a request whose matching event (same labels, the
    exemplar's value and timestamp) and audit entry are in the JSONL."""
    log = tmp_path / "logs" / "sustainbot.jsonl"
    settings = Settings(jwt_secret=SECRET)
    tokens = {r: mint_token(settings, actor="Dana Operator", role=r) for r, *_ in BODIES}
    start = time.time() - 60
    with (
        Exporter(tmp_path, ["--file", str(log)]) as exporter,
        Service(tmp_path, log, workers=2, threads=4) as service,
    ):
        exporter.wait_healthy()
        service.start()
        # Prometheus 2.42 asks for OpenMetrics first in its Accept header (exemplars exist only
        # there); newer ones take scrape_protocols, older ones would fail on the unknown key.
        prom = scraping_sidecar(
            prometheus_binary,
            tmp_path / "prometheus",
            exporter.port,
            flags=("--enable-feature=exemplar-storage",),
        )
        try:
            send_governed(
                service.port, tokens, BODIES, clients=CLIENTS, requests=REQUESTS_PER_CLIENT
            )
            # Only a scrape after the last event is sure to show each series' latest exemplar,
            # and every series' exemplars must be in: wait until the counts stop growing.
            counts: list[tuple[int, int]] = []

            def settled() -> bool:
                counts.append(
                    (
                        _exemplar_count(prom, DURATION + "_bucket", start),
                        _exemplar_count(prom, DETECTIONS, start),
                    )
                )
                return len(counts) >= 3 and counts[-1] == counts[-3] and min(counts[-1]) > 0

            wait_for(settled, "Prometheus to hold the exemplars", explain=prom.log)
            # Prometheus's own OpenMetrics parser took every scrape.
            targets = prom.active_targets()
            assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")], targets
            durations = prom.exemplars(DURATION + "_bucket", start, time.time() + 60)
            detections = prom.exemplars(DETECTIONS, start, time.time() + 60)
        finally:
            prom.stop()
        assert service.stop() == 0

    by_trace = _events_by_trace(log)
    seen = 0
    for series in durations:
        labels = series["seriesLabels"]
        for exemplar in series["exemplars"]:
            events = by_trace[exemplar["labels"]["trace_id"]]
            (done,) = [e for e in events if e["event"] == "workflow.completed"]
            assert (done["workflow_name"], done["outcome"], done["drag_mode"]) == (
                labels["workflow_name"],
                labels["outcome"],
                labels["drag_mode"],
            )
            assert float(exemplar["value"]) == done["duration_seconds"]
            assert done["duration_seconds"] <= float(labels["le"])
            assert exemplar["timestamp"] == pytest.approx(_seconds(done["timestamp"]), abs=0.001)
            assert any(e["event"] == "audit.entry" for e in events)
            seen += 1
    for series in detections:
        labels = series["seriesLabels"]
        for exemplar in series["exemplars"]:
            events = by_trace[exemplar["labels"]["trace_id"]]
            found = [
                e
                for e in events
                if e["event"] == "prescriptive_language.detected"
                and (e["drag_mode"], e["phrase_type"])
                == (labels["drag_mode"], labels["phrase_type"])
            ]
            assert found, exemplar
            assert float(exemplar["value"]) == 1.0
            assert any(e["event"] == "audit.entry" for e in events)
            seen += 1
    # Several workflows, outcomes and phrase types: many series, each with its exemplars.
    assert len(durations) >= 4 and len(detections) >= 2 and seen >= 6, (durations, detections)


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()
