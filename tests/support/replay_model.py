"""Generated event logs for the replay tests, and a small independent model of their metrics.

The model reads the generated items (it knows which line is which), not the bytes, and applies
the event contract's rules directly: it shares no code with the exporter, so a bug in the data
path cannot hide in both.
"""

from __future__ import annotations

import gzip
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from tests.support.contract import contract_event
from tests.support.serve import parse_metrics

DRAG = ("draft", "research", "analysis", "grunt", "execute")
OUTCOMES = ("success", "failure", "rejected")
WORKFLOWS = ("esg_report", "carbon_audit", "supplier_review")
ROLES = ("analyst", "auditor", "admin")
# Worker processes: requests in flight are counted per process (docs/events.md).
PIDS = (101, 102, 103)
WORKFLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# The metric families the event contract derives (docs/events.md). The deployment tests check
# their queries against this same list, so a family added to the contract is added here once.
CONTRACT_FAMILIES = (
    "sustainbot_app_info",
    "sustainbot_aim_requests_total",
    "sustainbot_aim_validation_failures_total",
    "sustainbot_governed_workflow_duration_seconds",
    "sustainbot_workflow_executions_total",
    "sustainbot_workflow_execution_errors_total",
    "sustainbot_audit_log_entries_total",
    "sustainbot_prescriptive_language_detections_total",
    "sustainbot_jwt_validations_total",
    "sustainbot_authentication_failures_total",
    "sustainbot_active_requests",
    "sustainbot_http_requests_total",
    "sustainbot_http_request_duration_seconds",
)
# Families the model predicts completely: every sample of these must match, no more, no less.
MODELLED = (*CONTRACT_FAMILIES, "log_exporter_lines_total")

Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Item:
    """One generated line: an event (with its time, None when it has no usable one) or junk."""

    raw: bytes
    event: dict[str, object] | None
    time: float | None


def rfc3339(t: float) -> str:
    """The contract's form, to the millisecond (``t`` is rounded to whole milliseconds)."""
    ms = round(t * 1000)
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _drag(rng: random.Random) -> str | None:
    r = rng.random()
    if r < 0.04:
        return "DRAFT"  # outside the closed set: counted as "other"
    if r < 0.06:
        return None  # missing: "unknown"
    return rng.choice(DRAG)


# One branch per event type of the contract that the generator draws.
def make_event(rng: random.Random, t: float | None, seq: int) -> dict[str, object]:  # noqa: C901
    """A random contract event stamped ``t`` (None: no timestamp field at all)."""
    kind = rng.choices(
        [
            "app.started",
            "aim.request",
            "aim.validation_failed",
            "workflow.completed",
            "audit.entry",
            "prescriptive_language.detected",
            "auth.jwt_validated",
            "auth.failed",
            "http.request_started",
            "http.request",
            "app.worker_started",
            "app.worker_exited",
            "app.stopped",
        ],
        weights=[1, 12, 3, 8, 6, 3, 5, 2, 14, 14, 1, 1, 1],
    )[0]
    ev = contract_event(
        kind,
        None if t is None else rfc3339(t),
        logger="sustainbot.events",
        trace_id=f"trace-{seq}",
    )
    drag = _drag(rng)

    def put(name: str, value: object) -> None:
        if value is not None:
            ev[name] = value

    if kind == "app.started":
        ev.update(version=f"1.{rng.randrange(3)}.0", phase="phase-2", compliance_spec="CSRD-2025")
    elif kind == "aim.request":
        put("drag_mode", drag)
        ev.update(actor_role=rng.choice(ROLES), workflow_name=rng.choice(WORKFLOWS))
        ev["actor"] = "Jane Doe"  # a person's name: never a label
    elif kind == "aim.validation_failed":
        put("drag_mode", drag)
        ev["failure_reason"] = rng.choice(["missing_mission", "bad_mode"])
    elif kind == "workflow.completed":
        outcome = rng.choice(OUTCOMES)
        put("drag_mode", drag)
        ev.update(workflow_name=rng.choice(WORKFLOWS), outcome=outcome)
        if rng.random() < 0.05:
            pass  # no duration: an invalid observation, the counters still count
        else:
            ev["duration_seconds"] = round(rng.expovariate(1 / 8), 3)
        if outcome == "failure":
            ev["error_type"] = rng.choice(["timeout", "model_error"])
    elif kind == "audit.entry":
        put("drag_mode", drag)
        ev.update(outcome=rng.choice(OUTCOMES), actor="John Roe", decision="approved")
    elif kind == "prescriptive_language.detected":
        put("drag_mode", drag)
        ev.update(phrase_type=rng.choice(["must", "should"]), phrase="you must")
    elif kind == "auth.jwt_validated":
        ev["outcome"] = rng.choice(["success", "failure"])
    elif kind == "auth.failed":
        ev["failure_type"] = rng.choice(["expired", "bad_signature"])
    elif kind in ("app.worker_started", "app.worker_exited", "app.stopped"):
        ev["pid"] = rng.choice(PIDS)
    elif kind == "http.request_started":
        ev.update(method="GET", endpoint="/api/v1/workflows", pid=rng.choice(PIDS))
    else:
        ev.update(
            pid=rng.choice(PIDS),
            method=rng.choice(["GET", "POST"]),
            endpoint=rng.choice(["/api/v1/workflows", "/healthz"]),
            status_code=rng.choice([200, 200, 200, 400, 500]),
            duration_seconds=round(rng.expovariate(1 / 0.05), 4),
        )
    return ev


