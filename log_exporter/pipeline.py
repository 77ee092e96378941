"""Lines into the store for serve and replay: the one place that parses, counts and applies them.

Every self-counter of reading (lines by result, bytes, rotations, truncations, the last event's
time) is counted here and written into the sink as one ``ReadCounts``; what a blank or malformed
line is comes from ``parse.parse_line``: each line is decoded into the spec's typed event
(``spec.typed``: only the fields the spec reads), and a line that decoding refuses goes to
``parse_line``, which says what it is.
``Feed`` writes into any ``Sink`` (a store, or a replay worker's partial state) through a program
bound to it; ``Pipeline`` is the feed into a store, which a reloaded spec can switch.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from log_exporter.parse import MALFORMED, parse_line
from log_exporter.sources import cri
from log_exporter.sources.cri import PARTIAL, UNSTRUCTURED, cri_event, cri_time
from log_exporter.spec import Program
from log_exporter.spec.codegen import Apply
from log_exporter.spec.program import ANY_EVENT
from log_exporter.spec.reader import EventReader
from log_exporter.spec.typed import REFUSED, TypedEvents
from log_exporter.store import Store
from log_exporter.values import Batch, ReadCounts

__all__ = ["Feed", "Pipeline", "Sink", "Steps"]


class Sink(Protocol):
    """Where a feed writes: the counts of reading (``record``), under ``lock``. A ``Store`` is
    one; a replay worker's partial state (``log_exporter.replay.partial.Partial``) another."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    def record(self, counts: ReadCounts) -> None: ...


@dataclass(slots=True)
class Steps:
    """Where a feed in steps (``Pipeline.feed_steps``) stands in event time, across batches.

    ``now`` is the latest event time reached, never decreasing (None before the first timed
    event). An event stamped before ``now`` is ``late`` and counts at ``now``; an event without a
    usable timestamp is ``untimed`` and counts at ``now`` too. Before an event stamped after
    ``boundary`` is counted, ``cross(t)`` is called with its time while the store holds exactly
    the lines before it (and the store's lock is held: snapshot with ``snapshot_unlocked``);
    ``cross`` returns the next boundary, at or after ``t``. The first timed event always crosses.
    """

    cross: Callable[[float], float]
    boundary: float = -math.inf
    now: float | None = None
    untimed: int = 0
    late: int = 0
    # Bytes read from the current file that no counted line carried (oversized lines): the
    # file's end counts them (``Pipeline.end_file``).
    unclaimed_bytes: int = 0
    # When given, the time of every event counted at its own time (not late), in order: a
    # replay worker's merge needs them to tell which of them are late after earlier stretches.
    on_time: array[float] | None = None


def _decoded(
    lines: list[bytes], decode: Callable[[bytes], Any], again: Callable[[bytes], Any]
) -> tuple[list[Any], int]:
    """Each line as the typed event, None for a blank line, or MALFORMED (as ``parse_line``
    says), and how many lines ``decode`` refused (``again`` then decides).

    Once for a whole batch: almost every batch is ASCII lines that decode, by one list
    comprehension (a generator or a call per line cost replay about 5% of its time). A batch
    with a line that is not ASCII or that decoding refuses goes line by line.
    """
    try:
        if all(map(bytes.isascii, lines)):
            return [decode(raw) for raw in lines], 0
    except REFUSED:
        pass
    events = []
    refused = 0
    for raw in lines:
        try:
            if not raw.isascii():
                raw.decode()  # the UTF-8 check msgspec skips for keys it skips (spec.typed)
            events.append(decode(raw))
        except REFUSED:
            refused += 1
            events.append(again(raw))
    return events, refused


# A feed decoding a Struct per event type (``TypedEvents.union``) switches to the single Struct
# for good once more than 1 line in 8 of its first 4,096 needed a second decode: about where the
# union stops paying on SustainBot's log, through ``feed_steps`` (replay's path, where such a
# line also sends its batch line by line) as through ``feed`` (instructions per event, by
# cachegrind: docs/benchmarks.md, issue 27's fourth round).
_SWITCH_AFTER: Final = 4096
_SWITCH_SHARE: Final = 8
# A variant's function is found by its class (no call to read the type); any other event
# (the single Struct's) by its type, read: this marks that.
_BY_TYPE: Final[Any] = object()


