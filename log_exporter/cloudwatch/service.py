"""Building and running the shipper: :func:`start` beside serve, :func:`replay` for old files.

:mod:`log_exporter.cloudwatch.hook` calls them and nothing else does (but tests); everything
CloudWatch stays in this package.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Literal

from prometheus_client.registry import CollectorRegistry

from log_exporter.cloudwatch.client import CloudWatchApi, connect
from log_exporter.cloudwatch.config import CloudWatchConfig
from log_exporter.cloudwatch.derive import ObservationDeriver
from log_exporter.cloudwatch.logs_batch import MAX_BATCH_BYTES
from log_exporter.cloudwatch.shipper import SectionStore, Shipper, Summary
from log_exporter.cloudwatch.stats import CloudWatchCollector, ShipperStats
from log_exporter.drain import Drain
from log_exporter.limits import MAX_LINE_BYTES
from log_exporter.sources.files import FileReader, open_sources
from log_exporter.sources.tail import Tailer, count_lines_after
from log_exporter.sources.tail.tailer import TailProgress
from log_exporter.spec import Program

log = logging.getLogger(__name__)


# After the stop event, the longest wait for the shipper's thread: a request in flight ends
# within botocore's connect and read timeouts, a retry wait at once.
_STOP_JOIN_SECONDS = 30.0
# How often a drain's wait looks at its deadline: a second signal shortens it.
_DRAIN_CHECK_SECONDS = 0.1
# Once a drain was cut short (a second request, or its timeout), the longest wait for the
# shipper's thread: one waiting to retry ends at once, one blocked in a request is left to
# botocore's timeouts. What CloudWatch acknowledged is saved already, and the request in flight
# is sent again after a restart (at least once), so waiting for it would only delay the exit.
_CUT_SHORT_JOIN_SECONDS = 1.0


class Shipping:
    """A running shipper thread; ``stop()`` ends it and saves the acknowledged cursor,
    ``finish()`` lets it drain first."""

    def __init__(
        self,
        shipper: Shipper,
        tailer: Tailer,
        thread: threading.Thread,
        stop: threading.Event,
        *,
        drain: Drain | None = None,
        path: str = "",
        start_at: Literal["beginning", "end"] = "beginning",
        max_line_bytes: int = MAX_LINE_BYTES,
        rotated_globs: Sequence[str] = (),
    ) -> None:
        self.shipper = shipper
        self._tailer = tailer
        self._thread = thread
        self._stop = stop
        self._drain = drain
        self._path = path
        self._start_at = start_at
        self._max_line_bytes = max_line_bytes
        self._rotated_globs = tuple(rotated_globs)

    def progress(self) -> TailProgress:
        return self._tailer.progress()

    def stop(self, timeout: float = _STOP_JOIN_SECONDS) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._tailer.close()

    def finish(self) -> tuple[int, int]:
        """Wait while the shipper drains (until the drain's deadline; a second request ends the
        wait), then stop it; the lines of the log CloudWatch has not acknowledged, and the metric
        intervals not sent."""
        drain = self._drain
        if drain is None or not drain.requested:
            self.stop()
            return 0, 0
        while self._thread.is_alive() and drain.remaining() > 0:
            self._thread.join(min(_DRAIN_CHECK_SECONDS, drain.remaining()))
        # Alive now only when the drain was cut short.
        self.stop(_CUT_SHORT_JOIN_SECONDS)
        # Counted even after a drain that ended quiet: a line the app wrote after the shipper's
        # quiet period, while serve still read, is unshipped all the same.
        return count_lines_after(
            self._path,
            self.shipper.acknowledged,
            start_at=self._start_at,
            max_line_bytes=self._max_line_bytes,
            rotated_globs=self._rotated_globs,
        ), self.shipper.pending_intervals

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def start(
    config: CloudWatchConfig,
    *,
    path: str,
    program: Program | Callable[[], Program],
    state: SectionStore | None,
    registry: CollectorRegistry | None = None,
    start_at: Literal["beginning", "end"] = "beginning",
    max_line_bytes: int = MAX_LINE_BYTES,
    drain: Drain | None = None,
    rotated_globs: Sequence[str] = (),
) -> Shipping:
    """Start shipping ``path`` in its own thread with its own tailer and cursor.

    Raises MissingExtraError (a ConfigError) when boto3 is not installed. ``state`` is
    CloudWatch's section of the state file: what it holds at start is the resume point, and each
    save must reach the disk at once.
    """
    logs_client, metrics_client = connect(config)
    stats = ShipperStats()
    if registry is not None:
        registry.register(CloudWatchCollector(stats))
    stop = threading.Event()
    api = CloudWatchApi(logs_client, metrics_client, config, stats, stop)
    if state is None:
        log.warning(
            "CloudWatch shipping without a state file (--state): a restart ships the whole file"
            " again; set LOG_EXPORTER_STATE to resume where shipping stopped"
        )
    deriver = ObservationDeriver(program)
    shipper = Shipper(config, api, deriver, stats, state=state, event_time=deriver.event_time)
    resume = shipper.restore()
    # Batches no bigger than one PutLogEvents request keep memory bounded during an outage.
    tailer = Tailer(
        path,
        start_at=start_at,
        resume=resume,
        max_line_bytes=max_line_bytes,
        max_batch_bytes=MAX_BATCH_BYTES,
        rotated_globs=rotated_globs,
    )
    # Before serve answers /healthz, as its own tailer: what is rotated later is not history.
    tailer.start()
    thread = threading.Thread(
        target=shipper.run,
        args=(tailer, stop),
        kwargs={"start": resume, "drain": drain},
        name="cloudwatch-shipper",
        daemon=True,
    )
    thread.start()
    log.info(
        "CloudWatch shipping started",
        extra={
            "log_group": config.log_group,
            "log_stream": config.log_stream,
            "metrics_mode": config.metrics_mode,
            "resumed": resume is not None,
        },
    )
    return Shipping(
        shipper,
        tailer,
        thread,
        stop,
        drain=drain,
        path=path,
        start_at=start_at,
        max_line_bytes=max_line_bytes,
        rotated_globs=rotated_globs,
    )


def replay(
    config: CloudWatchConfig,
    files: Sequence[str],
    program: Program,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Summary:
    """Ship historical files, oldest first, with their own timestamps; what was sent and left out.

    Raises ReplayError for an unreadable file, MissingExtraError without boto3 and
    CredentialsRefused on a credentials or permission error.
    """
    logs_client, metrics_client = connect(config)
    stats = ShipperStats()
    # A one-shot command: a credentials or IAM error ends it (exit 2) instead of waiting forever
    # for an operator to fix it, as serve does.
    api = CloudWatchApi(
        logs_client, metrics_client, config, stats, threading.Event(), wait_for_credentials=False
    )
    deriver = ObservationDeriver(program)
    shipper = Shipper(config, api, deriver, stats, event_time=deriver.event_time)
    sources = open_sources(files, max_line_bytes, deriver.event_time)
    readers = [FileReader(source, max_line_bytes) for source in sources]
    try:
        summary = shipper.replay(reader.batches() for reader in readers)
    finally:
        for reader in readers:
            reader.close()
    summary.damaged = [f"{r.source.path}: {r.damage}" for r in readers if r.damage]
    return summary


def format_summary(summary: Summary) -> str:
    """Replay's report: what was shipped and what the CloudWatch service window left out."""
    lines = [
        f"CloudWatch: {summary.lines} lines read, {summary.events_sent} log events shipped"
        f" ({summary.truncated} truncated to 256 KiB)",
    ]
    if summary.excluded:
        parts = ", ".join(
            f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(summary.excluded.items())
        )
        lines.append(
            f"  not sent, outside the service window (14 days back, 2 hours ahead): {parts}"
        )
    if summary.rejected:
        parts = ", ".join(f"{n} {r}" for r, n in sorted(summary.rejected.items()))
        lines.append(f"  rejected by CloudWatch: {parts}")
    metric_line = (
        f"  metrics: {summary.emf_documents} EMF documents"
        if summary.metrics_mode == "emf"
        else f"  metrics: {summary.datums_sent} datums sent"
    )
    lines.append(metric_line)
    if summary.datums_excluded:
        parts = ", ".join(
            f"{n} {r.replace('_', ' ')}" for r, n in sorted(summary.datums_excluded.items())
        )
        lines.append(f"  metric datums not sent: {parts}")
    lines += [f"  damaged, shipped up to the damage: {d}" for d in summary.damaged]
    return "\n".join(lines)
