"""Every ``log_exporter_*`` metric the exporter exports about itself, declared once: name, type,
help and labels; the collectors build their families from here. ``STANDARD`` names the
``process_*`` and ``python_*`` metrics client_python's own collectors add on /metrics.

Names are as they appear on /metrics (a counter with ``_total``, the info metric with ``_info``);
the family builder gives client_python the base name it expects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from log_exporter.store import MetricDef

__all__ = [
    "BUILD_INFO",
    "BYTES_READ",
    "CLOUDWATCH",
    "CLOUDWATCH_BACKLOG_BYTES",
    "CLOUDWATCH_BACKLOG_EVENTS",
    "CLOUDWATCH_DATUMS_SENT",
    "CLOUDWATCH_EVENTS_SHIPPED",
    "CLOUDWATCH_EXCLUDED_DATUMS",
    "CLOUDWATCH_LAST_SUCCESS",
    "CLOUDWATCH_REJECTED_EVENTS",
    "CLOUDWATCH_REQUESTS",
    "CLOUDWATCH_RETRIES",
    "CLOUDWATCH_TRUNCATED_EVENTS",
    "EXEMPLARS_SKIPPED",
    "FILE_ROTATIONS",
    "FILE_TRUNCATIONS",
    "HTTP_CONNECTION_ERRORS",
    "HTTP_REQUESTS",
    "INVALID_VALUES",
    "IO_ERRORS",
    "LABEL_VALUES_TOO_LONG",
    "LAG_BYTES",
    "LAST_EVENT_TIMESTAMP",
    "LINES",
    "RESUME_MISSES",
    "ROTATION_LOST_LINES",
    "SELF_METRICS",
    "SERIES",
    "SERIES_OVERFLOW",
    "SERVE",
    "SPEC_RELOADS",
    "STANDARD",
    "STANDARD_LABELS",
    "STATE_LOAD_FAILURES",
    "STATE_SAVES",
    "STORE",
    "TLS_HANDSHAKE_FAILURES",
    "WEB_CONFIG_RELOADS",
    "SelfMetric",
    "taken_label_names",
]


@dataclass(frozen=True, slots=True)
class SelfMetric:
    """One self-metric: what /metrics says of it besides its values."""

    name: str
    type: Literal["counter", "gauge", "info"]
    help: str
    labels: tuple[str, ...] = ()

    def family(self, value: float | None = None) -> CounterMetricFamily | GaugeMetricFamily:
        """The counter or gauge family: empty, or with ``value`` as its one label-less sample."""
        if self.type == "counter":
            if value is None:
                return CounterMetricFamily(self.name, self.help, labels=self.labels)
            return CounterMetricFamily(self.name, self.help, value=value)
        if self.type == "gauge":
            if value is None:
                return GaugeMetricFamily(self.name, self.help, labels=self.labels)
            return GaugeMetricFamily(self.name, self.help, value=value)
        raise TypeError(f"{self.name} is an info metric: use info_family()")

    def info_family(self) -> InfoMetricFamily:
        """The info metric's family, empty."""
        # client_python appends the _info suffix itself.
        return InfoMetricFamily(self.name.removesuffix("_info"), self.help, labels=self.labels)

    def described(self) -> Metric:
        """The family without samples, whatever its type: what a collector's describe() gives."""
        return self.info_family() if self.type == "info" else self.family()


def _counter(name: str, help: str, *labels: str) -> SelfMetric:
    return SelfMetric(name, "counter", help, labels)


def _gauge(name: str, help: str, *labels: str) -> SelfMetric:
    return SelfMetric(name, "gauge", help, labels)


# -- the store's (collector.StoreCollector), in the order of /metrics -----------------------------

