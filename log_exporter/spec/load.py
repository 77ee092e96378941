"""TOML text -> a validated ``Spec``, every error named with its file, table and field.

No I/O except reading the built-in spec shipped inside the package. The schema is described in
``docs/spec.md``; ``load_spec`` reports every problem of a document, not only the first.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from importlib import resources
from itertools import pairwise
from typing import Any, Final, cast

from log_exporter.limits import DEFAULT_LABEL_VALUE_MAX_BYTES, open_regular
from log_exporter.native import (
    DEFAULT_FACTOR,
    DEFAULT_MAX_BUCKETS,
    DEFAULT_ZERO_THRESHOLD,
    NativeDef,
    pick_schema,
)
from log_exporter.parse import TIME_FORMATS
from log_exporter.spec.cloudwatch import CloudWatchSpec, check_table
from log_exporter.spec.model import (
    ExemplarSpec,
    InputSpec,
    LabelSpec,
    Match,
    MatchOp,
    MetricSpec,
    Op,
    Rule,
    Spec,
)
from log_exporter.spec.paths import Path, parse_path
from log_exporter.spec.regex import RegexError, compile_regex
from log_exporter.store import DEFAULT_SERIES_CAP, MetricDef

__all__ = [
    "SpecError",
    "default_spec_text",
    "load_default_spec",
    "load_spec",
    "read_spec",
]

SPEC_VERSION: Final = 1

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels that the exposition formats give a meaning of their own.
_RESERVED_LABELS: Final = frozenset({"le", "quantile"})
_RESERVED_PREFIX: Final = "log_exporter_"
# The label_value_max_bytes accepted: at least room for the contract's own values (unknown,
# invalid, __overflow__), at most what still keeps a page small.
_LABEL_VALUE_BYTES: Final = (16, 4096)
# An exemplar's label name leaves at least this much of OpenMetrics' 128 characters to its value.
_EXEMPLAR_NAME_MAX: Final = 64
# A native histogram's bucket limit: each series keeps at most about this many buckets, so the
# memory of a series stays bounded (client_golang's 0, no limit, is not offered).
_NATIVE_MAX_BUCKETS: Final = 10_000


class SpecError(ValueError):
    """A spec that cannot be used; ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def default_spec_text() -> str:
    """The built-in SustainBot spec shipped inside the package."""
    return (resources.files("log_exporter") / "specs" / "sustainbot.toml").read_text("utf-8")


def load_default_spec() -> Spec:
    """The built-in SustainBot spec, loaded."""
    return load_spec(default_spec_text(), "sustainbot.toml (built in)")


def read_spec(path: str | None) -> Spec:
    """The spec file at ``path`` (None: the built-in spec), loaded: the one reader of spec files.

    Raises OSError when it cannot be read, UnicodeDecodeError when it is not UTF-8 (``start`` is
    the byte's offset in the file), SpecError when it is not a valid spec. Line ends are read as
    in a text file: CRLF and CR become LF.
    """
    if path is None:
        return load_default_spec()
    # Opened only when regular: a FIFO named as the spec would hang start-up or a SIGHUP.
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read()
    text = data.decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return load_spec(text, path)