def make_items(
    rng: random.Random,
    n: int,
    start: float,
    *,
    mean_gap: float = 2.0,
    junk: float = 0.02,
    untimed: float = 0.0,
) -> list[Item]:
    """``n`` lines from ``start`` on, times increasing; some junk and untimed events if asked."""
    items: list[Item] = []
    t_ms = round(start * 1000)
    for seq in range(n):
        r = rng.random()
        if r < junk:
            raw = rng.choice([b"not json", b"[1,2]", b'"text"', b"", b"   ", b'{"broken":'])
            items.append(Item(raw, None, None))
            continue
        # Whole milliseconds, as the contract writes them, so the model's times are exact.
        t_ms += round(rng.expovariate(1 / mean_gap) * 1000)
        t = t_ms / 1000
        stamped = rng.random() >= untimed
        ev = make_event(rng, t if stamped else None, seq)
        items.append(Item(orjson.dumps(ev), ev, t if stamped else None))
    return items


def write_rotated_set(directory: Path, items: Sequence[Item], parts: int = 3) -> list[Path]:
    """The items split over a rotated set, oldest first on disk as ``name.N[.gz]``.

    The two oldest generations are gzipped, like logrotate's ``compress`` with ``delaycompress``.
    Returns the paths newest last.
    """
    name = "sustainbot.jsonl"
    bounds = [round(len(items) * i / parts) for i in range(parts + 1)]
    paths: list[Path] = []
    for i in range(parts):
        age = parts - 1 - i
        data = b"".join(it.raw + b"\n" for it in items[bounds[i] : bounds[i + 1]])
        if age == 0:
            path = directory / name
            path.write_bytes(data)
        elif age == 1:
            path = directory / f"{name}.{age}"
            path.write_bytes(data)
        else:
            path = directory / f"{name}.{age}.gz"
            path.write_bytes(gzip.compress(data))
        paths.append(path)
    return paths


def _label(v: object) -> str:
    if v is None:
        return "unknown"
    if type(v) is str:
        return v
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is int:
        return str(v)
    return "invalid"


def _closed(v: object, allowed: Sequence[str]) -> str:
    text = _label(v)
    if v is None:
        return text
    return text if text in allowed else "other"


