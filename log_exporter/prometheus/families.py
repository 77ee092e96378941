"""The store's metric families at serve's scrapes: client_python families whose OpenMetrics and
text-format lines are written straight from the snapshot, with each series' text kept between
scrapes (the two formats share a series' label text).

Building a ``Sample`` per exposed series (a label dict, a named tuple, an ``Exemplar``) and then
sorting, escaping and formatting it again on every scrape cost about 2 µs per series. Here a
series' label text (its "head", ``name{a="x",b="y"}``) is composed once, and its exemplar's text
once per kept exemplar; a scrape formats the numbers and joins. ``encoder`` asks a family for
``openmetrics_lines()``; any other reader (client_python's encoders, ``get_sample_value``) reads
``samples``, which are built only then, and are the very samples of the collector's ordinary
family: the tests pin that both render to client_python's bytes.

The kept texts are bounded by the store's series (their cap): a metric's are dropped when they
outnumber its live series twice over (after a reset or a spec reload). Entries are immutable
tuples replaced whole, so two scrapes at once may both compose a text, never mix two up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from log_exporter.parse import event_time
from log_exporter.prometheus.text import escape, go_number
from log_exporter.store import MetricDef, MetricSnapshot

__all__ = ["Pairs", "SeriesTexts", "StoreFamily", "exemplar_text", "stamp_text"]

Key = tuple[str, ...]
# Label pairs added to every series of a store: (name, value), the names unique.
Pairs = tuple[tuple[str, str], ...]
# A kept exemplar, as the store keeps it: (label value, amount, the event's raw timestamp).
Kept = tuple[str, float, object]


class SeriesTexts:
    """What one metric's series texts are, kept from scrape to scrape (one per metric of a
    collector; a new one when the metric's definition changes)."""

    __slots__ = ("definition", "extra", "protobuf", "texts")

    def __init__(self, definition: MetricDef, extra: Pairs = ()) -> None:
        self.definition = definition
        # Label pairs every series of this metric carries besides its own: its label set's (the
        # captures of the file it came from) and the constant ``--label`` ones.
        self.extra = extra
        # The protobuf encoder's bytes of the same series (``protobuf._Kept``), kept alike.
        self.protobuf: Any = None
        # Key -> a counter's or gauge's (head, kept exemplar, its text), or a histogram's
        # (bucket head up to the le value, the rest, _count head, _sum head, kept, texts).
        self.texts: dict[Key, tuple[Any, ...]] = {}

    def bounded(self, live: int) -> dict[Key, tuple[Any, ...]]:
        """The texts, dropped first if stale ones (series no longer there) may dominate."""
        if len(self.texts) > 2 * live + 64:
            self.texts = {}
        return self.texts


class StoreFamily(Metric):
    """One store metric (counter, gauge or histogram) at a scrape (either format).

    ``shell`` is the collector's ordinary family without samples (for client_python's name,
    type and help), ``build`` makes that family with its samples when anything reads them.
    ``more``: the same metric's snapshots of further label sets, each with its texts (whose
    ``extra`` pairs tell the sets apart), written after the first: a family appears once.
    """

    def __init__(
        self,
        shell: Metric,
        snapshot: MetricSnapshot,
        texts: SeriesTexts,
        build: Callable[[], Metric],
        more: Sequence[tuple[MetricSnapshot, SeriesTexts]] = (),
    ) -> None:
        super().__init__(shell.name, shell.documentation, shell.type, shell.unit)
        self._parts = [(snapshot, texts), *more]
        self._build = build
        self._samples: list[Sample] | None = None

    @property
    def parts(self) -> list[tuple[MetricSnapshot, SeriesTexts]]:
        """The store copies this family shows, one per label set, each with what its collector
        keeps of its series between scrapes (the protobuf encoder reads them directly)."""
        return self._parts

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self._build().samples
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._samples = value

    def openmetrics_lines(self) -> list[str]:
        """The family's lines, exactly as client_python's OpenMetrics encoder writes them."""
        name = self.name
        out = [f"# HELP {name} {escape(self.documentation)}\n", f"# TYPE {name} {self.type}\n"]
        if self.unit:
            out.append(f"# UNIT {name} {self.unit}\n")
        for m, own in self._parts:
            label = m.definition.exemplar if m.exemplars else None
            texts = own.bounded(len(m.series))
            if self.type == "histogram":
                _histogram(out, name, m, texts, label, own.extra)
            else:
                sample = f"{name}_total" if self.type == "counter" else name
                _plain(out, sample, m, texts, label, own.extra)
        return out

    def text_lines(self) -> list[str]:
        """The family's lines, exactly as client_python's text format (0.0.4) writes them: a
        counter's HELP and TYPE name its ``_total`` sample, no UNIT, no exemplars."""
        name = self.name
        shown = f"{name}_total" if self.type == "counter" else name
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out = [f"# HELP {shown} {doc}\n", f"# TYPE {shown} {self.type}\n"]
        for m, own in self._parts:
            texts = own.bounded(len(m.series))
            if self.type == "histogram":
                _histogram(out, name, m, texts, None, own.extra)
            else:
                _plain(out, shown, m, texts, None, own.extra)
        return out


