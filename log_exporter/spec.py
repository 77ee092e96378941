"""The declarative mapping from events to metrics: TOML text -> ``Spec`` -> compiled ``Program``.

No I/O here except reading the built-in spec shipped inside the package. The schema is described
in ``docs/spec.md``. ``load_spec`` validates a whole spec and reports every error with the file,
the table and the field; ``compile`` turns a ``Spec`` into a ``Program`` whose hot path is a dict
from event type to one generated function that updates a ``Store`` directly.
"""

from __future__ import annotations

import builtins
import math
import re
import tomllib
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from typing import Any, Final, Literal

from log_exporter.store import (
    DEFAULT_SERIES_CAP,
    CounterState,
    GaugeState,
    HistogramState,
    InfoState,
    MetricDef,
    MetricKind,
    Store,
)

__all__ = [
    "CLOUDWATCH_UNITS",
    "CloudWatchSpec",
    "Derived",
    "Dimension",
    "LabelSpec",
    "MetricSpec",
    "Op",
    "Program",
    "Rule",
    "Spec",
    "SpecError",
    "compile",
    "convert_label",
    "default_spec_text",
    "load_default_spec",
    "load_spec",
]

Op = Literal["inc", "dec", "set", "observe", "info"]
Event = dict[str, Any]
Apply = Callable[[Event], None]

