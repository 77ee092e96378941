"""The protobuf exposition (``io.prometheus.client.MetricFamily``, length-delimited): the only
format that carries native histograms, written by hand on the protobuf wire format.

Every family of a page goes out: the store's from its snapshots (``StoreFamily.parts``), each
series with its start as the created timestamp of a counter or histogram, its bytes kept between
scrapes by its collector beside the OpenMetrics texts; any other (self-metrics, client_python's
process, platform and GC collectors) from its samples, grouped into metrics as client_golang
would write them: a counter named with its ``_total``, its ``_created`` as the start timestamp,
an info metric as a gauge of 1, a state set as gauges. Histograms carry their classic buckets
(cumulative, with their exemplars) and, with native buckets, the schema, zero bucket, spans and
deltas; the kept exemplars go into the histogram's own exemplar list too, with their timestamps,
where a native histogram's consumer looks.

Hand-written rather than through the ``protobuf`` package: the messages are few and fixed
(``metrics.proto`` of client_model), the writer is a few varints, and the page is composed from
kept byte strings, which a message object per series would not allow (docs/benchmarks.md has
the figures). The tests read every page back with the ``protobuf`` package over the vendored
``metrics.proto``, and with Prometheus itself.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any, Final

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample

from log_exporter.native import spans_and_deltas
from log_exporter.parse import event_time
from log_exporter.prometheus.families import Pairs, StoreFamily
from log_exporter.store import MetricDef, MetricSnapshot

__all__ = ["CONTENT_TYPE", "ProtobufEncoder", "varint"]

CONTENT_TYPE: Final = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

# MetricType of metrics.proto.
_COUNTER, _GAUGE, _SUMMARY, _UNTYPED, _HISTOGRAM, _GAUGE_HISTOGRAM = range(6)
_TYPES: Final = {
    "counter": _COUNTER,
    "gauge": _GAUGE,
    "summary": _SUMMARY,
    "histogram": _HISTOGRAM,
    "gaugehistogram": _GAUGE_HISTOGRAM,
    "info": _GAUGE,
    "stateset": _GAUGE,
}
_double = struct.Struct("<d").pack


def varint(n: int) -> bytes:
    """``n`` (unsigned, or a negative int64 as two's complement) as a protobuf varint."""
    if 0 <= n < _SMALL:
        return _VARINTS[n]
    return _varint(n)


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


# Most lengths, counts and deltas are small: their varints (and a delta's zigzag varint) come
# from tables instead of a call each, which was most of a page's time.
_SMALL: Final = 1 << 14
_VARINTS: Final = tuple(_varint(i) for i in range(_SMALL))
_ZIGZAGS: Final = tuple(_varint(_zigzag(i)) for i in range(-_SMALL // 2, _SMALL // 2))
_HALF: Final = _SMALL // 2


def _sint(n: int) -> bytes:
    """A zigzag varint (sint32, sint64)."""
    if -_HALF <= n < _HALF:
        return _ZIGZAGS[n + _HALF]
    return _varint(_zigzag(n))


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a string, a message or a packed list)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _double_field(number: int, value: float) -> bytes:
    return varint(number << 3 | 1) + _double(value)


def _uint_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def _label_pairs(names: Iterable[str], values: Iterable[str]) -> bytes:
    """The ``label`` fields of a metric (LabelPair, field 1), sorted by name as Prometheus keeps
    them."""
    out = []
    for n, v in sorted(zip(names, values, strict=True)):
        name = _NAMES.get(n)
        if name is None:
            if len(_NAMES) >= _NAMES_KEPT:
                _NAMES.clear()
            name = _NAMES[n] = _field(1, n.encode())
        value = v.encode("utf-8", "surrogatepass")
        pair = name + b"\x12" + varint(len(value)) + value
        out.append(b"\x0a" + varint(len(pair)) + pair)
    return b"".join(out)


# A label name's LabelPair.name field: the names come from the spec and the collectors, few.
_NAMES: dict[str, bytes] = {}
_NAMES_KEPT: Final = 4096


def _timestamp(seconds: float) -> bytes:
    """A ``google.protobuf.Timestamp`` message of Unix ``seconds`` (a series start is rounded
    to the millisecond first, Prometheus' precision: fewer distinct bytes for gzip)."""
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    out = b""
    if whole:
        out = _WHOLE.get(whole, b"")
        if not out:
            if len(_WHOLE) >= _STAMPS_KEPT:
                _WHOLE.clear()
            out = _WHOLE[whole] = _uint_field(1, whole)
    return out + (_uint_field(2, nanos) if nanos else b"")


# The seconds fields of timestamps: series starts and exemplars fall in few distinct seconds.
_WHOLE: dict[int, bytes] = {}
_STAMPS_KEPT: Final = 4096


def _exemplar(labels: dict[str, str], value: float, stamp: float | None) -> bytes:
    """An ``Exemplar`` message."""
    body = _label_pairs(labels, labels.values()) + _double_field(2, value)
    if stamp is not None:
        body += _field(3, _timestamp(stamp))
    return body


def _kept_exemplar(label: str, kept: tuple[str, float, object]) -> tuple[bytes, float | None]:
    """A kept exemplar (label value, amount, the event's raw timestamp) as an ``Exemplar``
    message, and its time."""
    value, amount, raw = kept
    stamp = raw if type(raw) is float else event_time({"timestamp": raw})
    return _exemplar({label: value}, float(amount), stamp), stamp


def _family(name: str, help_text: str, kind: int, metrics: list[bytes], unit: str) -> bytes:
    """One length-delimited ``MetricFamily``."""
    body = [_field(1, name.encode()), _field(2, help_text.encode("utf-8", "surrogatepass"))]
    body.append(_uint_field(3, kind))
    body += metrics
    if unit:
        body.append(_field(5, unit.encode()))
    data = b"".join(body)
    return varint(len(data)) + data


class _Kept:
    """One store metric's bytes kept from scrape to scrape: per series, the ``label`` fields and
    the exemplar messages last built (by identity of the kept entry)."""

    __slots__ = (
        "created",
        "definition",
        "exemplars",
        "extra",
        "heads",
        "les",
        "natives",
        "order",
        "prefixes",
    )

    def __init__(self, definition: MetricDef, extra: Pairs = ()) -> None:
        self.definition = definition
        self.extra = extra
        self.heads: dict[tuple[str, ...], bytes] = {}
        self.created: dict[tuple[str, ...], tuple[float, bytes]] = {}
        # A counter's or gauge's whole Metric up to its value's 8 bytes (without an exemplar).
        self.prefixes: dict[tuple[str, ...], bytes] = {}
        # A histogram's native fields, with the (schema, zero count, count) they were written
        # at: counts only grow (a halving changes the schema), so while those three are the
        # same, so are the buckets.
        self.natives: dict[tuple[str, ...], tuple[tuple[int, int, int], bytes]] = {}
        self.exemplars: dict[tuple[str, ...], tuple[Any, list[tuple[bytes, float | None]]]] = {}
        # A histogram's classic bounds as ``upper_bound`` fields, +Inf last.
        self.les = [_double_field(2, b) for b in (*definition.buckets, math.inf)]
        # Every label in name order, each with its LabelPair.name field: a series' own by its
        # value's position in the key, the label set's and constant ones with their value.
        names = definition.labels
        labels: list[tuple[str, int, bytes]] = [(n, i, b"") for i, n in enumerate(names)]
        labels += [(n, -1, v.encode("utf-8", "surrogatepass")) for n, v in extra]
        self.order = [(i, _field(1, n.encode()), v) for n, i, v in sorted(labels)]

    def head(self, key: tuple[str, ...]) -> bytes:
        head = self.heads.get(key)
        if head is None:
            if len(self.heads) >= 4 * self.definition.cap + 64:
                self.heads.clear()  # series gone after a reset or reload: start again
            pairs = []
            for i, name, fixed in self.order:
                value = key[i].encode("utf-8", "surrogatepass") if i >= 0 else fixed
                pair = name + b"\x12" + varint(len(value)) + value
                pairs.append(b"\x0a" + varint(len(pair)) + pair)
            head = self.heads[key] = b"".join(pairs)
        return head

    def prefix(self, key: tuple[str, ...], field: bytes, started: float | None) -> bytes:
        """``Metric{label..., field{[created_timestamp,] value = ``, the value's 8 bytes to
        follow (fields may come in any order: the start goes first, so the rest is kept)."""
        if len(self.prefixes) >= 4 * self.definition.cap + 64:
            self.prefixes.clear()
        h = self.head(key)
        created = b"" if started is None else _field(3, _timestamp(round(started, 3)))
        inner = created + b"\x09"
        prefix = h + field + varint(len(inner) + 8) + inner
        prefix = self.prefixes[key] = b"\x22" + varint(len(prefix) + 8) + prefix
        return prefix


class ProtobufEncoder:
    """Renders a registry as length-delimited ``MetricFamily`` messages; one instance serves
    every scrape (two at once may both build a series' bytes; they build the same)."""

    def __call__(self, registry: Collector) -> bytes:
        out: list[bytes] = []
        for metric in registry.collect():
            if isinstance(metric, StoreFamily):
                out.append(self._store(metric))
            else:
                out.append(_generic(metric))
        return b"".join(out)

    def _store(self, family: StoreFamily) -> bytes:
        d = family.parts[0][0].definition
        metrics: list[bytes] = []
        for m, texts in family.parts:  # one part per label set, each with its own kept bytes
            kept = texts.protobuf
            if kept is None or kept.definition is not m.definition or kept.extra != texts.extra:
                kept = texts.protobuf = _Kept(m.definition, texts.extra)
            if d.kind == "histogram":
                metrics += _store_histograms(m, kept)
            else:
                metrics += _store_plain(m, kept)
        if d.kind == "histogram":
            return _family(d.name, d.help, _HISTOGRAM, metrics, "")
        # A counter's name ends in _total already (the spec requires it).
        return _family(d.name, d.help, _COUNTER if d.kind == "counter" else _GAUGE, metrics, "")


def _store_plain(m: MetricSnapshot, kept: _Kept) -> list[bytes]:
    """The ``Metric`` fields of a store counter's or gauge's series."""
    d = m.definition
    pack, get, make = _double, kept.prefixes.get, kept.prefix
    field = b"\x1a" if d.kind == "counter" else b"\x12"  # Metric.counter, Metric.gauge
    exemplars = m.exemplars if d.kind == "counter" and m.exemplars else None
    started = m.started.get
    metrics = []
    for key, value in m.series.items():
        x = None if exemplars is None else exemplars.get(key)
        if x is None:
            prefix = get(key)
            if prefix is None:
                prefix = make(key, field, started(key))
            metrics.append(prefix + pack(value))
            continue
        assert d.exemplar is not None
        body = b"\t" + pack(value) + _field(2, _kept_exemplar(d.exemplar, x)[0])
        start = started(key)
        if start is not None:
            body += _field(3, _timestamp(round(start, 3)))
        metrics.append(_field(4, kept.head(key) + _field(3, body)))
    return metrics


def _store_histograms(m: MetricSnapshot, kept: _Kept) -> list[bytes]:
    """The ``Metric`` fields of a store histogram's series."""
    d = m.definition
    native_def = d.native
    classic = bool(d.buckets) or native_def is None
    label = d.exemplar if m.exemplars else None
    les = kept.les
    out = []
    small, varints, natives = _SMALL, _VARINTS, kept.natives
    for key, cells in m.series.items():
        parts: list[bytes] = []
        total = 0
        examples: list[tuple[bytes, float | None]] = []
        if label is not None:
            slots = m.exemplars.get(key)
            if slots is not None:
                examples = _slot_exemplars(kept, key, slots, label)
        for i, count in enumerate(cells[:-1]):
            total += int(count)
            if classic:
                # Bucket{cumulative_count, upper_bound[, exemplar]}: 10 bytes besides the count.
                vt = varints[total] if total < small else varint(total)
                if examples and examples[i][0]:
                    bucket = b"\x08" + vt + les[i] + _field(3, examples[i][0])
                    parts.append(b"\x1a" + varint(len(bucket)) + bucket)
                else:
                    parts.append(b"\x1a" + varints[10 + len(vt)] + b"\x08" + vt + les[i])
        head = [b"\x08" + varint(total), b"\x11" + _double(cells[-1])]
        start = m.started.get(key)
        if start is not None:
            head.append(_created(kept, key, start))
        if native_def is not None:
            buckets = m.native.get(key)
            mark = (
                (native_def.schema, 0, 0)
                if buckets is None
                else (buckets.schema, buckets.zero, total)
            )
            known = natives.get(key)
            if known is not None and known[0] == mark:
                parts.append(known[1])
            else:
                if len(natives) >= 4 * d.cap + 64:
                    natives.clear()
                written = _native(m, key, native_def.zero_threshold)
                natives[key] = (mark, written)
                parts.append(written)
        if examples and native_def is not None:
            # A native histogram's consumer reads the list, in time order, timestamps required.
            timed = sorted((s, x) for x, s in examples if x and s is not None)
            parts += [_field(16, x) for _, x in timed]
        body = b"".join(head + parts)
        metric = kept.head(key) + b"\x3a" + varint(len(body)) + body
        out.append(b"\x22" + varint(len(metric)) + metric)
    return out


def _created(kept: _Kept, key: tuple[str, ...], start: float) -> bytes:
    """A histogram's ``created_timestamp`` field (15), kept per series while its start is."""
    known = kept.created.get(key)
    if known is not None and known[0] == start:
        return known[1]
    if len(kept.created) >= 4 * kept.definition.cap + 64:
        kept.created.clear()
    written = _field(15, _timestamp(round(start, 3)))
    kept.created[key] = (start, written)
    return written


def _slot_exemplars(
    kept: _Kept, key: tuple[str, ...], slots: list[Any], label: str
) -> list[tuple[bytes, float | None]]:
    """The ``Exemplar`` messages of a series' bucket slots (b"" where none), kept while the
    slots hold the same entries."""
    old = kept.exemplars.get(key)
    if (
        old is not None
        and len(old[0]) == len(slots)
        and all(a is b for a, b in zip(old[0], slots, strict=True))
    ):
        return old[1]
    built = [(b"", None) if x is None else _kept_exemplar(label, x) for x in slots]
    if len(kept.exemplars) >= 4 * kept.definition.cap + 64:
        kept.exemplars.clear()
    kept.exemplars[key] = (tuple(slots), built)
    return built


def _native(m: MetricSnapshot, key: tuple[str, ...], threshold: float) -> bytes:
    """The native fields of a series: schema, zero threshold and count, positive spans and
    deltas (an empty series: the spec's schema, and a span of no buckets if nothing else marks
    it as native, as client_golang writes it)."""
    buckets = m.native.get(key)
    assert m.definition.native is not None
    schema = m.definition.native.schema if buckets is None else buckets.schema
    zero = 0 if buckets is None else buckets.zero
    out = [b"\x28" + _sint(schema), b"\x31" + _double(threshold), b"\x38" + varint(zero)]
    spans, deltas = spans_and_deltas({} if buckets is None else buckets.positive)
    if not spans and threshold == 0 and zero == 0:
        spans = [(0, 0)]
    for offset, length in spans:
        span = b"\x08" + _sint(offset) + b"\x10" + varint(length)
        out.append(b"\x62" + varint(len(span)) + span)
    if deltas:
        packed = b"".join([_sint(n) for n in deltas])
        out.append(b"\x6a" + varint(len(packed)) + packed)
    return b"".join(out)


# -- any other family, from its samples -----------------------------------------------------


def _generic(metric: Metric) -> bytes:
    """A family of client_python's samples as a ``MetricFamily``."""
    kind = metric.type
    name = metric.name
    if kind == "counter":
        name = f"{name}_total"
    elif kind == "info":
        name = f"{name}_info"
    groups: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for s in metric.samples:
        labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("le", "quantile")))
        groups.setdefault(labels, []).append(s)
    metrics = []
    for labels, samples in groups.items():
        body = _generic_metric(metric, kind, samples)
        stamp = next((s.timestamp for s in samples if s.timestamp is not None), None)
        if stamp is not None:
            body += b"\x30" + varint(round(float(stamp) * 1000))
        head = _label_pairs([k for k, _ in labels], [v for _, v in labels])
        metrics.append(_field(4, head + body))
    return _family(name, metric.documentation, _TYPES.get(kind, _UNTYPED), metrics, metric.unit)