def exemplar_text(label: str, kept: Kept) -> str:
    """A kept exemplar's `` # {label="value"} amount timestamp``, as client_python writes
    ``Exemplar({label: value}, float(amount), event_time(...))``."""
    value, amount, raw_time = kept
    amount = float(amount)
    number = _AMOUNTS.get(amount)
    if number is None:
        number = go_number(amount)
        if amount > 0.0:  # never -0.0, which would share 0.0's entry
            if len(_AMOUNTS) >= _KEPT:
                _AMOUNTS.clear()
            _AMOUNTS[amount] = number
    return f' # {{{label}="{escape(value)}"}} {number}{stamp_text(raw_time)}'


# The texts of the amounts exemplars repeat (a counter's is mostly 1.0), and of each second
# timestamps began with; both bounded, as they come from the log.
_KEPT = 4096
_AMOUNTS: dict[float, str] = {}
_SECONDS: dict[str, str] = {}


def stamp_text(raw: object) -> str:
    """`` seconds`` of an event's raw timestamp as client_python writes an exemplar's timestamp
    (``str`` of ``event_time``'s float), or "" when it has none.

    Parsing and printing the float cost 0.6 µs. SustainBot's shape, ``YYYY-MM-DDTHH:MM:SS.mmmZ``,
    takes the second's text from a memo and appends the digits. That is ``str`` of the float
    exactly: ``event_time`` divides whole microseconds, so its float is the one nearest the
    decimal, and a decimal of at most 15 significant digits is what ``repr`` prints back.
    """
    if type(raw) is str and len(raw) == 24 and raw[19] == "." and raw[23] == "Z":
        fraction = raw[20:23]
        if fraction.isascii() and fraction.isdigit():
            second = _SECONDS.get(raw[:19])
            if second is None:
                second = _second(raw[:19])
                if len(_SECONDS) >= _KEPT:
                    _SECONDS.clear()
                _SECONDS[raw[:19]] = second
            if second:
                return second + (fraction.rstrip("0") or "0")
    if type(raw) is float:
        # A spec reading Unix times keeps the seconds themselves (``[input]`` timestamp).
        return f" {raw}"
    stamp = event_time({"timestamp": raw})
    return "" if stamp is None else f" {stamp}"


def _second(prefix: str) -> str:
    """`` 1769954580.`` for a timestamp's first 19 characters, or "" where the shortcut does not
    hold (not ``YYYY-MM-DD?HH:MM:SS`` as ``event_time`` reads it, before 1970, or so far ahead
    that the digits pass 15)."""
    if prefix[4] != "-" or prefix[7] != "-" or prefix[13] != ":" or prefix[16] != ":":
        return ""
    start = event_time({"timestamp": f"{prefix}+00:00"})
    if start is None or not 0 <= start < 10**11 or start != int(start):
        return ""
    return f" {int(start)}."


def _head(sample: str, names: tuple[str, ...], key: Key, extra: Pairs = ()) -> str:
    if not names and not extra:
        return sample
    pairs = sorted([*zip(names, key, strict=True), *extra])
    inner = ",".join([f'{n}="{escape(v)}"' for n, v in pairs])
    return f"{sample}{{{inner}}}"


