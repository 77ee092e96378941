"""Typed events: each line decoded by msgspec into a type holding only the fields a spec reads.

Decoding every key of a line into a dict (orjson) was about a third of the hot path's work; a
``msgspec.Struct`` made from the spec builds objects only for the top-level keys some metric, its
labels, matches, values or exemplar, or the ``[input]`` event and timestamp fields read, and
skips the rest. A key is any JSON key (``@timestamp``, ``http.status``): the attributes are named
``f0``, ``f1``... and each maps to its key. A missing key reads as None, as a missing field reads
in a dict; a nested path's top-level key decodes as anything (objects stay dicts) and the rest
of the path is read as in a dict. JSON ``null`` is None too: no reader tells null from missing.

What msgspec accepts must be exactly what the dict path (``log_exporter.parse.parse_line``)
accepts, with the same values: so a line msgspec refuses (blank, BOM, malformed, no object,
nested deeper than Python's recursion limit lets it go, which by default is short of orjson's
1,024 levels, a number beyond a double in a field read) goes to ``parse_line``;
a line with non-ASCII bytes has its UTF-8 checked first (msgspec does not check the text of the
keys it skips, which orjson refuses); and an integer beyond 64 bits, which orjson reads as a
double, is no valid label value either way (``log_exporter.spec.labels.convert_label``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Union

import msgspec
import orjson

from log_exporter.parse import parse_line
from log_exporter.spec.model import InputSpec, MetricSpec, Rule, Spec
from log_exporter.spec.paths import Path
from log_exporter.spec.reader import EventReader

__all__ = ["REFUSED", "TypedEvents", "read_paths", "rule_paths"]

# What decoding a line can raise where ``parse_line`` must decide: msgspec's errors (its
# ValidationError is a DecodeError), its depth limit, the UTF-8 check, and orjson's error where
# a key is no name msgspec takes.
REFUSED: Final = (msgspec.DecodeError, RecursionError, UnicodeDecodeError, orjson.JSONDecodeError)


def read_paths(spec: Spec) -> list[Path]:
    """Every path the spec's store and replay targets and its ``[input]`` readers read (not
    CloudWatch's dimensions: observations are made from dicts), the timestamp's and the event
    type's first, then in spec order.

    The order is the Struct's: msgspec looks a key up from the field after the last one found,
    so fields in the order a line holds its keys are found at once, and logs most often begin
    with the time (2% fewer instructions per event on SustainBot's log than event type first).
    """
    paths = [spec.input.timestamp_field, spec.input.event_field]
    for m in spec.metrics:
        paths.extend(lb.path for lb in m.labels)
        if m.partition is not None:
            paths.append(m.partition.path)
        if m.exemplar is not None:
            paths.append(m.exemplar.path)
        for r in m.rules:
            paths.extend(t.path for t in r.match)
            if r.value is not None:
                paths.append(r.value_path)
    return paths


def rule_paths(pairs: Iterable[tuple[MetricSpec, Rule]]) -> list[Path]:
    """The paths the functions of these (metric, rule) pairs read: labels, partition, exemplar,
    matches and value, in order."""
    paths: list[Path] = []
    for m, r in pairs:
        paths.extend(lb.path for lb in m.labels)
        if m.partition is not None:
            paths.append(m.partition.path)
        if m.exemplar is not None:
            paths.append(m.exemplar.path)
        paths.extend(t.path for t in r.match)
        if r.value is not None:
            paths.append(r.value_path)
    return paths


_NO_NAME: Final = frozenset('\\"' + "".join(map(chr, range(0x20))))


class TypedEvents:
    """A spec's event types: the decoder of a line, the conversion of a dict, and the readers
    of the type and time of such an event.

    With ``by_type`` (event type -> the paths its functions read), each named type decodes into
    a Struct of its own, one variant of a union tagged by the top-level event field, holding
    only that type's fields: a key a type does not read is skipped after a scan of its few
    fields rather than all of the spec's, and fewer absent fields are filled with None. The
    variants share ``fields`` (every key is the same attribute everywhere), and the event
    field is a class attribute holding the tag, so one reader and one set of functions serve
    every variant and the single Struct. A line whose type no rule names (or whose tag is
    missing, not a string, or given twice differently) is refused by the union and decoded again
    into the single Struct (``again``): a second decode, so a feed where such lines are common
    switches to ``decode_all`` and ``again_all`` (the single Struct's, which ``decode`` and
    ``again`` are without the union).
    """

    __slots__ = (
        "again",
        "again_all",
        "classes",
        "decode",
        "decode_all",
        "fields",
        "from_dict",
        "reader",
        "struct",
        "union",
        "variants",
    )

    def __init__(
        self,
        paths: Iterable[Path],
        spec_input: InputSpec,
        by_type: Mapping[str, Iterable[Path]] | None = None,
    ) -> None:
        """``by_type``: decode a tagged union of a Struct per event type; the caller gives it
        only where every event type's functions are known (no rule without ``events``)."""
        keys = list(dict.fromkeys(p[0] for p in paths))
        # Top-level key -> attribute: generated names, since a key need not be an identifier.
        self.fields: dict[str, str] = {k: f"f{i}" for i, k in enumerate(keys)}
        # msgspec refuses a key holding a quote, a backslash or a control character as a
        # field's name: a spec reading one has its lines decoded into dicts, then typed.
        renamed = not any(set(k) & _NO_NAME for k in keys)
        # No cycle can go through a decoded event, so the garbage collector need not track it.
        self.struct: type[msgspec.Struct] = msgspec.defstruct(
            "Event",
            [
                (a, Any, msgspec.field(name=k if renamed else None, default=None))
                for k, a in self.fields.items()
            ],
            gc=False,
        )
        struct = self.struct

        def from_dict(event: dict[str, Any]) -> Any:
            """The typed event of a dict (a line ``parse_line`` decoded, a CRI line's content)."""
            return struct(*map(event.get, keys))

        def loads(raw: bytes) -> Any:
            event = orjson.loads(raw)
            if type(event) is not dict:
                raise orjson.JSONDecodeError("no object", "", 0)
            return from_dict(event)

        self.from_dict: Callable[[dict[str, Any]], Any] = from_dict
        self.decode_all: Callable[[bytes], Any] = (
            msgspec.json.Decoder(self.struct).decode if renamed else loads
        )
        # Event type -> its Struct, where there is a union.
        self.variants: dict[str, type[msgspec.Struct]] = (
            self._variants(by_type, spec_input.event_field)
            if by_type is not None and renamed and len(spec_input.event_field) == 1
            else {}
        )
        variants = list(self.variants.values())
        self.union: bool = bool(variants)
        self.decode: Callable[[bytes], Any] = (
            # A union of types known only at run time: no ``X | Y`` spells it.
            msgspec.json.Decoder(Union[tuple(variants)]).decode  # noqa: UP007
            if variants
            else self.decode_all
        )
        self.classes: frozenset[type] = frozenset([struct, *variants])
        self.again: Callable[[bytes], Any] = self._again(self.union)
        self.again_all: Callable[[bytes], Any] = self._again(False) if self.union else self.again
        self.reader = EventReader(spec_input, self.fields)

    def _variants(
        self, by_type: Mapping[str, Iterable[Path]], event_field: Path
    ) -> dict[str, type[msgspec.Struct]]:
        """A Struct per event type, tagged by the event field."""
        tag_key = event_field[0]
        tag_attr = self.fields[tag_key]
        variants = {}
        for et, paths in by_type.items():
            keys = [k for k in dict.fromkeys(p[0] for p in paths) if k != tag_key]
            variants[et] = msgspec.defstruct(
                "Event",
                [
                    (self.fields[k], Any, msgspec.field(name=k, default=None))
                    for k in sorted(keys, key=list(self.fields).index)
                ],
                tag_field=tag_key,
                tag=et,
                gc=False,
                # The event field is no field of the variant (msgspec holds the tag) but
                # reads as one: what ``type_of`` and any label reading it find.
                namespace={tag_attr: et},
            )
        return variants

    def _again(self, union: bool) -> Callable[[bytes], Any]:
        """A line ``decode`` (``union``) or ``decode_all`` refused, as the pipeline counts it:
        the typed event, None for a blank line, or MALFORMED (as ``parse_line`` says)."""
        decode_all = self.decode_all if union else None
        from_dict = self.from_dict

        def again(raw: bytes) -> Any:
            if decode_all is not None:
                try:
                    if not raw.isascii():
                        raw.decode()  # the UTF-8 check msgspec skips for keys it skips
                    return decode_all(raw)
                except REFUSED:
                    pass
            event = parse_line(raw)
            return from_dict(event) if type(event) is dict else event

        return again
