"""CloudWatch's part of the spec: a metric's ``cloudwatch`` table (a CloudWatchSpec) and the
``Observation`` the spec's CloudWatch target gives per event.

The spec loader calls :func:`check_table` for that table and lends it its own error reporting
and label parsing (:class:`Checks`), so every message still names the file, the table and the
field. The dependency runs one way: the CloudWatch shipper (``log_exporter.cloudwatch``) imports
this module, which imports nothing of the exporter (and no boto3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

__all__ = [
    "CLOUDWATCH_UNITS",
    "MAX_DIMENSIONS",
    "Checks",
    "CloudWatchSpec",
    "Dimension",
    "Dimensions",
    "Kind",
    "LabelSource",
    "Observation",
    "check_table",
]

MAX_DIMENSIONS: Final = 30  # CloudWatch's limit per metric datum.
MAX_NAME_CHARS: Final = 255
CLOUDWATCH_UNITS: Final = frozenset(
    {
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
        "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
        "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
        "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
        "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    }
)  # fmt: skip


Kind = Literal["sum", "distribution"]
Dimensions = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Observation:
    """One value derived from one event for one CloudWatch metric."""

    metric: str
    dimensions: Dimensions
    value: float
    unit: str
    kind: Kind


class LabelSource(Protocol):
    """Where a dimension's value comes from: an event field, converted as a label (a LabelSpec)."""

    @property
    def field(self) -> str: ...

    # The field's segments (``log_exporter.spec.paths``).
    @property
    def path(self) -> tuple[str, ...]: ...

    # A closed value set: a present value outside it becomes "other". None: any value.
    @property
    def values(self) -> tuple[str, ...] | None: ...


@dataclass(frozen=True, slots=True)
class Dimension:
    """One CloudWatch dimension and where its value comes from."""

    name: str
    source: LabelSource


@dataclass(frozen=True, slots=True)
class CloudWatchSpec:
    """How the CloudWatch shipper publishes a metric."""

    name: str
    unit: str
    dimensions: tuple[Dimension, ...]


class Checks(Protocol):
    """What the spec loader lends :func:`check_table`: its error reporting and label parsing."""

    def err(self, table: str, fld: str, msg: str) -> None: ...

    def unknown_keys(self, table: str, doc: dict[str, Any], allowed: set[str]) -> None: ...

    def string(self, table: str, fld: str, v: Any) -> str | None: ...

    def source_of(
        self,
        table: str,
        fld: str,
        name: str,
        item: dict[str, Any],
        sets: dict[str, tuple[str, ...]],
    ) -> LabelSource | None: ...

    def show(self, v: Any) -> str: ...


def check_table(
    checks: Checks,
    table: str,
    doc: Any,
    labels: Mapping[str, LabelSource],
    sets: dict[str, tuple[str, ...]],
) -> CloudWatchSpec | None:
    """The ``cloudwatch`` table of the metric ``table`` (whose labels are ``labels``), or None.

    Each problem is reported through ``checks``; None when the table cannot be used.
    """
    if type(doc) is not dict:
        checks.err(table, "cloudwatch", f"must be a table, not {checks.show(doc)}")
        return None
    checks.unknown_keys(
        table,
        {f"cloudwatch.{k}": v for k, v in doc.items()},
        {"cloudwatch.name", "cloudwatch.unit", "cloudwatch.dimensions"},
    )
    name = checks.string(table, "cloudwatch.name", doc.get("name"))
    if name is not None and len(name) > MAX_NAME_CHARS:
        checks.err(
            table, "cloudwatch.name", f"CloudWatch allows at most {MAX_NAME_CHARS} characters"
        )
    unit = doc.get("unit")
    # Checked as a string first: any TOML value may be here, and a list cannot be hashed.
    if type(unit) is not str or unit not in CLOUDWATCH_UNITS:
        checks.err(table, "cloudwatch.unit", f"not a CloudWatch unit: {checks.show(unit)}")
        unit = None
    dims_doc = doc.get("dimensions", {})
    if type(dims_doc) is not dict:
        checks.err(table, "cloudwatch.dimensions", f"must be a table, not {checks.show(dims_doc)}")
        return None
    if len(dims_doc) > MAX_DIMENSIONS:
        checks.err(table, "cloudwatch.dimensions", f"CloudWatch allows {MAX_DIMENSIONS} at most")
    dims = _dimensions(checks, table, dims_doc, labels, sets)
    if name is None or unit is None:
        return None
    return CloudWatchSpec(name, unit, dims)


def _dimensions(
    checks: Checks,
    table: str,
    doc: dict[str, Any],
    labels: Mapping[str, LabelSource],
    sets: dict[str, tuple[str, ...]],
) -> tuple[Dimension, ...]:
    dims: list[Dimension] = []
    for dim_name, src in doc.items():
        fld = f"cloudwatch.dimensions.{dim_name}"
        if type(src) is str:
            if src not in labels:
                checks.err(
                    table,
                    fld,
                    f"{src!r} is not a label of this metric; to use an event field give "
                    "an inline table { field = ..., values = ... }",
                )
                continue
            dims.append(Dimension(dim_name, labels[src]))
        elif type(src) is dict:
            checks.unknown_keys(
                table,
                {f"{fld}.{k}": v for k, v in src.items()},
                {f"{fld}.field", f"{fld}.values"},
            )
            if "field" not in src:
                checks.err(table, f"{fld}.field", "missing: the event field to read")
                continue
            source = checks.source_of(table, fld, dim_name, src, sets)
            if source is not None:
                dims.append(Dimension(dim_name, source))
        else:
            checks.err(
                table, fld, f"must be a label name or an inline table, not {checks.show(src)}"
            )
    return tuple(dims)
