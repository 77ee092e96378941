"""The self-metrics table: every collector's families come from it, are described without
values, and render exactly as the reviewed expositions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from log_exporter.cloudwatch.stats import CloudWatchCollector, ShipperStats
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus import selfmetrics
from log_exporter.prometheus.collector import (
    ServeCollector,
    ServeValues,
    StateValues,
    StoreCollector,
)
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.store import Store
from log_exporter.values import Batch
from tests.support.pipeline import render

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _store_collector() -> StoreCollector:
    """The contract fixture through the real data path, so every store family has samples, and
    one line with a label value over the bound (the contract fixture has none)."""
    long_value = b'{"event": "aim.request", "workflow_name": "' + b"w" * 300 + b'"}'
    data = (FIXTURES / "contract.jsonl").read_bytes() + long_value + b"\n"
    spec = load_default_spec()
    store = Store(spec.definitions)
    Pipeline(compile_spec(spec), store).feed(Batch(data.split(b"\n"), bytes_read=len(data)))
    return StoreCollector(store)


def _serve_values() -> ServeValues:
    return ServeValues(
        lag_bytes=14,
        io_errors=5,
        spec_reloads={"success": 1, "failure": 2},
        state=StateValues(
            saves={"success": 3, "error": 4},
            load_failures=6,
            resume_misses=2,
            resume_lost_bytes=512,
        ),
        web_config_reloads={"success": 7, "failure": 1},
        rotation_lost={"cloudwatch": 3},
        http_requests={"200": 9, "401": 2},
        http_connection_errors=1,
        tls_handshake_failures={"no_client_certificate": 3, "plain_http_on_tls": 1},
    )


def _shipper_stats() -> ShipperStats:
    stats = ShipperStats()
    stats.request("PutLogEvents", "success")
    stats.request("PutMetricData", "error")
    stats.request("PutLogEvents", "success")
    stats.retry()
    stats.reject({"window_too_old": 2, "invalid_request": 1})
    stats.exclude_datums({"too_new": 3})
    stats.shipped(10, 1, 1769900000.5)
    stats.sent_datums(4, 1769900001.25)
    stats.backlog(123, 4)
    return stats


def _shape(families: list[Metric]) -> list[tuple[str, str, str]]:
    return [(m.name, m.type, m.documentation) for m in families]


COLLECTORS: dict[str, Callable[[], StoreCollector | ServeCollector | CloudWatchCollector]] = {
    "store": _store_collector,
    "serve": lambda: ServeCollector(_serve_values),
    "cloudwatch": lambda: CloudWatchCollector(_shipper_stats()),
}


@pytest.mark.parametrize("which", sorted(COLLECTORS))
def test_describe_gives_the_families_of_collect_without_values(which: str) -> None:
    """Each collector describes exactly the families it collects (name, type, help, in order),
    with no samples: what client_python's registry reads at registration."""
    collector = COLLECTORS[which]()
    described = collector.describe()
    assert all(not m.samples for m in described)
    assert _shape(described) == _shape(list(collector.collect()))


def test_every_self_metric_comes_from_the_table() -> None:
    """The log_exporter_* families all collectors give are the table's, in the table's order,
    each with the type, help and label names declared there."""
    collected = [
        m
        for make in COLLECTORS.values()
        for m in make().collect()
        if m.name.startswith("log_exporter_")
    ]
    table = [m.described() for m in selfmetrics.SELF_METRICS]
    assert _shape(collected) == _shape(table)
    declared = {m.described().name: m.labels for m in selfmetrics.SELF_METRICS}
    for family in collected:
        label_names = {k for s in family.samples for k in s.labels}
        assert label_names <= set(declared[family.name]), family.name
    names = [m.name for m in selfmetrics.SELF_METRICS]
    assert len(set(names)) == len(names)


def test_serve_families_render_as_reviewed() -> None:
    """serve's own families (lag, I/O errors, reloads, state file, web config reloads) render
    byte for byte as the reviewed exposition."""
    expected = (FIXTURES / "serve_families.expected.prom").read_bytes()
    assert render(ServeCollector(_serve_values)) == expected


def test_serve_families_without_a_state_file_or_web_config_leave_them_out() -> None:
    """Without a state file serve shows no state saves, load failures or resume misses, and
    without a web config no web config reloads."""
    values = ServeValues(lag_bytes=0, io_errors=0, spec_reloads={"success": 0, "failure": 0})
    text = render(ServeCollector(lambda: values)).decode()
    assert "log_exporter_spec_reloads_total" in text
    assert "state" not in text and "resume" not in text and "web_config" not in text


def test_cloudwatch_families_render_as_reviewed() -> None:
    """The shipper's families render byte for byte as they did before the table existed."""
    expected = (FIXTURES / "cloudwatch_families.expected.prom").read_bytes()
    assert render(CloudWatchCollector(_shipper_stats())) == expected


def test_registering_a_self_metric_twice_is_refused() -> None:
    """Because collectors describe themselves, a registry refuses a second collector of the same
    families at registration instead of serving them twice."""
    registry = CollectorRegistry()
    registry.register(ServeCollector(_serve_values))
    with pytest.raises(ValueError, match="log_exporter_lag_bytes"):
        registry.register(ServeCollector(_serve_values))