LINES: Final = _counter("log_exporter_lines_total", "Lines read, by result.", "result")
BYTES_READ: Final = _counter("log_exporter_bytes_read_total", "Bytes consumed from the log.")
FILE_ROTATIONS: Final = _counter(
    "log_exporter_file_rotations_total", "Rotations of the log noticed."
)
FILE_TRUNCATIONS: Final = _counter(
    "log_exporter_file_truncations_total", "Truncations of the log noticed."
)
LAST_EVENT_TIMESTAMP: Final = _gauge(
    "log_exporter_last_event_timestamp_seconds",
    "Timestamp of the latest event read, in Unix seconds.",
)
INVALID_VALUES: Final = _counter(
    "log_exporter_invalid_values_total",
    "Observations skipped because the value was missing, not a number, negative or infinite.",
    "metric",
)
LABEL_VALUES_TOO_LONG: Final = _counter(
    "log_exporter_label_values_too_long_total",
    "Label values longer than the spec's label_value_max_bytes, counted as __overflow__.",
    "metric",
)
EXEMPLARS_SKIPPED: Final = _counter(
    "log_exporter_exemplars_skipped_total",
    "Updates that kept no exemplar: the spec's exemplar field was missing, not a string, or "
    "longer than OpenMetrics' 128 characters allow.",
    "metric",
)
SERIES_OVERFLOW: Final = _counter(
    "log_exporter_series_overflow_total",
    "Events counted in a metric's __overflow__ series because its series cap was reached.",
    "metric",
)
SERIES: Final = _gauge("log_exporter_series", "Series a metric currently has.", "metric")
BUILD_INFO: Final = SelfMetric(
    "log_exporter_build_info",
    "info",
    "log-exporter's version, the git revision it was built from and the Python it runs on.",
    ("version", "revision", "python_version"),
)
STORE: Final = (
    LINES,
    BYTES_READ,
    FILE_ROTATIONS,
    FILE_TRUNCATIONS,
    LAST_EVENT_TIMESTAMP,
    INVALID_VALUES,
    LABEL_VALUES_TOO_LONG,
    EXEMPLARS_SKIPPED,
    SERIES_OVERFLOW,
    SERIES,
    BUILD_INFO,
)

# -- serve's own (collector.ServeCollector) -------------------------------------------------------

LAG_BYTES: Final = _gauge("log_exporter_lag_bytes", "Bytes written to the log but not read yet.")
IO_ERRORS: Final = _counter(
    "log_exporter_io_errors_total", "I/O errors while reading the log (each retried)."
)
SPEC_RELOADS: Final = _counter(
    "log_exporter_spec_reloads_total", "Spec reloads on SIGHUP, by result.", "result"
)
# With a state file only.
STATE_SAVES: Final = _counter(
    "log_exporter_state_saves_total", "State file saves, by result.", "result"
)
STATE_LOAD_FAILURES: Final = _counter(
    "log_exporter_state_load_failures_total",
    "State files found unusable at start (the exporter then started fresh).",
)
RESUME_MISSES: Final = _counter(
    "log_exporter_resume_misses_total",
    "Saved generations not found at start (e.g. deleted while stopped); "
    "their unread tail, if any, was not read.",
)
RESUME_LOST_BYTES: Final = _counter(
    "log_exporter_resume_lost_bytes_total",
    "Bytes of the saved generations not found at start known to be unread "
    "(a lower bound: what was written after the last save is not known).",
)
# With a web config only.
WEB_CONFIG_RELOADS: Final = _counter(
    "log_exporter_web_config_reloads_total",
    "Reloads of the web config after it or a certificate changed, by result "
    "(on failure the config in force stays).",
    "result",
)
# With CloudWatch shipping only (the reader whose losses are counted).
ROTATION_LOST_LINES: Final = _counter(
    "log_exporter_rotation_lost_lines_total",
    "Lines of rotated generations deleted (by the rotator) before this reader read them, "
    "by reader.",
    "reader",
)
# The HTTP side's answers and failures: a refused scraper shows here, not only in the log.
HTTP_REQUESTS: Final = _counter(
    "log_exporter_http_requests_total",
    "Answers of the HTTP server, by status code (as promhttp_metric_handler_requests_total).",
    "code",
)
HTTP_CONNECTION_ERRORS: Final = _counter(
    "log_exporter_http_connection_errors_total",
    "Connections closed after an unexpected error while reading or answering them.",
)
# With TLS only.
TLS_HANDSHAKE_FAILURES: Final = _counter(
    "log_exporter_tls_handshake_failures_total",
    "TLS handshakes that failed, by reason (no_client_certificate, bad_certificate, "
    "plain_http_on_tls, other).",
    "reason",
)
SERVE: Final = (
    LAG_BYTES,
    IO_ERRORS,
    SPEC_RELOADS,
    STATE_SAVES,
    STATE_LOAD_FAILURES,
    RESUME_MISSES,
    RESUME_LOST_BYTES,
    WEB_CONFIG_RELOADS,
    ROTATION_LOST_LINES,
    HTTP_REQUESTS,
    HTTP_CONNECTION_ERRORS,
    TLS_HANDSHAKE_FAILURES,
)