class Feed:
    """Applies lines to a sink with a program bound to it (event type -> function): parses them,
    counts them and applies each event. Nothing in a line can raise out of it."""

    def __init__(
        self, sink: Sink, dispatch: Mapping[str, Apply], typed: TypedEvents, reader: EventReader
    ) -> None:
        """``dispatch`` applies ``typed``'s events (``bind(typed=True)``); ``reader``: where a
        dict event's type and time are (the spec's ``[input]``), for lines decoded again."""
        self._sink = sink
        self._dispatch = dispatch
        self._reader = reader
        self._use(typed)

    def _use(self, typed: TypedEvents) -> None:
        """Decode with ``typed``: its union first, if it has one (``_count``)."""
        self._typed = typed
        self._decode = typed.decode
        self._again = typed.again
        # Lines decoded, and refused by ``_decode``, while the feed may still switch.
        self._seen = 0 if typed.union else -1
        self._refused = 0

    def _count(self, lines: int, refused: int) -> None:
        """Count a batch's lines and those ``_decode`` refused; switch to the single Struct once
        too many of them needed a second decode (``TypedEvents``)."""
        if self._seen < 0:
            return
        self._seen += lines
        self._refused += refused
        if self._seen >= _SWITCH_AFTER:
            if self._refused * _SWITCH_SHARE > self._seen:
                self._decode = self._typed.decode_all
                self._again = self._typed.again_all
            self._seen = -1

    def feed(self, batch: Batch) -> None:
        """Apply a whole batch under one acquisition of the sink's lock.

        ``log_exporter_last_event_timestamp_seconds`` takes the timestamp of the batch's last
        event that has a valid one (the gauge shows the latest anyway), so where a batch splits
        never changes the value.

        Each line is decoded and applied in one loop, so only one event's objects are alive at a
        time (decoding a whole batch first kept all of them: more memory, and each event's
        objects cold again by the time it was applied). A line decoding refuses (blank, BOM,
        malformed, not ASCII and not UTF-8) goes to ``parse_line``. A batch of CRI lines goes
        through ``_feed_cri``.
        """
        if batch.cri:
            self._feed_cri(batch)
            return
        sink = self._sink
        dispatch_get = self._dispatch.get
        anything = dispatch_get(ANY_EVENT)
        typed = self._typed
        type_of, time_of = typed.reader.type_of, typed.reader.time_of
        decode, again = self._decode, self._again
        by_class_get, union = self._by_class(anything)
        by_type = _BY_TYPE
        parsed = 0
        malformed = 0
        refused = 0
        last: Any = None
        with sink.lock:
            try:
                for raw in batch.lines:
                    try:
                        if not raw.isascii():
                            raw.decode()  # the UTF-8 check msgspec skips (spec.typed)
                        event = decode(raw)
                    except REFUSED:
                        refused += 1
                        event = again(raw)
                        if event is None or event is MALFORMED:
                            malformed += event is MALFORMED
                            continue
                    parsed += 1
                    last = event
                    fn = by_class_get(type(event), by_type) if union else by_type
                    if fn is by_type:
                        et = type_of(event)
                        fn = dispatch_get(et, anything) if type(et) is str else anything
                    if fn is not None:
                        fn(event)
            finally:
                ts = None
                if last is not None:
                    ts = time_of(last)
                    if ts is None:
                        # Rare: parse again from the end only to find the latest timed event.
                        ts = _latest_event_time(batch.lines, self._reader.time_of)
                sink.record(_counts(batch, parsed, malformed, ts))
                self._count(len(batch.lines), refused)

    def _feed_cri(self, batch: Batch) -> None:
        """``feed`` for a batch of CRI lines (``log_exporter.sources.cri``): content that is no
        JSON object counts as ``unstructured``, a partial given up as ``partial``, and the
        runtime's time stands in for an event's missing one."""
        sink = self._sink
        apply = self._apply
        from_dict = self._typed.from_dict
        time_of = self._typed.reader.time_of
        parsed = malformed = unstructured = partial = 0
        last: Any = None
        last_raw = b""
        with sink.lock:
            try:
                for raw, event in zip(batch.lines, cri.decode(batch.lines), strict=True):
                    if type(event) is dict:
                        parsed += 1
                        last, last_raw = from_dict(event), raw
                        apply(last)
                    elif event is MALFORMED:
                        malformed += 1
                    elif event is UNSTRUCTURED:
                        unstructured += 1
                    elif event is PARTIAL:
                        partial += 1
            finally:
                ts = None
                if last is not None:
                    # The batch's last event, or the runtime's time of its line: no line is
                    # decoded again unless neither reads.
                    ts = time_of(last)
                    if ts is None:
                        ts = cri_time(last_raw)
                    if ts is None:
                        ts = _latest_event_time(batch.lines, self._reader.time_of, cri=True)
                sink.record(_counts(batch, parsed, malformed, ts, unstructured, partial))

    def _apply(self, event: Any) -> None:
        """Apply one typed event with the function its type is bound to (``feed``'s loop inlines
        it)."""
        et = self._typed.reader.type_of(event)
        anything = self._dispatch.get(ANY_EVENT)
        fn = self._dispatch.get(et, anything) if type(et) is str else anything
        if fn is not None:
            fn(event)

    def feed_steps(self, batch: Batch, steps: Steps) -> None:
        """Apply a batch line by line in event time, calling ``steps.cross`` at its boundaries.

        The lines of every file of one replay go through here in order, then ``end_file``. Each
        line counts with its own bytes (its length plus the newline, which the final line of a
        file may lack), so a snapshot taken in ``cross`` holds exactly the lines before the
        crossing event; only oversized lines count at the batch's start, and their bytes at the
        file's end. The last-event time is already the crossing event's when ``cross`` is called.
        """
        sink = self._sink
        dispatch_get = self._dispatch.get
        anything = dispatch_get(ANY_EVENT)
        typed = self._typed
        type_of, time_of = typed.reader.type_of, typed.reader.time_of
        by_class_get, union = self._by_class(anything)
        by_type = _BY_TYPE
        classes = typed.classes
        cross = steps.cross
        on_time = steps.on_time
        boundary = steps.boundary
        now = steps.now
        untimed = 0
        late = 0
        # Counted since the last write into the sink.
        parsed = 0
        # Lines that are no event, by what they are (MALFORMED, UNSTRUCTURED, PARTIAL, None).
        odd: dict[Any, int] = {}
        oversized = batch.oversized
        nbytes = 0
        last_ts: float | None = None
        # The final line of a file without its newline: its bytes are all that is left.
        newline = 1 if batch.bytes_read else 0
        claimed = 0
        lines = batch.lines
        is_cri = batch.cri
        with sink.lock:
            try:
                events = self._events(lines, is_cri)
                for raw, event in zip(lines, events, strict=True):
                    size = len(raw) + newline
                    claimed += size
                    if type(event) not in classes:
                        odd[event] = odd.get(event, 0) + 1
                        nbytes += size
                        continue
                    t = time_of(event)
                    if t is None and is_cri:
                        # The runtime's time stands in for the event's own (docs/node.md).
                        t = cri_time(raw)
                    if t is None:
                        untimed += 1
                    else:
                        last_ts = t
                        if now is not None and t < now:
                            late += 1
                        else:
                            if t > boundary:
                                sink.record(_step_counts(parsed, odd, oversized, nbytes, last_ts))
                                parsed = oversized = nbytes = 0
                                odd = {}
                                last_ts = None
                                boundary = cross(t)
                            now = t
                            if on_time is not None:
                                on_time.append(t)
                    parsed += 1
                    nbytes += size
                    fn = by_class_get(type(event), by_type) if union else by_type
                    if fn is by_type:
                        et = type_of(event)
                        fn = dispatch_get(et, anything) if type(et) is str else anything
                    if fn is not None:
                        fn(event)
            finally:
                sink.record(_step_counts(parsed, odd, oversized, nbytes, last_ts))
                steps.boundary = boundary
                steps.now = now
                steps.untimed += untimed
                steps.late += late
                steps.unclaimed_bytes += batch.bytes_read - claimed

    def _by_class(self, anything: Apply | None) -> tuple[Callable[[Any, Any], Any], bool]:
        """For ``feed`` and ``feed_steps``: the function of each variant class (the union's), and
        whether the union decodes now (otherwise no event is a variant, and none is looked up)."""
        dispatch_get = self._dispatch.get
        by_class = {c: dispatch_get(et, anything) for et, c in self._typed.variants.items()}
        return by_class.get, self._decode is not self._typed.decode_all

    def _events(self, lines: list[bytes], is_cri: bool) -> list[Any]:
        """``feed_steps``'s lines decoded, as ``_decoded`` gives them."""
        if is_cri:
            return _cri_typed(lines, self._typed)
        events, refused = _decoded(lines, self._decode, self._again)
        self._count(len(lines), refused)
        return events

    def end_file(self, steps: Steps) -> None:
        """Count the bytes of the file just fed in steps that no line carried (oversized lines).

        At the file's end, so ``log_exporter_bytes_read_total`` never goes down and ends at the
        bytes read, as with ``feed``.
        """
        with self._sink.lock:
            self._sink.record(ReadCounts(bytes_read=steps.unclaimed_bytes))
        steps.unclaimed_bytes = 0


