"""The shipper's self-metrics: counters it bumps, and a Prometheus collector that reads them.

The shipper thread writes, a scrape reads; one small lock guards plain numbers so a scrape never
waits on a CloudWatch call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(slots=True)
class ShipperStats:
    """Counters and gauges of the CloudWatch shipper, safe to update from any thread."""

    events_shipped: int = 0
    retries: int = 0
    truncated_events: int = 0
    datums_sent: int = 0
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    datums_excluded: dict[str, int] = field(default_factory=dict)
    backlog_bytes: int = 0
    backlog_events: int = 0
    last_success: float = 0.0
    # Computes (backlog bytes, backlog events) at scrape time, so the backlog keeps growing on
    # /metrics while the shipper thread sits in a retry wait.
    backlog_probe: Callable[[], tuple[int, int]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def request(self, api: str, result: str) -> None:
        with self._lock:
            key = (api, result)
            self.requests[key] = self.requests.get(key, 0) + 1

    def retry(self) -> None:
        with self._lock:
            self.retries += 1

    def reject(self, reasons: dict[str, int]) -> None:
        with self._lock:
            for reason, n in reasons.items():
                self.rejected[reason] = self.rejected.get(reason, 0) + n

    def exclude_datums(self, reasons: dict[str, int]) -> None:
        with self._lock:
            for reason, n in reasons.items():
                self.datums_excluded[reason] = self.datums_excluded.get(reason, 0) + n

    def shipped(self, events: int, truncated: int, when: float) -> None:
        with self._lock:
            self.events_shipped += events
            self.truncated_events += truncated
            self.last_success = when

    def sent_datums(self, datums: int, when: float) -> None:
        with self._lock:
            self.datums_sent += datums
            self.last_success = when

    def backlog(self, nbytes: int, events: int) -> None:
        with self._lock:
            self.backlog_bytes = nbytes
            self.backlog_events = events

    def snapshot(self) -> ShipperStats:
        """A consistent copy for rendering outside the lock."""
        probe = self.backlog_probe
        if probe is not None:
            nbytes, events = probe()
            self.backlog(nbytes, events)
        with self._lock:
            return ShipperStats(
                events_shipped=self.events_shipped,
                retries=self.retries,
                truncated_events=self.truncated_events,
                datums_sent=self.datums_sent,
                requests=dict(self.requests),
                rejected=dict(self.rejected),
                datums_excluded=dict(self.datums_excluded),
                backlog_bytes=self.backlog_bytes,
                backlog_events=self.backlog_events,
                last_success=self.last_success,
            )


class CloudWatchCollector(Collector):
    """Exposes ShipperStats as ``log_exporter_cloudwatch_*`` metric families."""

    def __init__(self, stats: ShipperStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats.snapshot()
        p = "log_exporter_cloudwatch_"
        yield CounterMetricFamily(
            p + "events_shipped", "Log events CloudWatch Logs acknowledged.", value=s.events_shipped
        )
        yield CounterMetricFamily(
            p + "truncated_events",
            "Log events cut to the 256 KiB event limit (shipped with a marker).",
            value=s.truncated_events,
        )
        yield CounterMetricFamily(
            p + "datums_sent", "Metric datums acknowledged by PutMetricData.", value=s.datums_sent
        )
        requests = CounterMetricFamily(
            p + "requests", "CloudWatch API calls by API and result.", labels=["api", "result"]
        )
        for (api, result), n in sorted(s.requests.items()):
            requests.add_metric([api, result], n)
        yield requests
        yield CounterMetricFamily(
            p + "retries",
            "CloudWatch calls retried after throttling, 5xx or connection errors.",
            value=s.retries,
        )
        rejected = CounterMetricFamily(
            p + "rejected_events",
            "Log events not stored by CloudWatch, by reason (never retried).",
            labels=["reason"],
        )
        for reason, n in sorted(s.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        excluded = CounterMetricFamily(
            p + "excluded_datums",
            "Metric datums not sent, by reason (outside the 14-day/2-hour window, invalid).",
            labels=["reason"],
        )
        for reason, n in sorted(s.datums_excluded.items()):
            excluded.add_metric([reason], n)
        yield excluded
        yield GaugeMetricFamily(
            p + "backlog_bytes",
            "Bytes of the log not yet acknowledged by CloudWatch.",
            value=s.backlog_bytes,
        )
        yield GaugeMetricFamily(
            p + "backlog_events",
            "Estimated lines not yet acknowledged (backlog bytes / mean line size).",
            value=s.backlog_events,
        )
        yield GaugeMetricFamily(
            p + "last_success_timestamp_seconds",
            "Unix time of the last call CloudWatch acknowledged (0 before the first).",
            value=s.last_success,
        )