def load_spec(text: str, source: str) -> Spec:
    """Parse and validate spec TOML; ``source`` (a file name) prefixes every error message."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"{source}: {_toml_message(exc)}"]) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: a SIGHUP with such a file
        # must keep the old spec, as any other bad spec does, not end the process.
        raise SpecError([f"{source}: (top level): nested deeper than Python can parse"]) from None
    if _depth(doc) > MAX_NESTING:
        raise SpecError([f"{source}: (top level): nested deeper than {MAX_NESTING} levels"])
    checker = _Checker(source)
    spec = checker.spec(doc)
    if checker.errors or spec is None:
        raise SpecError(checker.errors)
    return spec


# No spec needs more than a handful of levels; the bound keeps every later walk of the document
# (the checks, error messages quoting values) far from Python's recursion limit.
MAX_NESTING: Final = 32


def _depth(doc: Any) -> int:
    """How deeply tables and arrays nest in ``doc``, counted without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest


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

    @staticmethod
    def show(v: Any) -> str:
        return _show(v)

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
        self.unknown_keys(
            "",
            doc,
            {"version", "series_cap", "label_value_max_bytes", "sets", "metrics", "input"},
        )
        if "version" in doc and doc["version"] != SPEC_VERSION:
            self.err("", "version", f"must be {SPEC_VERSION}, not {_show(doc['version'])}")
        cap = DEFAULT_SERIES_CAP
        if "series_cap" in doc:
            cap = self.positive_int("", "series_cap", doc["series_cap"]) or cap
        max_bytes = DEFAULT_LABEL_VALUE_MAX_BYTES
        if "label_value_max_bytes" in doc:
            max_bytes = self.max_bytes("", doc["label_value_max_bytes"]) or max_bytes
        sets = self.sets(doc.get("sets", {}))
        spec_input = self.input(doc.get("input", {}))
        raw_metrics = doc.get("metrics")
        if type(raw_metrics) is not dict or not raw_metrics:
            self.err("", "metrics", "must be a table with at least one [metrics.NAME] table")
            return None
        metrics: list[MetricSpec] = []
        for name, body in raw_metrics.items():
            m = self.metric(name, body, sets, cap, max_bytes)
            if m is not None:
                metrics.append(m)
        self.collisions(metrics)
        return Spec(self.source, tuple(metrics), spec_input)

    def path(self, table: str, fld: str, v: Any) -> Path | None:
        """A field path (``a.b.0``, ``labels."app.kubernetes.io/name"``), or None if broken."""
        text = self.string(table, fld, v)
        if text is None:
            return None
        try:
            return parse_path(text)
        except ValueError as exc:
            self.err(table, fld, str(exc))
            return None

    def input(self, doc: Any) -> InputSpec:
        """The ``[input]`` table: the event type's field and the timestamp's field and format."""
        default = InputSpec()
        if type(doc) is not dict:
            self.err("", "input", f"must be a table, not {_show(doc)}")
            return default
        self.unknown_keys("input", doc, {"event_field", "timestamp"})
        event_field = default.event_field
        if "event_field" in doc:
            event_field = self.path("input", "event_field", doc["event_field"]) or event_field
        ts_field, ts_format = default.timestamp_field, default.timestamp_format
        if "timestamp" in doc:
            ts = doc["timestamp"]
            if type(ts) is not dict:
                self.err(
                    "input",
                    "timestamp",
                    f"must be an inline table {{ field = ..., format = ... }}, not {_show(ts)}",
                )
                return InputSpec(event_field)
            self.unknown_keys(
                "input",
                {f"timestamp.{k}": v for k, v in ts.items()},
                {"timestamp.field", "timestamp.format"},
            )
            if "field" in ts:
                ts_field = self.path("input", "timestamp.field", ts["field"]) or ts_field
            if "format" in ts:
                fmt = ts["format"]
                if type(fmt) is not str or fmt not in TIME_FORMATS:
                    self.err(
                        "input",
                        "timestamp.format",
                        f"must be one of {', '.join(TIME_FORMATS)}, not {_show(fmt)}",
                    )
                else:
                    ts_format = fmt
        return InputSpec(event_field, ts_field, ts_format)

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
        self,
        name: str,
        body: Any,
        sets: dict[str, tuple[str, ...]],
        default_cap: int,
        default_max_bytes: int,
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
                "series_cap", "label_value_max_bytes", "rules", "cloudwatch", "exemplar",
                "partition", "native",
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
        max_bytes = default_max_bytes
        if "label_value_max_bytes" in body:
            max_bytes = self.max_bytes(table, body["label_value_max_bytes"]) or max_bytes
        native = self.native(table, kind, body)
        buckets = self.histogram_buckets(table, kind, body, native is not None)
        floor = self.gauge_floor(table, kind, body)
        partition = self.gauge_partition(table, kind, body)
        rules = self.rules(table, kind, body)
        for i, r in enumerate(rules):
            if r.op == "reset" and partition is None:
                where = f"rules[{i}].op" if "rules" in body else "op"
                self.err(table, where, "op 'reset' forgets one partition: give 'partition'")
        cloudwatch = self.cloudwatch(table, kind, body, labels, sets)
        exemplar = self.exemplar(table, kind, body)
        if len(self.errors) != before or help_text is None:
            return None
        definition = MetricDef(
            name,
            kind,
            help_text,
            tuple(lb.name for lb in labels),
            buckets,
            cap,
            None if exemplar is None else exemplar.name,
            partitioned=partition is not None,
            native=native,
        )
        return MetricSpec(
            definition, labels, rules, floor, cloudwatch, max_bytes,
            exemplar=exemplar, partition=partition,
        )  # fmt: skip

    def exemplar(self, table: str, kind: str, body: dict[str, Any]) -> ExemplarSpec | None:
        """The metric's ``exemplar``: a field name, or ``{ name = LABEL, field = FIELD }``."""
        if "exemplar" not in body:
            return None
        doc = body["exemplar"]
        if kind not in ("counter", "histogram"):
            # OpenMetrics allows exemplars on counters and histogram buckets only.
            self.err(
                table, "exemplar", f"only a counter or a histogram has exemplars (this is a {kind})"
            )
            return None
        if type(doc) is str:
            doc = {"name": doc}
        elif type(doc) is not dict:
            self.err(
                table, "exemplar", f"must be a field name or an inline table, not {_show(doc)}"
            )
            return None
        self.unknown_keys(table, {f"exemplar.{k}": v for k, v in doc.items()}, {
            "exemplar.name", "exemplar.field",
        })  # fmt: skip
        name = self.string(table, "exemplar.name", doc.get("name"))
        if name is None:
            return None
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            self.err(table, "exemplar.name", f"{name!r} is not a valid label name")
            return None
        if len(name) > _EXEMPLAR_NAME_MAX:
            self.err(
                table,
                "exemplar.name",
                f"at most {_EXEMPLAR_NAME_MAX} characters, to leave room for the value "
                "in OpenMetrics' 128",
            )
            return None
        fld = name
        if "field" in doc:
            if self.path(table, "exemplar.field", doc["field"]) is None:
                return None
            fld = doc["field"]
        return ExemplarSpec(name, fld)

    def gauge_partition(self, table: str, kind: str, body: dict[str, Any]) -> LabelSpec | None:
        """A gauge's ``partition``: the event field whose value names the share an event changes."""
        if "partition" not in body:
            return None
        if kind != "gauge":
            self.err(table, "partition", "only a gauge is kept per partition")
            return None
        path = self.path(table, "partition", body["partition"])
        return None if path is None else LabelSpec("partition", body["partition"])

    def max_bytes(self, table: str, v: Any) -> int | None:
        """A ``label_value_max_bytes``: an integer within ``_LABEL_VALUE_BYTES``."""
        low, high = _LABEL_VALUE_BYTES
        if type(v) is not int or not low <= v <= high:
            self.err(
                table,
                "label_value_max_bytes",
                f"must be an integer from {low} to {high}, not {_show(v)}",
            )
            return None
        return v

    def histogram_buckets(
        self, table: str, kind: str, body: dict[str, Any], native: bool
    ) -> tuple[float, ...]:
        if kind == "histogram":
            if native and "buckets" not in body:
                return ()  # native buckets only: the classic form has only +Inf
            return self.buckets(table, body.get("buckets"))
        if "buckets" in body:
            self.err(table, "buckets", "only a histogram has buckets")
        return ()

    def native(self, table: str, kind: str, body: dict[str, Any]) -> NativeDef | None:
        """A histogram's ``native``: true, false, or a table of client_golang's settings."""
        if "native" not in body:
            return None
        doc = body["native"]
        if kind != "histogram":
            self.err(table, "native", "only a histogram has native buckets")
            return None
        if doc is True:
            doc = {}
        elif doc is False:
            return None
        elif type(doc) is not dict:
            self.err(table, "native", f"must be true, false or an inline table, not {_show(doc)}")
            return None
        self.unknown_keys(table, {f"native.{k}": v for k, v in doc.items()}, {
            "native.bucket_factor", "native.zero_threshold", "native.max_buckets",
        })  # fmt: skip
        factor = doc.get("bucket_factor", DEFAULT_FACTOR)
        if type(factor) not in (int, float) or not 1 < factor < math.inf:
            self.err(
                table, "native.bucket_factor", f"must be a number above 1, not {_show(factor)}"
            )
            return None
        threshold = doc.get("zero_threshold", DEFAULT_ZERO_THRESHOLD)
        if type(threshold) not in (int, float) or not 0 <= threshold < math.inf:
            self.err(
                table,
                "native.zero_threshold",
                f"must be a finite number, 0 or more, not {_show(threshold)}",
            )
            return None
        limit = doc.get("max_buckets", DEFAULT_MAX_BUCKETS)
        if type(limit) is not int or not 1 <= limit <= _NATIVE_MAX_BUCKETS:
            self.err(
                table,
                "native.max_buckets",
                f"must be an integer from 1 to {_NATIVE_MAX_BUCKETS}, not {_show(limit)}",
            )
            return None
        return NativeDef(pick_schema(float(factor)), float(threshold), limit)

    def gauge_floor(self, table: str, kind: str, body: dict[str, Any]) -> float | None:
        if "floor" not in body:
            return None
        if kind != "gauge":
            self.err(table, "floor", "only a gauge has a floor")
            return None
        return self.number(table, "floor", body["floor"])

    def cloudwatch(
        self,
        table: str,
        kind: str,
        body: dict[str, Any],
        labels: tuple[LabelSpec, ...],
        sets: dict[str, tuple[str, ...]],
    ) -> CloudWatchSpec | None:
        """The metric's ``cloudwatch`` table, checked by CloudWatch's part of the schema."""
        if "cloudwatch" not in body:
            return None
        if kind == "info":
            self.err(table, "cloudwatch", "an info metric has no value to publish")
            return None
        by_label = {lb.name: lb for lb in labels}
        return check_table(self, table, body["cloudwatch"], by_label, sets)

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
        seen: set[str] = set()  # a set, not a scan of ``out``: 100k labels took over a minute
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
            if name in seen:
                self.err(table, f"{fld}.name", f"duplicate label {name!r}")
                continue
            source = self.source_of(table, fld, name, item, sets)
            if source is not None:
                out.append(source)
                seen.add(name)
        return tuple(out)

    def source_of(
        self,
        table: str,
        fld: str,
        name: str,
        item: dict[str, Any],
        sets: dict[str, tuple[str, ...]],
    ) -> LabelSpec | None:
        field_text = name
        if "field" in item:
            if self.path(table, f"{fld}.field", item["field"]) is None:
                return None
            field_text = item["field"]
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
        return LabelSpec(name, field_text, values)

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
        events = None
        if "events" in doc:
            events = self.strings(table, f"{prefix}events", doc["events"])
        match = self.match(table, f"{prefix}match", doc.get("match", {}))
        value = None
        scale = 1.0
        if "value" in doc:
            value, scale = self.value(table, f"{prefix}value", doc["value"])
        op: Op
        if kind == "gauge":
            raw_op = doc.get("op")
            if raw_op not in ("inc", "dec", "set", "reset", "reset_all"):
                self.err(
                    table,
                    f"{prefix}op",
                    f"must be inc, dec, set, reset or reset_all, not {_show(raw_op)}",
                )
                return None
            op = raw_op
            if op == "set" and value is None:
                self.err(table, f"{prefix}value", "op 'set' needs the field holding the value")
            if op in ("reset", "reset_all") and value is not None:
                self.err(table, f"{prefix}value", f"op {op!r} takes no value")
        else:
            if "op" in doc:
                self.err(table, f"{prefix}op", f"only a gauge has an op (this is a {kind})")
            op = {"counter": "inc", "histogram": "observe", "info": "info"}[kind]  # type: ignore[assignment]
            if kind == "histogram" and value is None:
                self.err(table, f"{prefix}value", "a histogram needs the field it observes")
            if kind == "info" and "value" in doc:
                self.err(table, f"{prefix}value", "an info metric has no value (it is always 1)")
        if len(self.errors) != before:
            return None
        return Rule(events, match, op, value, scale)

    def value(self, table: str, fld: str, v: Any) -> tuple[str | None, float]:
        """A rule's ``value``: a field path, or ``{ field = PATH, scale = NUMBER }``."""
        if type(v) is not dict:
            return (v if self.path(table, fld, v) is not None else None), 1.0
        self.unknown_keys(
            table, {f"{fld}.{k}": x for k, x in v.items()}, {f"{fld}.field", f"{fld}.scale"}
        )
        path = self.path(table, f"{fld}.field", v.get("field"))
        scale = 1.0
        if "scale" in v:
            number = self.number(table, f"{fld}.scale", v["scale"])
            if number is not None and number <= 0.0:
                self.err(table, f"{fld}.scale", f"must be positive, not {_show(v['scale'])}")
            scale = number if number is not None and number > 0.0 else 1.0
        return (v["field"] if path is not None else None), scale

    def match(self, table: str, fld: str, doc: Any) -> tuple[Match, ...]:
        if type(doc) is not dict:
            self.err(table, fld, f"must be a table of field = value(s), not {_show(doc)}")
            return ()
        out: list[Match] = []
        for key, v in doc.items():
            where = f"{fld}.{key}"
            try:
                path = parse_path(key)
            except ValueError as exc:
                self.err(table, where, str(exc))
                continue
            if type(v) is dict:
                out.extend(self.match_ops(table, where, path, v))
                continue
            vs = self.match_values(table, where, v)
            if vs is not None:
                out.append(Match(path, "in", vs))
        return tuple(out)

    def match_values(self, table: str, fld: str, v: Any) -> tuple[str, ...] | None:
        """Values compared with a field's label text: a string, an integer or a boolean (as
        their label text: ``404`` matches the field's "404"), or a non-empty array of them."""
        items = v if type(v) is list else [v]
        texts = [_match_text(x) for x in items]
        if not items or any(t is None for t in texts):
            self.err(
                table,
                fld,
                "must be a string, an integer, a boolean, or a non-empty array of them, "
                f"not {_show(v)}",
            )
            return None
        if len(set(texts)) != len(texts):
            self.err(table, fld, "has duplicate values")
            return None
        return tuple(t for t in texts if t is not None)

    def match_ops(self, table: str, fld: str, path: Path, doc: dict[str, Any]) -> list[Match]:
        """``{ not = ..., prefix = ..., regex = ..., ge = N, gt = N, le = N, lt = N }``: each
        operator given is one more test of the field."""
        self.unknown_keys(
            table, {f"{fld}.{k}": x for k, x in doc.items()}, {f"{fld}.{k}" for k in _MATCH_OPS}
        )
        if not doc:
            self.err(
                table, fld, f"an empty table tests nothing (operators: {', '.join(_MATCH_OPS)})"
            )
        out: list[Match] = []
        for op, v in doc.items():
            where = f"{fld}.{op}"
            if op == "not" or op == "prefix":
                vs = self.match_values(table, where, v)
                if vs is not None:
                    out.append(Match(path, cast(MatchOp, op), vs))
            elif op == "regex":
                pattern = self.string(table, where, v)
                if pattern is None:
                    continue
                try:
                    compile_regex(pattern)
                except RegexError as exc:
                    self.err(table, where, f"not a regular expression RE2 accepts: {exc}")
                    continue
                out.append(Match(path, "regex", (pattern,)))
            elif op == "ge" or op == "gt" or op == "le" or op == "lt":
                number = self.number(table, where, v)
                if number is not None:
                    out.append(Match(path, cast(MatchOp, op), (), number))
        return out

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


_MATCH_OPS: Final[tuple[MatchOp, ...]] = ("not", "prefix", "regex", "ge", "gt", "le", "lt")


def _match_text(v: Any) -> str | None:
    """A match value as the label text it stands for, or None if it is not one."""
    if type(v) is str:
        return v or None
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is int:
        return str(v)
    return None


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