class Pipeline(Feed):
    """A ``Feed`` into a ``Store`` with a compiled program: serve's, and a replay's in one
    process; ``reload`` switches it to a reloaded spec."""

    def __init__(self, program: Program, store: Store, *, exemplars: bool = True) -> None:
        """``exemplars=False``: keep no exemplars (replay writes none)."""
        super().__init__(
            store,
            program.bind(store, exemplars=exemplars, typed=True),
            program.typed,
            program.reader,
        )
        self.program = program
        self.store = store
        self._exemplars = exemplars

    def reload(self, program: Program) -> None:
        """Switch to a reloaded spec, keeping the values of unchanged metrics (see Store)."""
        with self.store.lock:
            self.store.reconfigure(program.spec.definitions)
            self._dispatch = program.bind(self.store, exemplars=self._exemplars, typed=True)
            self._use(program.typed)
            self._reader = program.reader
            self.program = program


def _counts(
    batch: Batch,
    parsed: int,
    malformed: int,
    ts: float | None,
    unstructured: int = 0,
    partial: int = 0,
) -> ReadCounts:
    """What ``feed`` counted of ``batch``, with the counts of reading the batch carries."""
    return ReadCounts(
        parsed,
        malformed,
        batch.oversized,
        batch.bytes_read,
        batch.rotations,
        batch.truncations,
        ts,
        unstructured,
        partial,
    )


def _step_counts(
    parsed: int, odd: dict[Any, int], oversized: int, nbytes: int, last_ts: float | None
) -> ReadCounts:
    """What ``feed_steps`` counted since its last write into the sink."""
    return ReadCounts(
        parsed,
        odd.get(MALFORMED, 0),
        oversized,
        nbytes,
        0,
        0,
        last_ts,
        odd.get(UNSTRUCTURED, 0),
        odd.get(PARTIAL, 0),
    )


def _cri_typed(lines: list[bytes], typed: TypedEvents) -> list[Any]:
    """``cri.decode`` with each event typed."""
    from_dict = typed.from_dict
    return [from_dict(e) if type(e) is dict else e for e in cri.decode(lines)]


def _latest_event_time(
    lines: list[bytes], time_of: Callable[[dict[str, Any]], float | None], *, cri: bool = False
) -> float | None:
    for raw in reversed(lines):
        event = cri_event(raw) if cri else parse_line(raw)
        if type(event) is dict:
            ts = time_of(event)
            if ts is None and cri:
                ts = cri_time(raw)
            if ts is not None:
                return ts
    return None