# -- the CloudWatch shipper's (log_exporter.cloudwatch.stats.CloudWatchCollector) -----------------

CLOUDWATCH_EVENTS_SHIPPED: Final = _counter(
    "log_exporter_cloudwatch_events_shipped_total", "Log events CloudWatch Logs acknowledged."
)
CLOUDWATCH_TRUNCATED_EVENTS: Final = _counter(
    "log_exporter_cloudwatch_truncated_events_total",
    "Log events cut to the 256 KiB event limit (shipped with a marker).",
)
CLOUDWATCH_DATUMS_SENT: Final = _counter(
    "log_exporter_cloudwatch_datums_sent_total", "Metric datums acknowledged by PutMetricData."
)
CLOUDWATCH_REQUESTS: Final = _counter(
    "log_exporter_cloudwatch_requests_total",
    "CloudWatch API calls by API and result.",
    "api",
    "result",
)
CLOUDWATCH_RETRIES: Final = _counter(
    "log_exporter_cloudwatch_retries_total",
    "CloudWatch calls retried after throttling, 5xx or connection errors.",
)
CLOUDWATCH_REJECTED_EVENTS: Final = _counter(
    "log_exporter_cloudwatch_rejected_events_total",
    "Log events not stored by CloudWatch, by reason (never retried).",
    "reason",
)
CLOUDWATCH_EXCLUDED_DATUMS: Final = _counter(
    "log_exporter_cloudwatch_excluded_datums_total",
    "Metric datums not sent, by reason (outside the 14-day/2-hour window, invalid).",
    "reason",
)
CLOUDWATCH_BACKLOG_BYTES: Final = _gauge(
    "log_exporter_cloudwatch_backlog_bytes",
    "Bytes of the log not yet acknowledged by CloudWatch.",
)
CLOUDWATCH_BACKLOG_EVENTS: Final = _gauge(
    "log_exporter_cloudwatch_backlog_events",
    "Estimated lines not yet acknowledged (backlog bytes / mean line size).",
)
CLOUDWATCH_LAST_SUCCESS: Final = _gauge(
    "log_exporter_cloudwatch_last_success_timestamp_seconds",
    "Unix time of the last call CloudWatch acknowledged (0 before the first).",
)
CLOUDWATCH: Final = (
    CLOUDWATCH_EVENTS_SHIPPED,
    CLOUDWATCH_TRUNCATED_EVENTS,
    CLOUDWATCH_DATUMS_SENT,
    CLOUDWATCH_REQUESTS,
    CLOUDWATCH_RETRIES,
    CLOUDWATCH_REJECTED_EVENTS,
    CLOUDWATCH_EXCLUDED_DATUMS,
    CLOUDWATCH_BACKLOG_BYTES,
    CLOUDWATCH_BACKLOG_EVENTS,
    CLOUDWATCH_LAST_SUCCESS,
)

SELF_METRICS: Final = (*STORE, *SERVE, *CLOUDWATCH)

# -- client_python's standard collectors (collector.register_standard) ----------------------------
# Their families are client_python's own; named here for the docs, the dashboard and the tests.
# process_* come from /proc, so only on Linux.

STANDARD: Final = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "python_info",
    "python_gc_objects_collected_total",
    "python_gc_objects_uncollectable_total",
    "python_gc_collections_total",
)
# The label names of those families: a --label or a capture of the same name would clash.
STANDARD_LABELS: Final = {
    "python_info": ("implementation", "major", "minor", "patchlevel", "version"),
    "python_gc_objects_collected_total": ("generation",),
    "python_gc_objects_uncollectable_total": ("generation",),
    "python_gc_collections_total": ("generation",),
}


def taken_label_names(
    definitions: Iterable[MetricDef], own: Iterable[SelfMetric], *, standard: bool = False
) -> dict[str, tuple[str, ...]]:
    """Each metric's name -> the label names its series already have: the spec's metrics (a
    histogram's ``le`` included), the exporter's ``own`` self-metrics and, with ``standard``,
    client_python's collectors; the names no ``--label`` or ``--file`` capture may take."""
    out: dict[str, tuple[str, ...]] = {}
    for d in definitions:
        out[d.name] = (*d.labels, "le") if d.kind == "histogram" else tuple(d.labels)
    for m in own:
        if m.labels:
            out[m.name] = tuple(m.labels)
    if standard:
        out.update(STANDARD_LABELS)
    return out
