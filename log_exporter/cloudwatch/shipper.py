"""The shipping loop: lines -> CloudWatch Logs batches, derived values -> metrics, cursor saved.

Runs in its own thread with its own tailer, beside the metrics path, so a slow or unreachable
CloudWatch only makes shipping fall behind; the file is the buffer. The cursor (and the metric
intervals not yet sent) is saved only after CloudWatch acknowledged a batch, and again after each
acknowledged metric request of a flush: at-least-once delivery, and a crash repeats at most the
one request in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from log_exporter.cloudwatch import emf
from log_exporter.cloudwatch.client import RequestRejected, Stopped
from log_exporter.cloudwatch.config import CloudWatchConfig
from log_exporter.cloudwatch.logs_batch import (
    BatchBuilder,
    LogEvent,
    make_event,
    rejected_counts,
    split_window,
    window_reason,
)
from log_exporter.cloudwatch.metrics_agg import Aggregator, Datum, chunk_datums
from log_exporter.cloudwatch.stats import ShipperStats
from log_exporter.drain import Drain, DrainReader
from log_exporter.parse import event_time, parse_line
from log_exporter.spec.cloudwatch import Observation
from log_exporter.values import Batch, Position, position_from_json, position_to_json, same_file

log = logging.getLogger(__name__)

# A partial batch waits at most this long for more lines while lines keep trickling in.
MAX_BATCH_WAIT_SECONDS = 5.0
# Replay sends metrics once this many intervals are pending, so memory stays bounded.
REPLAY_MAX_PENDING_INTERVALS = 20_000


class Api(Protocol):
    """What the shipper needs from :class:`log_exporter.cloudwatch.client.CloudWatchApi`."""

    def ensure_stream(self, stream: str) -> None: ...

    def put_log_events(self, stream: str, events: Sequence[LogEvent]) -> Mapping[str, int]: ...

    def put_metric_data(self, datums: Sequence[Datum]) -> None: ...


class SectionStore(Protocol):
    """The ``cloudwatch`` section of the state file."""

    def load(self) -> Mapping[str, Any] | None: ...

    def save(self, data: Mapping[str, Any]) -> None: ...


class TailedLog(Protocol):
    """A tailer as the shipper uses it (:class:`log_exporter.sources.tail.Tailer`)."""

    def poll(self) -> Batch: ...

    def lag_bytes(self) -> int: ...


Derive = Callable[[dict[str, Any]], Sequence[Observation]]


def line_positions(previous: Position | None, batch: Batch) -> list[Position | None]:
    """The resume position after each line of ``batch``, where it can be known exactly.

    Exact when the batch is one run of whole lines of one file ending at the batch's position:
    no rotation, truncation or skipped oversized line, no rotated generation being drained, and
    (when the previous position is known) it starts where the previous one ended. Each line then
    ends ``len + 1`` bytes further. Otherwise only the last line gets the batch's position, so
    a crash repeats a little more than one batch.
    """
    n = len(batch.lines)
    end = batch.position
    if n == 0 or end is None:
        return [None] * n
    total = sum(len(line) + 1 for line in batch.lines)
    simple = (
        batch.rotations == 0
        and batch.truncations == 0
        and batch.oversized == 0
        and not end.rotated
        and total <= end.offset
        and (
            previous is None
            or (
                not previous.rotated
                and same_file(previous.file, end.file)
                and previous.offset + total == end.offset
            )
        )
    )
    if not simple:
        return [None] * (n - 1) + [end]
    positions: list[Position | None] = []
    offset = end.offset - total
    for line in batch.lines:
        offset += len(line) + 1
        positions.append(replace(end, offset=offset))
    return positions


@dataclass(slots=True)
class Summary:
    """What shipping did, for replay's report and for tests."""

    metrics_mode: str = "putmetricdata"
    lines: int = 0
    events_sent: int = 0
    truncated: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    datums_sent: int = 0
    datums_excluded: dict[str, int] = field(default_factory=dict)
    emf_documents: int = 0
    # "path: what stopped the read", for files cut short (a corrupt or truncated gzip).
    damaged: list[str] = field(default_factory=list)

    def add(self, target: dict[str, int], counts: Mapping[str, int]) -> None:
        for k, v in counts.items():
            target[k] = target.get(k, 0) + v