def _suffix(metric: Metric, s: Sample) -> str:
    return s.name[len(metric.name) :]


def _generic_metric(metric: Metric, kind: str, samples: list[Sample]) -> bytes:
    """The value field of one ``Metric`` (its samples share their labels, bar le/quantile)."""
    if kind == "counter":
        return _field(3, _generic_counter(metric, samples))
    if kind in ("histogram", "gaugehistogram"):
        return _field(7, _generic_histogram(metric, samples))
    if kind == "summary":
        return _field(4, _generic_summary(metric, samples))
    value = samples[0].value
    if kind in ("gauge", "info", "stateset"):
        return _field(2, _double_field(1, value))
    return _field(5, _double_field(1, value))


def _generic_counter(metric: Metric, samples: list[Sample]) -> bytes:
    value, extra = b"", b""
    for s in samples:
        suffix = _suffix(metric, s)
        if suffix == "_total":
            value = _double_field(1, s.value)
            if s.exemplar is not None:
                value += _field(2, _sample_exemplar(s.exemplar))
        elif suffix == "_created":
            extra = _field(3, _timestamp(s.value))
    return value + extra


def _generic_summary(metric: Metric, samples: list[Sample]) -> bytes:
    body = b""
    for s in samples:
        suffix = _suffix(metric, s)
        if suffix == "_count":
            body += _uint_field(1, int(s.value))
        elif suffix == "_sum":
            body += _double_field(2, s.value)
        elif suffix == "_created":
            body += _field(4, _timestamp(s.value))
        elif "quantile" in s.labels:
            q = float(s.labels["quantile"])
            body += _field(3, _double_field(1, q) + _double_field(2, s.value))
    return body


def _generic_histogram(metric: Metric, samples: list[Sample]) -> bytes:
    count, total, created = 0, 0.0, None
    buckets = []
    for s in samples:
        suffix = _suffix(metric, s)
        if suffix == "_bucket":
            bucket = _uint_field(1, int(s.value)) + _double_field(2, float(s.labels["le"]))
            if s.exemplar is not None:
                bucket += _field(3, _sample_exemplar(s.exemplar))
            buckets.append(_field(3, bucket))
        elif suffix in ("_count", "_gcount"):
            count = int(s.value)
        elif suffix in ("_sum", "_gsum"):
            total = s.value
        elif suffix == "_created":
            created = s.value
    body = _uint_field(1, count) + _double_field(2, total) + b"".join(buckets)
    if created is not None:
        body += _field(15, _timestamp(created))
    return body


def _sample_exemplar(x: Exemplar) -> bytes:
    stamp = None if x.timestamp is None else float(x.timestamp)
    return _exemplar(dict(x.labels), x.value, stamp)
