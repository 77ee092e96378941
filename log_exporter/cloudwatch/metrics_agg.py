"""Pure aggregation of derived values into CloudWatch metric datums, chunked to API limits.

Values are grouped by metric, dimensions and the event-time interval they fall in. Counters
become one per-interval sum; distributions (durations) become Values/Counts pairs so CloudWatch
can compute percentiles. No I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from log_exporter.spec.cloudwatch import Dimensions, Observation

MAX_DATUMS_PER_REQUEST: Final = 1_000
# The API allows 1 MB per request; the estimate below is generous, so this is the budget.
MAX_REQUEST_BYTES: Final = 1_000_000
MAX_VALUES_PER_DATUM: Final = 150
MAX_DIMENSIONS: Final = 30
MAX_DIMENSION_VALUE_CHARS: Final = 1_024
# CloudWatch refuses magnitudes outside this range (zero excepted).
MIN_MAGNITUDE: Final = 8.515920e-109
MAX_MAGNITUDE: Final = 1.174271e108


@dataclass(frozen=True, slots=True)
class Datum:
    """One MetricDatum: either ``value`` (a sum) or ``values``/``counts`` (a distribution)."""

    metric: str
    dimensions: Dimensions
    timestamp: int  # Unix seconds, the start of the interval
    unit: str
    value: float | None = None
    values: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()

    def to_api(self) -> dict[str, Any]:
        """The datum as boto3's ``put_metric_data`` wants it."""
        datum: dict[str, Any] = {
            "MetricName": self.metric,
            "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
            "Timestamp": datetime.fromtimestamp(self.timestamp, UTC),
            "Unit": self.unit,
        }
        if self.value is not None:
            datum["Value"] = self.value
        else:
            datum["Values"] = list(self.values)
            datum["Counts"] = list(self.counts)
        return datum

    def estimated_bytes(self) -> int:
        """An upper bound on this datum's share of a request, whatever the wire protocol.

        The query protocol spells out a ~50-byte key per field and may percent-encode every
        byte of a value (3x), so each field is costed at 64 bytes plus 3x its text.
        """
        fields = [self.metric, self.unit, str(self.timestamp)]
        for name, value in self.dimensions:
            fields += [name, value]
        if self.value is not None:
            fields.append(repr(self.value))
        fields += [repr(v) for v in self.values]
        fields += [repr(c) for c in self.counts]
        return sum(64 + 3 * len(f) for f in fields)


def valid_value(value: float) -> bool:
    """True for a value CloudWatch accepts: finite and within its magnitude range."""
    if not math.isfinite(value):
        return False
    magnitude = abs(value)
    return magnitude == 0.0 or MIN_MAGNITUDE <= magnitude <= MAX_MAGNITUDE


def clean_dimensions(dimensions: Iterable[tuple[str, str]]) -> Dimensions:
    """Dimensions as CloudWatch accepts them: at most 30, non-empty values of <= 1024 chars."""
    cleaned = tuple(
        (name, (value or "unknown")[:MAX_DIMENSION_VALUE_CHARS]) for name, value in dimensions
    )
    if len(cleaned) > MAX_DIMENSIONS:
        raise ValueError(f"{len(cleaned)} dimensions, CloudWatch allows {MAX_DIMENSIONS}")
    return cleaned


_Key = tuple[str, Dimensions, str, int]