SPEC_VERSION: Final = 1
MAX_DIMENSIONS: Final = 30  # CloudWatch's limit per metric datum.
CLOUDWATCH_UNITS: Final = frozenset(
    {
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
        "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
        "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
        "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
        "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    }
)  # fmt: skip

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels that the exposition formats give a meaning of their own.
_RESERVED_LABELS: Final = frozenset({"le", "quantile"})
_RESERVED_PREFIX: Final = "log_exporter_"
_FMAX: Final = 1.7976931348623157e308  # sys.float_info.max: beyond it an int is not a double.
_INF: Final = math.inf


# ---------------------------------------------------------------------------------------------
# The parsed spec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One label (or CloudWatch dimension) value: an event field, converted per the contract."""

    name: str
    field: str
    # A closed value set: a present value outside it becomes "other". None: any value.
    values: tuple[str, ...] | None = None


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
class Dimension:
    """One CloudWatch dimension and where its value comes from."""

    name: str
    source: LabelSpec


@dataclass(frozen=True, slots=True)
class CloudWatchSpec:
    """How the CloudWatch shipper publishes a metric."""

    name: str
    unit: str
    dimensions: tuple[Dimension, ...]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: what the store keeps, and the rules that change it."""

    definition: MetricDef
    labels: tuple[LabelSpec, ...]
    rules: tuple[Rule, ...]
    floor: float | None = None
    cloudwatch: CloudWatchSpec | None = None

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


class SpecError(ValueError):
    """A spec that cannot be used; ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------


def default_spec_text() -> str:
    """The built-in SustainBot spec shipped inside the package."""
    return (resources.files("log_exporter") / "specs" / "sustainbot.toml").read_text("utf-8")


def load_default_spec() -> Spec:
    """The built-in SustainBot spec, loaded."""
    return load_spec(default_spec_text(), "sustainbot.toml (built in)")


def load_spec(text: str, source: str) -> Spec:
    """Parse and validate spec TOML; ``source`` (a file name) prefixes every error message."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"{source}: {_toml_message(exc)}"]) from None
    checker = _Checker(source)
    spec = checker.spec(doc)
    if checker.errors or spec is None:
        raise SpecError(checker.errors)
    return spec


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    msg = str(exc)
    m = re.fullmatch(r"(?s)(.*) \(at line (\d+), column (\d+)\)", msg)
    if m:
        return f"line {m[2]}, column {m[3]}: TOML syntax error: {m[1]}"
    m = re.fullmatch(r"(?s)(.*) \(at end of document\)", msg)
    if m:
        return f"end of document: TOML syntax error: {m[1]}"
    return f"TOML syntax error: {msg}"


class _Checker:
    """Walks the TOML document, collecting every error instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def err(self, table: str, fld: str, msg: str) -> None:
        where = f"[{table}]" if table else "(top level)"
        self.errors.append(f"{self.source}: {where} field '{fld}': {msg}")

    def unknown_keys(self, table: str, doc: dict[str, Any], allowed: set[str]) -> None:
        for key in doc:
            if key not in allowed:
                self.err(table, key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    # -- scalar helpers ---------------------------------------------------------------------

    def string(self, table: str, fld: str, v: Any) -> str | None:
        if type(v) is not str or not v:
            self.err(table, fld, f"must be a non-empty string, not {_show(v)}")
            return None
        return v

    def strings(self, table: str, fld: str, v: Any) -> tuple[str, ...] | None:
        if type(v) is not list or not v or not all(type(x) is str and x for x in v):
            self.err(table, fld, f"must be a non-empty array of non-empty strings, not {_show(v)}")
            return None
        if len(set(v)) != len(v):
            self.err(table, fld, "has duplicate values")
            return None
        return tuple(v)

    def positive_int(self, table: str, fld: str, v: Any) -> int | None:
        if type(v) is not int or v < 1:
            self.err(table, fld, f"must be a positive integer, not {_show(v)}")
            return None
        return v

    def number(self, table: str, fld: str, v: Any) -> float | None:
        if type(v) not in (int, float) or not math.isfinite(v):
            self.err(table, fld, f"must be a finite number, not {_show(v)}")
            return None
        return float(v)

    # -- the document -------------------------------------------------------------------------

    def spec(self, doc: dict[str, Any]) -> Spec | None:
        self.unknown_keys("", doc, {"version", "series_cap", "sets", "metrics"})
        if "version" in doc and doc["version"] != SPEC_VERSION:
            self.err("", "version", f"must be {SPEC_VERSION}, not {_show(doc['version'])}")
        cap = DEFAULT_SERIES_CAP
        if "series_cap" in doc:
            cap = self.positive_int("", "series_cap", doc["series_cap"]) or cap
        sets = self.sets(doc.get("sets", {}))
        raw_metrics = doc.get("metrics")
        if type(raw_metrics) is not dict or not raw_metrics:
            self.err("", "metrics", "must be a table with at least one [metrics.NAME] table")
            return None
        metrics: list[MetricSpec] = []
        for name, body in raw_metrics.items():
            m = self.metric(name, body, sets, cap)
            if m is not None:
                metrics.append(m)
        self.collisions(metrics)
        return Spec(self.source, tuple(metrics))

    def sets(self, doc: Any) -> dict[str, tuple[str, ...]]:
        if type(doc) is not dict:
            self.err("", "sets", f"must be a table of named value sets, not {_show(doc)}")
            return {}
        out: dict[str, tuple[str, ...]] = {}
        for name, values in doc.items():
            vs = self.strings("sets", name, values)
            if vs is not None:
                out[name] = vs
        return out

    def metric(
        self, name: str, body: Any, sets: dict[str, tuple[str, ...]], default_cap: int
    ) -> MetricSpec | None:
        table = f"metrics.{name}"
        before = len(self.errors)
        if type(body) is not dict:
            self.err("metrics", name, f"must be a table, not {_show(body)}")
            return None
        self.unknown_keys(
            table,
            body,
            {
                "type", "help", "labels", "events", "match", "value", "op", "floor", "buckets",
                "series_cap", "rules", "cloudwatch",
            },
        )  # fmt: skip
        self.metric_name(table, name)
        kind = body.get("type")
        if kind not in ("counter", "gauge", "histogram", "info"):
            self.err(table, "type", f"must be counter, gauge, histogram or info, not {_show(kind)}")
            return None
        help_text = self.string(table, "help", body.get("help"))
        if kind == "counter" and not name.endswith("_total"):
            self.err(table, "type", "a counter's name must end in _total")
        if kind == "info" and not name.endswith("_info"):
            self.err(table, "type", "an info metric's name must end in _info")
        labels = self.labels(table, body.get("labels", []), sets)
        cap = default_cap
        if "series_cap" in body:
            cap = self.positive_int(table, "series_cap", body["series_cap"]) or cap
        buckets: tuple[float, ...] = ()
        if kind == "histogram":
            buckets = self.buckets(table, body.get("buckets"))
        elif "buckets" in body:
            self.err(table, "buckets", "only a histogram has buckets")
        floor = None
        if "floor" in body:
            if kind == "gauge":
                floor = self.number(table, "floor", body["floor"])
            else:
                self.err(table, "floor", "only a gauge has a floor")
        rules = self.rules(table, kind, body)
        cloudwatch = None
        if "cloudwatch" in body:
            if kind == "info":
                self.err(table, "cloudwatch", "an info metric has no value to publish")
            else:
                cloudwatch = self.cloudwatch(table, body["cloudwatch"], labels, sets)
        if len(self.errors) != before or help_text is None:
            return None
        definition = MetricDef(name, kind, help_text, tuple(lb.name for lb in labels), buckets, cap)
        return MetricSpec(definition, labels, rules, floor, cloudwatch)

    def metric_name(self, table: str, name: str) -> None:
        if not _METRIC_NAME.fullmatch(name):
            self.err(table, "name", f"{name!r} is not a valid Prometheus metric name")
        elif name.startswith(_RESERVED_PREFIX) or name.startswith("__"):
            self.err(
                table, "name", f"names starting with {_RESERVED_PREFIX!r} or '__' are reserved"
            )

    def labels(
        self, table: str, doc: Any, sets: dict[str, tuple[str, ...]]
    ) -> tuple[LabelSpec, ...]:
        if type(doc) is not list:
            self.err(table, "labels", f"must be an array, not {_show(doc)}")
            return ()
        out: list[LabelSpec] = []
        for i, item in enumerate(doc):
            fld = f"labels[{i}]"
            if type(item) is str:
                item = {"name": item}
            elif type(item) is not dict:
                self.err(table, fld, f"must be a label name or an inline table, not {_show(item)}")
                continue
            self.unknown_keys(table, {f"{fld}.{k}": v for k, v in item.items()}, {
                f"{fld}.name", f"{fld}.field", f"{fld}.values",
            })  # fmt: skip
            name = self.string(table, f"{fld}.name", item.get("name"))
            if name is None:
                continue
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                self.err(table, f"{fld}.name", f"{name!r} is not a valid label name")
                continue
            if name in _RESERVED_LABELS:
                self.err(table, f"{fld}.name", f"{name!r} is reserved by the exposition format")
                continue
            if any(lb.name == name for lb in out):
                self.err(table, f"{fld}.name", f"duplicate label {name!r}")
                continue
            source = self.source_of(table, fld, name, item, sets)
            if source is not None:
                out.append(source)
        return tuple(out)

    def source_of(
        self, table: str, fld: str, name: str, item: dict[str, Any], sets: dict[str, Any]
    ) -> LabelSpec | None:
        field_name = name
        if "field" in item:
            field_name = self.string(table, f"{fld}.field", item["field"]) or ""
            if not field_name:
                return None
        values: tuple[str, ...] | None = None
        if "values" in item:
            v = item["values"]
            if type(v) is str:
                if v not in sets:
                    known = ", ".join(sorted(sets)) or "none defined"
                    self.err(table, f"{fld}.values", f"unknown set {v!r} (in [sets]: {known})")
                    return None
                values = sets[v]
            else:
                values = self.strings(table, f"{fld}.values", v)
                if values is None:
                    return None
        return LabelSpec(name, field_name, values)

    def buckets(self, table: str, v: Any) -> tuple[float, ...]:
        if type(v) is not list or not v:
            self.err(table, "buckets", f"must be a non-empty array of numbers, not {_show(v)}")
            return ()
        out: list[float] = []
        for b in v:
            if type(b) not in (int, float) or not math.isfinite(b):
                self.err(table, "buckets", f"must hold finite numbers only, not {_show(b)}")
                return ()
            out.append(float(b))
        if any(a >= b for a, b in pairwise(out)):
            self.err(table, "buckets", "must be strictly increasing")
            return ()
        return tuple(out)

    def rules(self, table: str, kind: str, body: dict[str, Any]) -> tuple[Rule, ...]:
        if "rules" in body:
            for key in ("events", "match", "value", "op"):
                if key in body:
                    self.err(table, key, "give it inside each of 'rules', not beside them")
            raw = body["rules"]
            if type(raw) is not list or not raw or not all(type(r) is dict for r in raw):
                self.err(table, "rules", f"must be a non-empty array of tables, not {_show(raw)}")
                return ()
            rules = [self.rule(table, f"rules[{i}].", kind, r) for i, r in enumerate(raw)]
        else:
            rules = [self.rule(table, "", kind, body)]
        return tuple(r for r in rules if r is not None)

    def rule(self, table: str, prefix: str, kind: str, doc: dict[str, Any]) -> Rule | None:
        if prefix:
            allowed = {f"{prefix}{k}" for k in ("events", "match", "value", "op")}
            self.unknown_keys(table, {f"{prefix}{k}": v for k, v in doc.items()}, allowed)
        before = len(self.errors)
        events = self.strings(table, f"{prefix}events", doc.get("events"))
        match = self.match(table, f"{prefix}match", doc.get("match", {}))
        value = None
        if "value" in doc:
            value = self.string(table, f"{prefix}value", doc["value"])
        op: Op
        if kind == "gauge":
            raw_op = doc.get("op")
            if raw_op not in ("inc", "dec", "set"):
                self.err(table, f"{prefix}op", f"must be inc, dec or set, not {_show(raw_op)}")
                return None
            op = raw_op
            if op == "set" and value is None:
                self.err(table, f"{prefix}value", "op 'set' needs the field holding the value")
        else:
            if "op" in doc:
                self.err(table, f"{prefix}op", f"only a gauge has an op (this is a {kind})")
            op = {"counter": "inc", "histogram": "observe", "info": "info"}[kind]  # type: ignore[assignment]
            if kind == "histogram" and value is None:
                self.err(table, f"{prefix}value", "a histogram needs the field it observes")
            if kind == "info" and "value" in doc:
                self.err(table, f"{prefix}value", "an info metric has no value (it is always 1)")
        if len(self.errors) != before or events is None:
            return None
        return Rule(events, match, op, value)

    def match(self, table: str, fld: str, doc: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if type(doc) is not dict:
            self.err(table, fld, f"must be a table of field = value(s), not {_show(doc)}")
            return ()
        out: list[tuple[str, tuple[str, ...]]] = []
        for key, v in doc.items():
            if type(v) is str:
                out.append((key, (v,)))
            else:
                vs = self.strings(table, f"{fld}.{key}", v)
                if vs is not None:
                    out.append((key, vs))
        return tuple(out)

    def cloudwatch(
        self,
        table: str,
        doc: Any,
        labels: tuple[LabelSpec, ...],
        sets: dict[str, tuple[str, ...]],
    ) -> CloudWatchSpec | None:
        if type(doc) is not dict:
            self.err(table, "cloudwatch", f"must be a table, not {_show(doc)}")
            return None
        self.unknown_keys(
            table,
            {f"cloudwatch.{k}": v for k, v in doc.items()},
            {"cloudwatch.name", "cloudwatch.unit", "cloudwatch.dimensions"},
        )
        name = self.string(table, "cloudwatch.name", doc.get("name"))
        if name is not None and len(name) > 255:
            self.err(table, "cloudwatch.name", "CloudWatch allows at most 255 characters")
        unit = doc.get("unit")
        # Checked as a string first: any TOML value may be here, and a list cannot be hashed.
        if type(unit) is not str or unit not in CLOUDWATCH_UNITS:
            self.err(table, "cloudwatch.unit", f"not a CloudWatch unit: {_show(unit)}")
            unit = None
        dims_doc = doc.get("dimensions", {})
        if type(dims_doc) is not dict:
            self.err(table, "cloudwatch.dimensions", f"must be a table, not {_show(dims_doc)}")
            return None
        if len(dims_doc) > MAX_DIMENSIONS:
            self.err(table, "cloudwatch.dimensions", f"CloudWatch allows {MAX_DIMENSIONS} at most")
        by_label = {lb.name: lb for lb in labels}
        dims: list[Dimension] = []
        for dim_name, src in dims_doc.items():
            fld = f"cloudwatch.dimensions.{dim_name}"
            if type(src) is str:
                if src not in by_label:
                    self.err(
                        table,
                        fld,
                        f"{src!r} is not a label of this metric; to use an event field give "
                        "an inline table { field = ..., values = ... }",
                    )
                    continue
                dims.append(Dimension(dim_name, by_label[src]))
            elif type(src) is dict:
                self.unknown_keys(
                    table,
                    {f"{fld}.{k}": v for k, v in src.items()},
                    {f"{fld}.field", f"{fld}.values"},
                )
                if "field" not in src:
                    self.err(table, f"{fld}.field", "missing: the event field to read")
                    continue
                source = self.source_of(table, fld, dim_name, src, sets)
                if source is not None:
                    dims.append(Dimension(dim_name, source))
            else:
                self.err(table, fld, f"must be a label name or an inline table, not {_show(src)}")
        if name is None or unit is None:
            return None
        return CloudWatchSpec(name, unit, tuple(dims))

    def collisions(self, metrics: list[MetricSpec]) -> None:
        """Reject two metrics whose exposed names would clash on one /metrics page."""
        owner: dict[str, str] = {}
        for m in metrics:
            for exposed in _exposed_names(m.definition):
                other = owner.setdefault(exposed, m.name)
                if other != m.name:
                    self.err(
                        f"metrics.{m.name}",
                        "name",
                        f"its series {exposed!r} clash with those of [metrics.{other}]",
                    )
                    break


def _exposed_names(d: MetricDef) -> set[str]:
    if d.kind == "histogram":
        return {d.name, f"{d.name}_bucket", f"{d.name}_sum", f"{d.name}_count"}
    if d.kind == "counter":
        return {d.name, d.name.removesuffix("_total")}
    if d.kind == "info":
        return {d.name, d.name.removesuffix("_info")}
    return {d.name}


def _show(v: Any) -> str:
    if v is None:
        return "nothing"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


# ---------------------------------------------------------------------------------------------
# The contract's label conversion
# ---------------------------------------------------------------------------------------------


def convert_label(v: Any) -> str:
    """An event field's value as label text: the event contract's conversion rules."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if v is None:
        return "unknown"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        try:
            return str(v)
        except ValueError:
            # Beyond Python's int-to-text digit limit; no JSON parser here produces one.
            return "invalid"
    return "invalid"


def _extractor(label: LabelSpec) -> Callable[[Event], str]:
    """A function event -> label text, with the closed set looked up in a prebuilt dict."""
    fld = label.field
    if label.values is None:

        def open_value(ev: Event) -> str:
            v = ev.get(fld)
            return v if type(v) is str else convert_label(v)

        return open_value

    closed_get = {v: v for v in label.values}.get

    def closed_value(ev: Event) -> str:
        v = ev.get(fld)
        if type(v) is str:
            return closed_get(v, "other")
        if v is None:
            return "unknown"
        return closed_get(convert_label(v), "other")

    return closed_value


def _key_function(labels: tuple[LabelSpec, ...]) -> Callable[[Event], tuple[str, ...]]:
    """A function event -> label tuple, unrolled for the common widths to save calls."""
    exs = [_extractor(lb) for lb in labels]
    if not exs:
        return lambda ev: ()
    if len(exs) == 1:
        (e0,) = exs
        return lambda ev: (e0(ev),)
    if len(exs) == 2:
        e0, e1 = exs
        return lambda ev: (e0(ev), e1(ev))
    if len(exs) == 3:
        e0, e1, e2 = exs
        return lambda ev: (e0(ev), e1(ev), e2(ev))
    return lambda ev: tuple([e(ev) for e in exs])


def _matcher(match: tuple[tuple[str, tuple[str, ...]], ...]) -> Callable[[Event], bool]:
    pairs = tuple((f, frozenset(vs)) for f, vs in match)

    def matches(ev: Event) -> bool:
        for fld, accepted in pairs:
            v = ev.get(fld)
            if (v if type(v) is str else convert_label(v)) not in accepted:
                return False
        return True

    return matches


def _number(v: Any, nonnegative: bool) -> float | None:
    """A usable numeric value, or None when it is missing, not a number, or not finite."""
    t = type(v)
    if (t is float or t is int) and -_FMAX <= v <= _FMAX and (v >= 0 or not nonnegative):
        return float(v)
    return None


# ---------------------------------------------------------------------------------------------
# The compiled program
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Derived:
    """One metric change an event causes, for consumers other than the store (CloudWatch)."""

    metric: MetricSpec
    labels: tuple[str, ...]
    # "inc" and "dec" add/subtract ``value``; "set" sets it; "observe" records an observation;
    # "info" replaces the info series (``value`` is 1).
    op: Op
    value: float
    # CloudWatch dimension name -> value; empty when the metric has no CloudWatch declaration.
    dimensions: tuple[tuple[str, str], ...]


class Program:
    """A compiled spec: ``bind`` builds the hot path against a store; ``derive`` is general."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        by_event: dict[str, list[tuple[MetricSpec, Rule]]] = {}
        for m in spec.metrics:
            for r in m.rules:
                for et in r.events:
                    by_event.setdefault(et, []).append((m, r))
        self._by_event = {et: tuple(pairs) for et, pairs in by_event.items()}
        self._keys = {m.name: _key_function(m.labels) for m in spec.metrics}
        self._matchers = {
            r: _matcher(r.match) for m in spec.metrics for r in m.rules if r.match
        }  # fmt: skip
        self._dims = {
            m.name: tuple((d.name, _extractor(d.source)) for d in m.cloudwatch.dimensions)
            for m in spec.metrics
            if m.cloudwatch is not None
        }

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._by_event)

    def bind(self, store: Store) -> dict[str, Apply]:
        """Event type -> one function that applies such an event to ``store``'s metric state.

        The functions hold the store's state objects: after ``store.reconfigure`` bind again.
        Raises ValueError if the store does not hold this spec's metrics.
        """
        for m in self.spec.metrics:
            state = store.states.get(m.name)
            if state is None or not state.definition.same_shape(m.definition):
                raise ValueError(f"store has no metric {m.name!r} of this shape; reconfigure it")
        return {et: _generate(et, pairs, store) for et, pairs in self._by_event.items()}

    def derive(self, event: Event) -> list[Derived]:
        """Every metric change ``event`` causes, without touching any store.

        Invalid values (see the contract) derive nothing, as in the store; they are not counted.
        """
        et = event.get("event")
        pairs = self._by_event.get(et) if type(et) is str else None
        if not pairs:
            return []
        out: list[Derived] = []
        for m, r in pairs:
            if r.match and not self._matchers[r](event):
                continue
            amount = 1.0
            if r.value is not None:
                n = _number(event.get(r.value), nonnegative=m.kind != "gauge")
                if n is None:
                    continue
                amount = n
            dims = self._dims.get(m.name, ())
            out.append(
                Derived(
                    m,
                    self._keys[m.name](event),
                    r.op,
                    amount,
                    tuple((dn, ex(event)) for dn, ex in dims),
                )
            )
        return out


def compile(spec: Spec) -> Program:
    """Compile a validated spec (the name shadows the builtin only inside this module)."""
    return Program(spec)


# Each event type gets one function, generated from the spec as Python source when the program is
# bound. For speed: a field read by several metrics is read and converted once, the rules run
# without a call each, and closed sets are plain set lookups. Label values are pure functions of
# the event, so computing them before a value check (or once for several rules) changes nothing;
# those of a rule behind a ``match`` are computed behind it, only when it matches.


_TOP: Final = "    "  # the indentation of the generated function's body


class _Scope:
    """The generated statements of one block, and the values already computed on its path."""

    def __init__(self, gen: _Generator, indent: str, known: dict[tuple[Any, ...], str]) -> None:
        self.gen = gen
        self.indent = indent
        self.known = dict(known)  # what this block's path has computed: key -> variable

    def emit(self, line: str) -> None:
        self.gen.lines.append(self.indent + line)

    def nested(self, header: str) -> _Scope:
        self.emit(header)
        return _Scope(self.gen, self.indent + "    ", self.known)

    def value(self, key: tuple[Any, ...], make: Callable[[str], str]) -> str:
        var = self.known.get(key)
        if var is None:
            var = self.known[key] = self.gen.name("v")
            self.emit(f"{var} = {make(var)}")
        return var

    def raw(self, fld: str) -> str:
        if self.indent == _TOP:
            # Read in the function's prelude (see ``_generate``), not here.
            var = self.known.get(("raw", fld))
            if var is None:
                var = self.known[("raw", fld)] = self.gen.name("v")
                self.gen.prelude.append((var, fld))
            return var
        return self.value(("raw", fld), lambda _: f"ev.get({fld!r})")

    def text(self, fld: str) -> str:
        """The field as label text (``convert_label``), as for an open label or a match."""
        r = self.raw(fld)
        return self.value(("text", fld), lambda _: f"{r} if type({r}) is str else convert({r})")

    def label(self, lb: LabelSpec) -> str:
        if lb.values is None:
            return self.text(lb.field)
        r = self.raw(lb.field)
        vs = self.gen.const(frozenset(lb.values), "closed")
        return self.value(
            ("closed", lb.field, lb.values),
            lambda _: (
                f"({r} if {r} in {vs} else 'other') if type({r}) is str else "
                f"'unknown' if {r} is None else _closed(convert({r}), {vs})"
            ),
        )

    def key(self, labels: tuple[LabelSpec, ...]) -> str:
        values = [self.label(lb) for lb in labels]
        return f"({values[0]},)" if len(values) == 1 else f"({', '.join(values)})"


def _closed(text: str, values: frozenset[str]) -> str:
    return text if text in values else "other"


class _Generator:
    """Python source for one event type's function, and the objects it refers to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        # (variable, field) read unconditionally at the start of the function.
        self.prelude: list[tuple[str, str]] = []
        self.namespace: dict[str, Any] = {
            "convert": convert_label,
            "_closed": _closed,
            "bisect_left": bisect_left,
        }
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, obj: object, prefix: str) -> str:
        name = self.name(prefix)
        self.namespace[name] = obj
        return name


def _generate(event_type: str, pairs: tuple[tuple[MetricSpec, Rule], ...], store: Store) -> Apply:
    gen = _Generator()
    top = _Scope(gen, _TOP, {})
    for m, r in pairs:
        scope = top
        if r.match:
            tests = [
                f"{scope.text(f)} in {gen.const(frozenset(vs), 'accepted')}" for f, vs in r.match
            ]
            scope = scope.nested(f"if {' and '.join(tests)}:")
        _rule(scope, m, r, store)
    # For speed, the fields are read with subscripts (much cheaper than calls to ``get``), and
    # all again with ``get`` in the rare event that lacks one of them.
    prelude = []
    if gen.prelude:
        prelude = [
            "    try:",
            *(f"        {var} = ev[{fld!r}]" for var, fld in gen.prelude),
            "    except KeyError:",
            *(f"        {var} = ev.get({fld!r})" for var, fld in gen.prelude),
        ]
    source = "\n".join(["def apply(ev):", *prelude, *gen.lines, "    return"])
    exec(builtins.compile(source, f"<spec program for {event_type!r}>", "exec"), gen.namespace)
    fn: Apply = gen.namespace["apply"]
    return fn


def _rule(scope: _Scope, m: MetricSpec, r: Rule, store: Store) -> None:
    """The statements of one rule, the same steps as ``derive`` describes, into the store."""
    gen = scope.gen
    state = store.states[m.name]
    key = scope.key(m.labels)
    if isinstance(state, InfoState):
        scope.emit(f"{gen.const(state, 'info')}.current = {key}")
        return
    invalid = f"{gen.const(store.invalid_values, 'invalid')}[{m.name!r}] += 1.0"
    if isinstance(state, HistogramState):
        assert r.value is not None  # the loader requires it
        v = scope.raw(r.value)
        series_get = gen.const(state.series.get, "series_get")
        new_series = gen.const(state.new_series, "new_series")
        bounds = gen.const(state.bounds, "bounds")
        ok = scope.nested(f"if (type({v}) is float or type({v}) is int) and 0 <= {v} <= {_FMAX!r}:")
        ok.emit(f"k = {key}")
        ok.emit(f"cells = {series_get}(k)")
        ok.emit("if cells is None:")
        ok.emit(f"    cells = {new_series}(k)")
        ok.emit(f"cells[bisect_left({bounds}, {v})] += 1.0")
        ok.emit(f"cells[-1] += {v}")
        scope.nested("else:").emit(invalid)
        return
    series = gen.const(state.series, "series")
    if isinstance(state, GaugeState):
        amount = "1.0"
        body = scope
        if r.value is not None:
            v = scope.raw(r.value)
            body = scope.nested(
                f"if (type({v}) is float or type({v}) is int) and {-_FMAX!r} <= {v} <= {_FMAX!r}:"
            )
            amount = "amount"
            body.emit(f"amount = float({v})")
        body.emit(f"k = {key}")
        body.emit(f"current = {series}.get(k)")
        body.emit("if current is None:")
        body.emit(f"    k = {gen.const(state.admit, 'admit')}(k)")
        body.emit(f"    current = {series}.get(k, 0.0)")
        sign = -1.0 if r.op == "dec" else 1.0
        body.emit(f"new = {amount}" if r.op == "set" else f"new = current + {sign!r} * {amount}")
        if m.floor is None:
            body.emit(f"{series}[k] = new")
        else:
            floor = gen.const(m.floor, "floor")
            body.emit(f"{series}[k] = {floor} if new < {floor} else new")
        if r.value is not None:
            scope.nested("else:").emit(invalid)
        return
    assert isinstance(state, CounterState)
    add_new = gen.const(state.add_new, "add_new")
    if r.value is None:
        scope.emit(f"k = {key}")
        scope.nested("try:").emit(f"{series}[k] += 1.0")
        scope.nested("except KeyError:").emit(f"{add_new}(k, 1.0)")
        return
    v = scope.raw(r.value)
    ok = scope.nested(f"if (type({v}) is float or type({v}) is int) and 0 <= {v} <= {_FMAX!r}:")
    ok.emit(f"k = {key}")
    ok.nested("try:").emit(f"{series}[k] += {v}")
    ok.nested("except KeyError:").emit(f"{add_new}(k, float({v}))")
    scope.nested("else:").emit(invalid)