class Shipper:
    """Turns lines into CloudWatch calls; one thread drives it (``run`` or ``replay``)."""

    def __init__(
        self,
        config: CloudWatchConfig,
        api: Api,
        derive: Derive,
        stats: ShipperStats,
        *,
        state: SectionStore | None = None,
        clock: Callable[[], float] = time.time,
        event_time: Callable[[dict[str, Any]], float | None] = event_time,
    ) -> None:
        """``event_time``: an event's time for its log event (the spec's ``[input]``)."""
        self.config = config
        self.summary = Summary(metrics_mode=config.metrics_mode)
        self._api = api
        self._derive = derive
        self._stats = stats
        self._state = state
        self._clock = clock
        self._event_time = event_time
        self._builder = BatchBuilder()
        self._pending_obs: list[tuple[Observation, float]] = []
        self._first_pending: float | None = None
        self._aggregator = Aggregator(config.flush_seconds)
        # Datums (or EMF documents' parts) of the flush in progress not yet acknowledged: saved
        # with the pending intervals, so a crash mid-flush repeats only the request in flight.
        self._unsent: list[Datum] = []
        self._position: Position | None = None
        self._dirty = False
        self._line_bytes = 0
        self._line_count = 0

    # -- state ----------------------------------------------------------------------------------

    def restore(self) -> Position | None:
        """Load the saved cursor and pending metric intervals; the position to resume from."""
        if self._state is None:
            return None
        data = self._state.load()
        if not data:
            return None
        try:
            raw_pos = data.get("position")
            self._position = position_from_json(raw_pos) if raw_pos else None
        except ValueError as exc:
            log.warning("cloudwatch cursor in the state file is damaged, ignored: %s", exc)
            self._position = None
        metrics = data.get("metrics")
        if isinstance(metrics, Mapping):
            bad = self._aggregator.load(metrics)
            if bad:
                log.warning("%d damaged metric intervals in the state file were ignored", bad)
        return self._position

    @property
    def acknowledged(self) -> Position | None:
        """The cursor CloudWatch has acknowledged: a restart would ship again from here."""
        return self._position

    @property
    def pending_intervals(self) -> int:
        """Metric intervals aggregated but not yet sent (kept in the state file)."""
        return len(self._aggregator)

    def save(self) -> None:
        """Write the acknowledged cursor and the unsent metric intervals to the state file."""
        if self._state is None:
            return
        self._state.save(
            {
                "position": position_to_json(self._position) if self._position else None,
                "metrics": (
                    self._aggregator.dump_with(self._unsent)
                    if self._unsent
                    else self._aggregator.dump()
                ),
            }
        )
        self._dirty = False

    # -- lines -----------------------------------------------------------------------------------

    def add_line(self, raw: bytes, position: Position | None) -> None:
        """Queue one line (shipping the batch first when this line would not fit)."""
        self.summary.lines += 1
        self._line_bytes += len(raw) + 1
        self._line_count += 1
        read_ms = int(self._clock() * 1000)
        # Blank, malformed or an event by the one rule the pipeline counts lines with.
        parsed = parse_line(raw)
        if parsed is None:
            self._skip(position)
            return
        event = parsed if type(parsed) is dict else None
        when = None if event is None else self._event_time(event)
        timestamp_ms = round(when * 1000) if when is not None else read_ms
        log_event = make_event(raw, timestamp_ms, position)
        if log_event is None:
            # Whitespace parse_line does not take for blank (Unicode spaces, \x1c-\x1f) gets here:
            # a malformed line, with nothing to ship either.
            self._skip(position)
            return
        if not self._builder.fits(log_event):
            self.ship_logs()
        self._builder.add(log_event)
        if self._first_pending is None:
            self._first_pending = self._clock()
        if event is not None:
            ts = timestamp_ms / 1000.0
            self._pending_obs.extend((obs, ts) for obs in self._derive(event))

    def _skip(self, position: Position | None) -> None:
        """Move the cursor past a line with nothing to ship."""
        self._builder.note_position(position)
        self._dirty = self._dirty or position is not None

    def note_position(self, position: Position | None) -> None:
        """Advance the cursor past bytes that produced no line (oversized, rotation)."""
        if position is not None:
            self._builder.note_position(position)
            self._dirty = True

    def batch_age(self) -> float:
        """Seconds the oldest queued line has waited (0 when none)."""
        return 0.0 if self._first_pending is None else self._clock() - self._first_pending

    def ship_logs(self) -> None:
        """Send the queued lines as one PutLogEvents batch and save the cursor once acknowledged."""
        if not len(self._builder) and not self._dirty:
            return
        batch = self._builder.take()
        observations, self._pending_obs = self._pending_obs, []
        self._first_pending = None
        # Stopped propagates: the cursor stays where it was and these lines are read again.
        # The log's own lines only: EMF documents are counted apart, as metrics, so that the
        # summary does not read as lines shipped twice.
        self.summary.events_sent += self._send_log_batch(self.config.log_stream, batch.events)
        self.summary.truncated += batch.truncated
        for obs, ts in observations:
            self._aggregator.add(obs, ts)
        if batch.position is not None:
            self._position = batch.position
        self.save()

    def _send_log_batch(self, stream: str, events: Sequence[LogEvent]) -> int:
        """PutLogEvents for events within the service window; returns how many were sent."""
        kept, excluded = split_window(events, int(self._clock() * 1000))
        if excluded:
            self.summary.add(self.summary.excluded, excluded)
            self._stats.reject({f"window_{k}": v for k, v in excluded.items()})
        if not kept:
            return 0
        try:
            info = self._api.put_log_events(stream, kept)
        except RequestRejected as exc:
            log.error("CloudWatch refused a batch of %d events: %s", len(kept), exc)
            self.summary.add(self.summary.rejected, {"invalid_request": len(kept)})
            self._stats.reject({"invalid_request": len(kept)})
            return 0
        rejected = rejected_counts(info, len(kept))
        if rejected:
            log.warning("CloudWatch rejected events: %s", rejected)
            self.summary.add(self.summary.rejected, rejected)
            self._stats.reject({f"response_{k}": v for k, v in rejected.items()})
        return len(kept)

    # -- metrics ---------------------------------------------------------------------------------

    def flush_metrics(self) -> None:
        """Send every pending interval (PutMetricData or EMF), saving after each request."""
        if not len(self._aggregator):
            return
        try:
            self._send_datums(self._aggregator.drain())
        except Stopped:
            # What was not acknowledged goes back, so the shutdown save keeps it.
            self._aggregator.put_back(self._unsent)
            self._unsent = []
            raise
        self.save()

    def _send_datums(self, datums: Iterable[Datum]) -> None:
        now_ms = int(self._clock() * 1000)
        kept: list[Datum] = []
        for datum in datums:
            reason = window_reason(datum.timestamp * 1000, now_ms)
            if reason is None:
                kept.append(datum)
            else:
                self.summary.add(self.summary.datums_excluded, {reason: 1})
                self._stats.exclude_datums({reason: 1})
        requests = self._emf_requests(kept) if self.config.metrics_mode == "emf" else None
        if requests is None:
            chunks = chunk_datums(kept)
            self._unsent = [datum for chunk in chunks for datum in chunk]
            for chunk in chunks:
                self._put_metric_data(chunk)
                self._acknowledged(len(chunk))
            return
        self._unsent = [part for _, datum_parts in requests for part in datum_parts]
        for events, datum_parts in requests:
            self.summary.emf_documents += self._send_log_batch(self.config.emf_log_stream, events)
            self._acknowledged(len(datum_parts))

    def _acknowledged(self, n: int) -> None:
        """The first ``n`` unsent datums were answered (stored, or refused and counted): save."""
        del self._unsent[:n]
        # Mid-flush only: the end of the flush saves anyway.
        if self._unsent:
            self.save()

    def _put_metric_data(self, request: Sequence[Datum]) -> None:
        try:
            self._api.put_metric_data(request)
        except RequestRejected as exc:
            log.error("CloudWatch refused %d metric datums: %s", len(request), exc)
            self.summary.add(self.summary.datums_excluded, {"invalid_request": len(request)})
            self._stats.exclude_datums({"invalid_request": len(request)})
            return
        self.summary.datums_sent += len(request)

    def _emf_requests(self, datums: Sequence[Datum]) -> list[tuple[list[LogEvent], list[Datum]]]:
        """The EMF documents as PutLogEvents batches, each with the datum parts it carries."""
        requests: list[tuple[list[LogEvent], list[Datum]]] = []
        builder = BatchBuilder()
        carried: list[Datum] = []
        for part, ts_ms, doc in emf.parts(datums, self.config.namespace):
            event = make_event(emf.encode(doc).encode("utf-8"), ts_ms)
            if event is None:
                continue
            if not builder.fits(event):
                requests.append((builder.take().events, carried))
                carried = []
            builder.add(event)
            carried.append(part)
        if len(builder):
            requests.append((builder.take().events, carried))
        return requests

    # -- drivers ---------------------------------------------------------------------------------

    def backlog(self, source: TailedLog) -> tuple[int, int]:
        """(bytes, estimated events) not yet acknowledged; safe to call from a scrape thread.

        Bytes the tailer has not read plus bytes read but not acknowledged; events are
        estimated from the mean line size seen so far.
        """
        nbytes = source.lag_bytes() + self._builder.byte_size
        mean = self._line_bytes / self._line_count if self._line_count else 0.0
        return nbytes, int(nbytes / mean) if mean else 0

    def run(
        self,
        source: TailedLog,
        stop: threading.Event,
        *,
        start: Position | None = None,
        poll_interval: float = 0.5,
        drain: Drain | None = None,
    ) -> None:
        """Ship ``source`` until ``stop`` is set, or until a requested ``drain`` has shipped
        everything up to a quiet end of the log; a shutdown saves the acknowledged cursor."""
        previous = start
        reader = None if drain is None else drain.reader()
        last_flush = self._clock()
        self._stats.backlog_probe = lambda: self.backlog(source)
        try:
            # Streams are created by the first PutLogEvents: lines are read (and the backlog
            # known) even while CloudWatch is unreachable at start.
            while not stop.is_set():
                batch = source.poll()
                positions = line_positions(previous, batch)
                for raw, pos in zip(batch.lines, positions, strict=True):
                    self.add_line(raw, pos)
                if batch.position is not None and batch.position != previous:
                    if not batch.lines:
                        self.note_position(batch.position)
                    previous = batch.position
                idle = batch.bytes_read == 0 and not batch.lines
                if idle or self.batch_age() >= MAX_BATCH_WAIT_SECONDS:
                    self.ship_logs()
                if self._clock() - last_flush >= self.config.flush_seconds:
                    self.flush_metrics()
                    last_flush = self._clock()
                if reader is not None and self._drain_done(reader, batch, idle):
                    return
                if idle:
                    stop.wait(poll_interval)
        except Stopped:
            pass
        except Exception:
            # /metrics keeps serving; the growing backlog and stale last-success time on it
            # (and this record) tell the operator that shipping stopped.
            log.exception("CloudWatch shipping stopped by an unexpected error")
        finally:
            self.save()

    def _drain_done(self, reader: DrainReader, batch: Batch, idle: bool) -> bool:
        """During a drain, once the log is quiet at its end: ship what is queued and every
        pending metric interval (the open one too), and say so. A drain cut short is ended by
        the stop event instead, leaving the cursor at what was acknowledged."""
        reader.read(batch.bytes_read)
        if reader.outcome(at_end=idle) != "quiet":
            return False
        self.ship_logs()
        self.flush_metrics()
        log.info("CloudWatch shipping drained", extra={"lines": self.summary.lines})
        return True

    def replay(self, sources: Iterable[Iterable[Batch]]) -> Summary:
        """Ship whole files (batches from replay's readers) with their original timestamps."""
        self._api.ensure_stream(self.config.log_stream)
        if self.config.metrics_mode == "emf":
            self._api.ensure_stream(self.config.emf_log_stream)
        for batches in sources:
            for batch in batches:
                for raw in batch.lines:
                    self.add_line(raw, None)
                if len(self._aggregator) >= REPLAY_MAX_PENDING_INTERVALS:
                    self.flush_metrics()
        self.ship_logs()
        self.flush_metrics()
        return self.summary