@dataclass(slots=True)
class Aggregator:
    """Per-interval sums and value histograms by event time, until drained."""

    interval_seconds: float
    _sums: dict[_Key, float] = field(default_factory=dict)
    _dists: dict[_Key, dict[float, int]] = field(default_factory=dict)
    invalid_values: int = 0

    def bucket(self, timestamp_s: float) -> int:
        """Start of the interval that ``timestamp_s`` falls in, in whole seconds."""
        step = self.interval_seconds
        return int(math.floor(timestamp_s / step) * step)

    def add(self, obs: Observation, timestamp_s: float) -> bool:
        """Count ``obs`` at event time ``timestamp_s``; False (and counted) if not sendable."""
        if not valid_value(obs.value):
            self.invalid_values += 1
            return False
        key = (obs.metric, clean_dimensions(obs.dimensions), obs.unit, self.bucket(timestamp_s))
        if obs.kind == "sum":
            self._sums[key] = self._sums.get(key, 0.0) + obs.value
        else:
            dist = self._dists.setdefault(key, {})
            dist[obs.value] = dist.get(obs.value, 0) + 1
        return True

    def __len__(self) -> int:
        return len(self._sums) + len(self._dists)

    def drain(self) -> list[Datum]:
        """Every pending interval as datums (distributions split at 150 values), then empty."""
        datums: list[Datum] = []
        for (metric, dims, unit, ts), total in sorted(self._sums.items()):
            # A sum of finite values can still overflow to inf; never send that.
            if valid_value(total):
                datums.append(Datum(metric, dims, ts, unit, value=total))
            else:
                self.invalid_values += 1
        for (metric, dims, unit, ts), dist in sorted(self._dists.items()):
            items = sorted(dist.items())
            for start in range(0, len(items), MAX_VALUES_PER_DATUM):
                chunk = items[start : start + MAX_VALUES_PER_DATUM]
                datums.append(
                    Datum(
                        metric,
                        dims,
                        ts,
                        unit,
                        values=tuple(v for v, _ in chunk),
                        counts=tuple(float(c) for _, c in chunk),
                    )
                )
        self._sums.clear()
        self._dists.clear()
        return datums

    def put_back(self, datums: Iterable[Datum]) -> None:
        """Add drained datums (or parts of them) back to what is pending, as if never drained."""
        for datum in datums:
            key = (datum.metric, datum.dimensions, datum.unit, datum.timestamp)
            if datum.value is not None:
                self._sums[key] = self._sums.get(key, 0.0) + datum.value
                continue
            dist = self._dists.setdefault(key, {})
            for value, count in zip(datum.values, datum.counts, strict=True):
                dist[value] = dist.get(value, 0) + int(count)

    def dump_with(self, unsent: Iterable[Datum]) -> dict[str, Any]:
        """``dump`` as if ``unsent`` had been put back, leaving this aggregator as it is."""
        copy = Aggregator(self.interval_seconds)
        copy.load(self.dump())
        copy.put_back(unsent)
        return copy.dump()

    def dump(self) -> dict[str, Any]:
        """Pending intervals as JSON-ready data, for the state file."""
        return {
            "sums": [
                [m, [list(d) for d in dims], u, ts, v] for (m, dims, u, ts), v in self._sums.items()
            ],
            "dists": [
                [m, [list(d) for d in dims], u, ts, [[v, c] for v, c in dist.items()]]
                for (m, dims, u, ts), dist in self._dists.items()
            ],
        }

    def load(self, data: Mapping[str, Any]) -> int:
        """Add what ``dump`` saved to what is pending; returns how many entries were unreadable."""
        bad = 0
        for entry in data.get("sums", []):
            try:
                m, dims, u, ts, v = entry
                key = (str(m), tuple((str(a), str(b)) for a, b in dims), str(u), int(ts))
                self._sums[key] = self._sums.get(key, 0.0) + float(v)
            except (TypeError, ValueError):
                bad += 1
        for entry in data.get("dists", []):
            try:
                m, dims, u, ts, pairs = entry
                key = (str(m), tuple((str(a), str(b)) for a, b in dims), str(u), int(ts))
                restored = {float(v): int(c) for v, c in pairs}
            except (TypeError, ValueError):
                bad += 1
                continue
            dist = self._dists.setdefault(key, {})
            for v, c in restored.items():
                dist[v] = dist.get(v, 0) + c
        return bad


def chunk_datums(datums: Iterable[Datum]) -> list[list[Datum]]:
    """Datums grouped into PutMetricData requests: <= 1,000 datums and <= 1 MB each."""
    requests: list[list[Datum]] = []
    current: list[Datum] = []
    size = 0
    for datum in datums:
        cost = datum.estimated_bytes()
        if current and (len(current) >= MAX_DATUMS_PER_REQUEST or size + cost > MAX_REQUEST_BYTES):
            requests.append(current)
            current, size = [], 0
        current.append(datum)
        size += cost
    if current:
        requests.append(current)
    return requests
