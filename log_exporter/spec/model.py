"""A validated spec as frozen dataclasses: its metrics, their labels and the rules changing them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from log_exporter.limits import DEFAULT_LABEL_VALUE_MAX_BYTES
from log_exporter.spec.cloudwatch import CloudWatchSpec
from log_exporter.store import MetricDef, MetricKind

__all__ = ["ExemplarSpec", "LabelSpec", "MetricSpec", "Op", "Rule", "Spec"]

Op = Literal["inc", "dec", "set", "observe", "info", "reset", "reset_all"]


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One label (or CloudWatch dimension) value: an event field, converted per the contract."""

    name: str
    field: str
    # A closed value set: a present value outside it becomes "other". None: any value.
    values: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ExemplarSpec:
    """Where a metric's exemplars come from: the event field, shown as the label ``name``."""

    name: str
    field: str


@dataclass(frozen=True, slots=True)
class Rule:
    """When a metric changes: on these event types, if the fields match, do ``op``."""

    events: tuple[str, ...]
    # (field, accepted values) pairs; a field's value is compared after the label conversion.
    match: tuple[tuple[str, tuple[str, ...]], ...]
    op: Op
    # The numeric field to add, set or observe; None means 1 (inc/dec).
    value: str | None


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

    @property
    def definitions(self) -> tuple[MetricDef, ...]:
        return tuple(m.definition for m in self.metrics)