def _plain(
    out: list[str],
    sample: str,
    m: MetricSnapshot,
    texts: dict[Key, tuple[Any, ...]],
    label: str | None,
    extra: Pairs = (),
) -> None:
    """A counter's or gauge's lines: one per series, a counter's with its exemplar if kept."""
    names = m.definition.labels
    add, get, go = out.append, texts.get, go_number
    if label is None:
        for key, value in m.series.items():
            t = get(key)
            if t is None:
                t = texts[key] = (_head(sample, names, key, extra), None, "")
            add(f"{t[0]} {go(value)}\n")
        return
    kept_of = m.exemplars.get
    for key, value in m.series.items():
        t = get(key)
        kept = kept_of(key)
        if t is None or t[1] is not kept:
            head = _head(sample, names, key, extra) if t is None else t[0]
            t = texts[key] = (head, kept, "" if kept is None else exemplar_text(label, kept))
        add(f"{t[0]} {go(value)}{t[2]}\n")


def _histogram(
    out: list[str],
    name: str,
    m: MetricSnapshot,
    texts: dict[Key, tuple[Any, ...]],
    label: str | None,
    extra: Pairs = (),
) -> None:
    """A histogram's lines: per series its cumulative buckets (each with its exemplar if kept),
    then _count and _sum, which client_python leaves out when the first bound is negative."""
    d = m.definition
    # client_python writes each bucket's le as floatToGoString does, sorted among the labels.
    les = [f'{floatToGoString(b)}"' for b in d.buckets] + ['+Inf"']  # type: ignore[no-untyped-call]
    totals = not d.buckets or d.buckets[0] >= 0
    add, get, go = out.append, texts.get, go_number
    kept_of = m.exemplars.get if label is not None else None
    for key, cells in m.series.items():
        t = get(key)
        slots = kept_of(key) if kept_of is not None else None
        if t is None or (slots is not None and t[4] != slots):
            t = texts[key] = _histogram_texts(name, d.labels, key, slots, label, t, extra)
        bucket, rest, bucket_texts = t[0], t[1], t[5]
        cumulative = 0.0
        if bucket_texts is None or slots is None:
            for le, count in zip(les, cells, strict=False):
                cumulative += count
                add(f"{bucket}{le}{rest} {go(cumulative)}\n")
        else:
            for le, count, x in zip(les, cells, bucket_texts, strict=False):
                cumulative += count
                add(f"{bucket}{le}{rest} {go(cumulative)}{x}\n")
        if totals:
            add(f"{t[2]} {go(cumulative)}\n")
            add(f"{t[3]} {go(cells[-1])}\n")


def _histogram_texts(
    name: str,
    names: tuple[str, ...],
    key: Key,
    slots: list[Kept | None] | None,
    label: str | None,
    old: tuple[Any, ...] | None,
    extra: Pairs = (),
) -> tuple[Any, ...]:
    if old is None:
        pairs = sorted([*zip(names, key, strict=True), *extra])
        before = "".join(f'{n}="{escape(v)}",' for n, v in pairs if n < "le")
        after = "".join(f',{n}="{escape(v)}"' for n, v in pairs if n > "le")
        heads = (f'{name}_bucket{{{before}le="', f"{after}}}")
        totals = (
            _head(f"{name}_count", names, key, extra),
            _head(f"{name}_sum", names, key, extra),
        )
    else:
        heads, totals = old[:2], old[2:4]
    bucket_texts = None
    if slots is not None and label is not None:
        # The previous slots and their texts, where there are any: a bucket whose exemplar is
        # the same entry keeps its text.
        previous, done = (old[4], old[5]) if old is not None and old[5] is not None else ((), ())
        texts = []
        for i, kept in enumerate(slots):
            if kept is None:
                texts.append("")
            elif i < len(previous) and previous[i] is kept:
                texts.append(done[i])
            else:
                texts.append(exemplar_text(label, kept))
        bucket_texts = tuple(texts)
    return (*heads, *totals, slots, bucket_texts)