class Model:
    """The metrics a log implies, by the contract's rules, as {(sample name, labels): value}."""

    def __init__(self) -> None:
        self.values: dict[Key, float] = {}
        self.info: frozenset[tuple[str, str]] | None = None
        # Requests in flight per process (the pid's label text), forgotten when it goes.
        self.active: dict[str, float] = {}
        for result in ("parsed", "malformed", "oversized"):
            self._set("log_exporter_lines_total", {"result": result}, 0.0)
        self._set("sustainbot_active_requests", {}, 0.0)

    def _set(self, name: str, labels: dict[str, str], value: float) -> None:
        self.values[(name, frozenset(labels.items()))] = value

    def _inc(self, name: str, labels: dict[str, str], by: float = 1.0) -> None:
        key = (name, frozenset(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + by

    def _observe(
        self, name: str, labels: dict[str, str], value: object, buckets: Sequence[float]
    ) -> None:
        # JSON's numbers only: a bool is an int to isinstance but not a value to observe.
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        if not math.isfinite(value) or value < 0:
            return
        for le in buckets:
            self._inc(
                f"{name}_bucket", {**labels, "le": str(float(le))}, 1.0 if value <= le else 0.0
            )
        self._inc(f"{name}_bucket", {**labels, "le": "inf"})
        self._inc(f"{name}_count", labels)
        self._inc(f"{name}_sum", labels, float(value))

    # An independent model of the spec: one branch per event type, on purpose not
    # factored like the code it checks.
    def add(self, item: Item) -> None:  # noqa: C901
        ev = item.event
        if ev is None:
            if item.raw.strip():
                self._inc("log_exporter_lines_total", {"result": "malformed"})
            return
        self._inc("log_exporter_lines_total", {"result": "parsed"})
        kind = ev["event"]
        g = ev.get
        if kind == "app.started":
            self.info = frozenset(
                {k: _label(g(k)) for k in ("version", "phase", "compliance_spec")}.items()
            )
            self.active.clear()
        elif kind == "app.stopped":
            self.active.clear()
        elif kind in ("app.worker_started", "app.worker_exited"):
            self.active.pop(_label(g("pid")), None)
        elif kind == "aim.request":
            self._inc(
                "sustainbot_aim_requests_total",
                {
                    "drag_mode": _closed(g("drag_mode"), DRAG),
                    "actor_role": _label(g("actor_role")),
                    "workflow_name": _label(g("workflow_name")),
                },
            )
        elif kind == "aim.validation_failed":
            self._inc(
                "sustainbot_aim_validation_failures_total",
                {
                    "failure_reason": _label(g("failure_reason")),
                    "drag_mode": _closed(g("drag_mode"), DRAG),
                },
            )
        elif kind == "workflow.completed":
            wf, outcome = _label(g("workflow_name")), _closed(g("outcome"), OUTCOMES)
            self._observe(
                "sustainbot_governed_workflow_duration_seconds",
                {
                    "workflow_name": wf,
                    "outcome": outcome,
                    "drag_mode": _closed(g("drag_mode"), DRAG),
                },
                g("duration_seconds"),
                WORKFLOW_BUCKETS,
            )
            self._inc(
                "sustainbot_workflow_executions_total", {"workflow_name": wf, "outcome": outcome}
            )
            if g("outcome") == "failure":
                self._inc(
                    "sustainbot_workflow_execution_errors_total",
                    {"workflow_name": wf, "error_type": _label(g("error_type"))},
                )
        elif kind == "audit.entry":
            self._inc(
                "sustainbot_audit_log_entries_total",
                {
                    "outcome": _closed(g("outcome"), OUTCOMES),
                    "drag_mode": _closed(g("drag_mode"), DRAG),
                },
            )
        elif kind == "prescriptive_language.detected":
            self._inc(
                "sustainbot_prescriptive_language_detections_total",
                {
                    "drag_mode": _closed(g("drag_mode"), DRAG),
                    "phrase_type": _label(g("phrase_type")),
                },
            )
        elif kind == "auth.jwt_validated":
            self._inc("sustainbot_jwt_validations_total", {"outcome": _label(g("outcome"))})
        elif kind == "auth.failed":
            self._inc(
                "sustainbot_authentication_failures_total",
                {"failure_type": _label(g("failure_type"))},
            )
        elif kind == "http.request_started":
            pid = _label(g("pid"))
            self.active[pid] = self.active.get(pid, 0.0) + 1
        elif kind == "http.request":
            method, endpoint = _label(g("method")), _label(g("endpoint"))
            self._inc(
                "sustainbot_http_requests_total",
                {"method": method, "endpoint": endpoint, "status_code": _label(g("status_code"))},
            )
            self._observe(
                "sustainbot_http_request_duration_seconds",
                {"method": method, "endpoint": endpoint},
                g("duration_seconds"),
                HTTP_BUCKETS,
            )
            pid = _label(g("pid"))
            self.active[pid] = max(self.active.get(pid, 0.0) - 1, 0.0)
        self._set("sustainbot_active_requests", {}, sum(self.active.values()))

    def result(self) -> dict[Key, float]:
        out = dict(self.values)
        if self.info is not None:
            out[("sustainbot_app_info", self.info)] = 1.0
        return out


def expected(items: Iterable[Item]) -> dict[Key, float]:
    model = Model()
    for it in items:
        model.add(it)
    return model.result()


def expected_at(items: Sequence[Item], t: float) -> dict[Key, float]:
    """The values after every line before the first event stamped after ``t``.

    An untimed event or a junk line belongs to the time of the event before it.
    """
    model = Model()
    for it in items:
        if it.time is not None and it.time > t:
            break
        model.add(it)
    return model.result()


def norm_key(name: str, labels: dict[str, str]) -> Key:
    labels = dict(labels)
    if "le" in labels:
        labels["le"] = str(float(labels["le"])) if labels["le"] != "+Inf" else "inf"
    return (name, frozenset(labels.items()))


def parse_exposition(text: str) -> dict[Key, float]:
    """Samples of the modelled families in a Prometheus text exposition (``_created`` left out)."""
    return {
        norm_key(name, dict(labels)): value
        for (name, labels), value in parse_metrics(text).items()
        if not name.endswith("_created") and any(belongs(name, m) for m in MODELLED)
    }


def belongs(sample: str, family: str) -> bool:
    if sample == family:
        return True
    return sample in (f"{family}_bucket", f"{family}_count", f"{family}_sum")


def only_modelled(values: dict[Key, float]) -> dict[Key, float]:
    return {k: v for k, v in values.items() if any(belongs(k[0], m) for m in MODELLED)}
