"""Replay's backfill writer: timestamped OpenMetrics text from a series of metric-family
snapshots, in bounded memory, for ``promtool tsdb create-blocks-from openmetrics``.

OpenMetrics wants every sample of one family together and, inside a family, every point of one
series (Metric) together in increasing time order ("Metrics MUST NOT be interleaved"). Snapshots
arrive the other way round: all series at one instant, then all series at the next. So each
snapshot's values are appended to one spill file per family (binary records: series index, step
index, values) and transposed at the end, a group of series at a time, so memory holds at most
``budget_values`` values plus one entry per series, whatever the number of steps.

Snapshots of several logs (replay's file sets) may be added one log after the other, each with
its labels: every family is still written once, holding the series of every log, and time need
only increase within one log's snapshots.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from prometheus_client.metrics_core import Metric

from log_exporter.prometheus.text import escape

__all__ = ["Labels", "SpillingWriter"]

_HEAD = struct.Struct("<II")
_READ_SIZE = 1 << 20
# Labels that tell the points of one sample set apart, not the series they belong to.
_POINT_LABELS = frozenset({"le", "quantile"})

Labels = tuple[tuple[str, str], ...]


def _prefix(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def format_timestamp(t: float) -> str:
    """Seconds as OpenMetrics wants them: an integer without a point, else a plain decimal."""
    if t == int(t):
        return str(int(t))
    text = repr(t)
    # repr switches to exponent notation for tiny or huge values; timestamps want plain digits.
    return f"{t:.9f}".rstrip("0") if "e" in text else text


@dataclass(slots=True)
class _Family:
    name: str
    type: str
    help: str
    unit: str
    file: BinaryIO
    # Identity of a series (the labels its log adds, its sample names and label sets) -> index.
    index: dict[tuple[Labels, tuple[tuple[str, Labels], ...]], int] = field(default_factory=dict)
    # Per series index: the rendered "name{labels}" of each of its samples, and its point count.
    prefixes: list[tuple[str, ...]] = field(default_factory=list)
    points: list[int] = field(default_factory=list)


class SpillingWriter:
    """Collects snapshots with ``add`` and writes one OpenMetrics exposition with ``write``."""

    def __init__(self, *, tmpdir: str | None = None, budget_values: int = 1 << 21) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="log-exporter-replay-", dir=tmpdir)
        self._budget = max(budget_values, 1)
        self._families: dict[str, _Family] = {}
        # One float per step: memory grows with steps only, never with events.
        self._times = array("d")
        # The latest time of each log's snapshots (by the labels they are added with).
        self._last_time: dict[Labels, float] = {}

    @property
    def steps(self) -> int:
        return len(self._times)

    def add(self, families: Iterable[Metric], timestamp: float, labels: Labels = ()) -> None:
        """Record every series of ``families`` at ``timestamp`` (strictly after the previous
        snapshot added with the same ``labels``), each series carrying ``labels`` first."""
        last = self._last_time.get(labels)
        if last is not None and timestamp <= last:
            raise ValueError(f"timestamps must increase: {timestamp} after {last}")
        self._last_time[labels] = timestamp
        step = len(self._times)
        self._times.append(timestamp)
        for metric in families:
            fam = self._families.get(metric.name)
            if fam is None:
                fam = self._new_family(metric)
            self._add_points(fam, metric, step, labels)

    def _new_family(self, metric: Metric) -> _Family:
        n = len(self._families)
        # Binary spill, buffered: the records are small and written in order.
        path = os.path.join(self._dir.name, f"f{n}.bin")
        spill = open(path, "w+b")  # noqa: SIM115 - closed by close(), it outlives this call
        fam = _Family(metric.name, metric.type, metric.documentation, metric.unit, spill)
        self._families[metric.name] = fam
        return fam

    @staticmethod
    def _add_points(fam: _Family, metric: Metric, step: int, extra: Labels) -> None:
        # Group the samples of this instant by series: a histogram series is its labels without
        # "le" and owns every bucket, _count and _sum sample carrying those labels.
        groups: dict[tuple[tuple[str, str], ...], list[tuple[str, tuple[tuple[str, str], ...]]]]
        groups = {}
        values: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for s in metric.samples:
            if s.name.endswith("_created"):
                # Creation times are not derived from the log; a replay has nothing true to say.
                continue
            labels = tuple(s.labels.items())
            ident = tuple(kv for kv in labels if kv[0] not in _POINT_LABELS)
            g = groups.get(ident)
            if g is None:
                g = groups[ident] = []
                values[ident] = []
            g.append((s.name, labels))
            values[ident].append(s.value)
        write = fam.file.write
        for ident, shape in groups.items():
            key = (extra, tuple(shape))
            idx = fam.index.get(key)
            if idx is None:
                idx = fam.index[key] = len(fam.prefixes)
                fam.prefixes.append(tuple(_prefix(n, extra + lb) for n, lb in shape))
                fam.points.append(0)
            fam.points[idx] += 1
            vals = values[ident]
            write(_HEAD.pack(idx, step))
            write(struct.pack(f"<{len(vals)}d", *vals))

    def write(self, out: BinaryIO) -> None:
        """Write the whole exposition, ending in ``# EOF``, then nothing more can be added."""
        times = self._times
        stamps_cache: dict[int, bytes] = {}

        def stamp(step: int) -> bytes:
            text = stamps_cache.get(step)
            if text is None:
                if len(stamps_cache) > 4096:
                    stamps_cache.clear()
                text = stamps_cache[step] = format_timestamp(times[step]).encode()
            return text

        for fam in self._families.values():
            out.write(f"# TYPE {fam.name} {fam.type}\n".encode())
            if fam.unit:
                out.write(f"# UNIT {fam.name} {fam.unit}\n".encode())
            if fam.help:
                out.write(f"# HELP {fam.name} {escape(fam.help)}\n".encode())
            fam.file.flush()
            for first, last in self._groups(fam):
                self._write_group(fam, first, last, out, stamp)
        out.write(b"# EOF\n")

    def _groups(self, fam: _Family) -> Iterable[tuple[int, int]]:
        """Consecutive ranges of series whose points fit in the memory budget together."""
        first, used = 0, 0
        for i, (prefixes, points) in enumerate(zip(fam.prefixes, fam.points, strict=True)):
            cost = len(prefixes) * points
            if used and used + cost > self._budget:
                yield first, i
                first, used = i, 0
            used += cost
        if first < len(fam.prefixes):
            yield first, len(fam.prefixes)

    def _write_group(
        self, fam: _Family, first: int, last: int, out: BinaryIO, stamp: Callable[[int], bytes]
    ) -> None:
        steps = {i: array("I") for i in range(first, last)}
        values = {i: array("d") for i in range(first, last)}
        widths = [len(p) for p in fam.prefixes]
        head_size = _HEAD.size
        f = fam.file
        f.seek(0)
        buf = b""
        while True:
            chunk = f.read(_READ_SIZE)
            if not chunk:
                break
            buf = buf + chunk if buf else chunk
            pos, end = 0, len(buf)
            view = memoryview(buf)
            while pos + head_size <= end:
                idx, step = _HEAD.unpack_from(buf, pos)
                rec_end = pos + head_size + 8 * widths[idx]
                if rec_end > end:
                    break
                if first <= idx < last:
                    steps[idx].append(step)
                    values[idx].frombytes(view[pos + head_size : rec_end])
                pos = rec_end
            view.release()
            buf = buf[pos:]
        f.seek(0, os.SEEK_END)
        for i in range(first, last):
            prefixes = [p.encode() + b" " for p in fam.prefixes[i]]
            width = len(prefixes)
            vals = values[i]
            lines: list[bytes] = []
            for n, step in enumerate(steps[i]):
                ts = b" " + stamp(step) + b"\n"
                base = n * width
                for j, prefix in enumerate(prefixes):
                    lines.append(prefix + _value(vals[base + j]) + ts)
            out.write(b"".join(lines))
            del steps[i], values[i]

    def close(self) -> None:
        """Remove the spill files."""
        for fam in self._families.values():
            fam.file.close()
        self._dir.cleanup()

    def __enter__(self) -> SpillingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _value(v: float) -> bytes:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        # OpenMetrics lets integers go without a point; it keeps the file smaller.
        return str(int(v)).encode()
    if math.isnan(v):
        return b"NaN"
    if math.isinf(v):
        return b"+Inf" if v > 0 else b"-Inf"
    # Python's shortest round-trip repr ("0.1", "1e-05", "2.5e+20") is a valid OpenMetrics number.
    return repr(v).encode()
