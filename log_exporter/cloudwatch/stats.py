"""The shipper's self-metrics: counters it bumps, and a Prometheus collector that reads them.

The shipper thread writes, a scrape reads; one small lock guards plain numbers so a scrape never
waits on a CloudWatch call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from log_exporter.prometheus import selfmetrics as sm


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
    """Exposes ShipperStats as the ``log_exporter_cloudwatch_*`` families of ``selfmetrics``."""

    def __init__(self, stats: ShipperStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats.snapshot()
        yield sm.CLOUDWATCH_EVENTS_SHIPPED.family(s.events_shipped)
        yield sm.CLOUDWATCH_TRUNCATED_EVENTS.family(s.truncated_events)
        yield sm.CLOUDWATCH_DATUMS_SENT.family(s.datums_sent)
        requests = sm.CLOUDWATCH_REQUESTS.family()
        for (api, result), n in sorted(s.requests.items()):
            requests.add_metric([api, result], n)
        yield requests
        yield sm.CLOUDWATCH_RETRIES.family(s.retries)
        rejected = sm.CLOUDWATCH_REJECTED_EVENTS.family()
        for reason, n in sorted(s.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        excluded = sm.CLOUDWATCH_EXCLUDED_DATUMS.family()
        for reason, n in sorted(s.datums_excluded.items()):
            excluded.add_metric([reason], n)
        yield excluded
        yield sm.CLOUDWATCH_BACKLOG_BYTES.family(s.backlog_bytes)
        yield sm.CLOUDWATCH_BACKLOG_EVENTS.family(s.backlog_events)
        yield sm.CLOUDWATCH_LAST_SUCCESS.family(s.last_success)

    def describe(self) -> list[Metric]:
        return [m.described() for m in sm.CLOUDWATCH]
