"""A validated spec as frozen dataclasses: its metrics, their labels and the rules changing them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from log_exporter.limits import DEFAULT_LABEL_VALUE_MAX_BYTES
from log_exporter.spec.cloudwatch import CloudWatchSpec
from log_exporter.spec.paths import Path, parse_path
from log_exporter.store import MetricDef, MetricKind

__all__ = [
    "ExemplarSpec",
    "InputSpec",
    "LabelSpec",
    "Match",
    "MetricSpec",
    "Op",
    "Rule",
    "Spec",
]

Op = Literal["inc", "dec", "set", "observe", "info", "reset", "reset_all"]
# A match's test of a field: "in" and "not" compare its label text with ``values``; "prefix"
# tests the text's start; "regex" searches the text (RE2, linear time); "ge", "gt", "le", "lt"
# compare a JSON number with ``number``.
MatchOp = Literal["in", "not", "prefix", "regex", "ge", "gt", "le", "lt"]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How the spec reads an event: the path ``events`` is compared with, and its time."""

    event_field: Path = ("event",)
    timestamp_field: Path = ("timestamp",)
    timestamp_format: str = "rfc3339"

    @property
    def is_default(self) -> bool:
        return self == _DEFAULT_INPUT


_DEFAULT_INPUT: Final = InputSpec()


@dataclass(frozen=True, slots=True)
class Match:
    """One test of a rule's ``match``: the field at ``path`` passes ``op``."""

    path: Path
    op: MatchOp
    values: tuple[str, ...] = ()
    number: float = 0.0


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One label (or CloudWatch dimension) value: an event field, converted per the contract."""

    name: str
    # The field's path as the spec writes it (``request.method``); ``path`` is its segments.
    field: str
    # A closed value set: a present value outside it becomes "other". None: any value.
    values: tuple[str, ...] | None = None

    @property
    def path(self) -> Path:
        return parse_path(self.field)


@dataclass(frozen=True, slots=True)
class ExemplarSpec:
    """Where a metric's exemplars come from: the event field, shown as the label ``name``."""

    name: str
    field: str

    @property
    def path(self) -> Path:
        return parse_path(self.field)


@dataclass(frozen=True, slots=True)
class Rule:
    """When a metric changes: on these event types (None: on every event), if the fields
    match, do ``op``."""

    events: tuple[str, ...] | None
    # Every test must pass; "in" and "not" compare after the label conversion.
    match: tuple[Match, ...]
    op: Op
    # The numeric field (a path) to add, set or observe; None means 1 (inc/dec).
    value: str | None
    # What the value is multiplied by (``value = { field = ..., scale = 0.001 }``).
    scale: float = 1.0

    @property
    def value_path(self) -> Path:
        assert self.value is not None
        return parse_path(self.value)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: what the store keeps, and the rules that change it."""

    definition: MetricDef
    labels: tuple[LabelSpec, ...]
    rules: tuple[Rule, ...]
    floor: float | None = None
    cloudwatch: CloudWatchSpec | None = None
    # An open label's (or dimension's) value longer than this in UTF-8 becomes ``__overflow__``.
    label_value_max_bytes: int = DEFAULT_LABEL_VALUE_MAX_BYTES
    # Counters and histograms only: the latest update's event field as an OpenMetrics exemplar.
    exemplar: ExemplarSpec | None = None
    # A gauge kept per value of this field (a process id, say), exposed as the sum of the shares;
    # its ``reset`` rules forget the event's partition. Converted and bounded as an open label.
    partition: LabelSpec | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def kind(self) -> MetricKind:
        return self.definition.kind


@dataclass(frozen=True, slots=True)
class Spec:
    """A validated spec, in the order its metrics were written."""

    source: str
    metrics: tuple[MetricSpec, ...]
    input: InputSpec = _DEFAULT_INPUT

    @property
    def definitions(self) -> tuple[MetricDef, ...]:
        return tuple(m.definition for m in self.metrics)
