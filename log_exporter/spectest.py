"""A spec tried on sample lines: ``check-spec --explain`` and ``test-spec``.

Both run the lines through what serve runs, a ``Pipeline`` with the spec's compiled program into
a ``Store``, and read the result as a scrape does (the store's families in the text exposition),
so what they show is what the exporter would export: there is no second interpreter of the spec
to drift from the first. Only the reasons ``--explain`` gives for a metric that did not change
read the spec's rules themselves.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from log_exporter.parse import MALFORMED, parse_line
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.spec import Spec, compile_spec, read_spec
from log_exporter.spec.labels import convert_label
from log_exporter.spec.model import Match, Rule
from log_exporter.spec.paths import path_text, read_path
from log_exporter.spec.program import ANY_EVENT
from log_exporter.spec.regex import compile_regex
from log_exporter.store import Store
from log_exporter.values import Batch

__all__ = ["CasesError", "Evaluator", "explain", "load_cases", "run_cases"]

# A sample as the exposition names it: the series' name and its sorted label pairs.
Series = tuple[str, tuple[tuple[str, str], ...]]

# Self-metrics whose change on a line says why a metric did not change as expected.
_REASONS = {
    "log_exporter_invalid_values_total": "value invalid (missing, not a number, negative or "
    "infinite): nothing observed",
    "log_exporter_label_values_too_long_total": "a label value longer than "
    "label_value_max_bytes: counted as __overflow__",
    "log_exporter_series_overflow_total": "series cap reached: counted in __overflow__",
}


class CasesError(ValueError):
    """A cases file that cannot be run; the message names the file and the place."""


def series_text(series: Series) -> str:
    name, labels = series
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def parse_series(text: str) -> Series:
    """``name{label="value",...}`` as the exposition writes a series; ValueError otherwise."""
    try:
        families = list(text_string_to_metric_families(f"{text.strip()} 0\n"))
    except Exception as exc:  # the parser raises bare ValueErrors and worse on bad text
        raise ValueError(f'not a series like name{{label="value"}}: {text!r}') from exc
    samples = [s for f in families for s in f.samples]
    if len(samples) != 1:
        raise ValueError(f"not one series: {text!r}")
    return samples[0].name, tuple(sorted(samples[0].labels.items()))


class Evaluator:
    """Lines fed one batch at a time into a fresh store through the spec's compiled program."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.store = Store(spec.definitions)
        self.pipeline = Pipeline(compile_spec(spec), self.store, exemplars=False)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(StoreCollector(self.store, build_info=False))
        self._types: dict[str, str] = {}

    def feed(self, lines: Sequence[bytes]) -> None:
        self.pipeline.feed(Batch(lines=list(lines), bytes_read=sum(len(x) + 1 for x in lines)))

    def samples(self) -> dict[Series, float]:
        """Every series the store exports now, as a scrape shows it (``_created`` left out)."""
        text = generate_latest(self._registry).decode()
        out: dict[Series, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                self._types[s.name] = family.type
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def kind(self, sample_name: str) -> str:
        return self._types.get(sample_name, "untyped")


# -- check-spec --explain ----------------------------------------------------------------------


def explain(spec: Spec, lines: Iterable[bytes]) -> Iterable[str]:
    """For each line, what it changes (metric, labels, change) and why the metrics its event
    feeds did not change; lines are fed in order, so a gauge shows its running value."""
    evaluator = Evaluator(spec)
    program = evaluator.pipeline.program
    before = evaluator.samples()
    for number, raw in enumerate(lines, 1):
        raw = raw.rstrip(b"\n")
        evaluator.feed([raw])
        after = evaluator.samples()
        event = parse_line(raw)
        if event is None:
            yield f"line {number}: blank"
        elif event is MALFORMED:
            yield f"line {number}: malformed (not one JSON object): counted, nothing derived"
        else:
            assert isinstance(event, dict)
            yield from _explain_event(number, event, before, after, evaluator, program)
        before = after


def _explain_event(
    number: int,
    event: dict[str, Any],
    before: Mapping[Series, float],
    after: Mapping[Series, float],
    evaluator: Evaluator,
    program: Any,
) -> Iterable[str]:
    # The event type where the spec's [input] says it is; rules without `events` take the rest.
    et = program.reader.type_of(event)
    by_event = program.rules_by_event
    anything = by_event.get(ANY_EVENT, ())
    pairs = by_event.get(et, anything) if isinstance(et, str) else anything
    field = path_text(program.spec.input.event_field)
    if not isinstance(et, str):
        yield f"line {number}: no `{field}` field holding a string" + (
            "" if pairs else ": no metric reads it"
        )
    else:
        yield f"line {number}: event {et!r}" + ("" if pairs else ": no metric reads this event")
    changed_metrics: set[str] = set()
    reasons: dict[str, list[str]] = {}
    for series in sorted(set(before) | set(after)):
        old, new = before.get(series, 0.0), after.get(series, 0.0)
        if old == new or (math.isnan(old) and math.isnan(new)):
            continue
        name, labels = series
        if name in _REASONS:
            metric = dict(labels).get("metric", "")
            reasons.setdefault(metric, []).append(_REASONS[name])
            continue
        if name.startswith("log_exporter_") or name.endswith("_bucket"):
            continue
        changed_metrics.add(_metric_of(name, evaluator.spec))
        if evaluator.kind(name) == "gauge":
            yield f"  {series_text(series)} = {_num(new)} (was {_num(old)})"
        else:
            yield f"  {series_text(series)} +{_num(new - old)}"
    seen: set[str] = set()
    for metric, _rule in pairs:
        if metric.name in changed_metrics or metric.name in seen:
            continue
        seen.add(metric.name)
        why = reasons.get(metric.name) or [
            _why_not(event, r) for m, r in pairs if m.name == metric.name
        ]
        yield f"  {metric.name}: unchanged: {'; '.join(why)}"


def _metric_of(sample_name: str, spec: Spec) -> str:
    """The spec's metric a sample belongs to (a histogram's ``_sum`` and ``_count`` too)."""
    names = {m.name for m in spec.metrics}
    for suffix in ("_sum", "_count", "_bucket"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in names:
            return base
    return sample_name


def _why_not(event: Mapping[str, Any], rule: Rule) -> str:
    """Why one rule left its metric as it was: the first match that failed, else no change."""
    for test in rule.match:
        raw = read_path(event, test.path)
        if not _passes(test, raw):
            field = path_text(test.path)
            if raw is None:
                return f"match failed: {field} is missing (wants {_wanted(test)})"
            return f"match failed: {field} is {convert_label(raw)!r} (wants {_wanted(test)})"
    if rule.value is not None:
        value = read_path(event, rule.value_path)
        return f"{rule.op} with {rule.value} = {value!r} changed nothing"
    return f"{rule.op} changed nothing"


def _passes(test: Match, raw: Any) -> bool:
    """Whether the field's value passes one test (docs/spec.md, "match"): only to explain; the
    compiled program is what counts."""
    label = convert_label(raw)
    if test.op == "in":
        return label in test.values
    if test.op == "not":
        return label not in test.values
    if test.op == "prefix":
        return label.startswith(test.values)
    if test.op == "regex":
        return compile_regex(test.values[0])(label) is not None
    if type(raw) not in (int, float):
        return False
    compared: dict[str, bool] = {
        "ge": raw >= test.number,
        "gt": raw > test.number,
        "le": raw <= test.number,
        "lt": raw < test.number,
    }
    return compared[test.op]


def _wanted(test: Match) -> str:
    if test.op == "in":
        return _alternatives(test.values)
    if test.op in ("not", "prefix", "regex"):
        return f"{test.op} {_alternatives(test.values)}"
    return f"{test.op} {test.number:g}"


def _alternatives(values: Sequence[str]) -> str:
    return " or ".join(repr(v) for v in values)


def _num(value: float) -> str:
    return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


# -- test-spec ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    lines: tuple[bytes, ...]
    expect: tuple[tuple[Series, float], ...]
    absent: tuple[Series, ...]


@dataclass(frozen=True, slots=True)
class Cases:
    path: str
    spec_path: str | None  # None: the built-in spec
    cases: tuple[Case, ...]


def load_cases(path: str) -> Cases:
    """The cases file at ``path`` (TOML, or YAML for ``.yaml``/``.yml``); CasesError naming the
    file and the case for a bad one, OSError when it cannot be read."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            doc = yaml.safe_load(data.decode("utf-8"))
        else:
            doc = tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CasesError(f"{path}: not a cases file: {exc}") from exc
    except Exception as exc:  # yaml's errors do not share a base with ValueError
        raise CasesError(f"{path}: not a cases file: {exc}") from exc
    if not isinstance(doc, dict):
        raise CasesError(f"{path}: must be a table with `spec` and `case`")
    spec = doc.get("spec")
    if spec is not None and not isinstance(spec, str):
        raise CasesError(f"{path}: `spec` must be a path (relative to the cases file)")
    spec_path = None if spec is None else os.path.join(os.path.dirname(path), spec)
    raw_cases = doc.get("case")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise CasesError(f"{path}: needs at least one [[case]]")
    unknown = set(doc) - {"spec", "case"}
    if unknown:
        raise CasesError(f"{path}: unknown keys {sorted(unknown)} (spec, case)")
    return Cases(path, spec_path, tuple(_case(path, i, c) for i, c in enumerate(raw_cases, 1)))


def _case(path: str, index: int, raw: object) -> Case:
    where = f"{path}: case {index}"
    if not isinstance(raw, dict):
        raise CasesError(f"{where}: must be a table")
    name = raw.get("name", f"case {index}")
    where = f"{path}: case {name!r}"
    unknown = set(raw) - {"name", "lines", "expect", "absent"}
    if unknown:
        raise CasesError(f"{where}: unknown keys {sorted(unknown)} (name, lines, expect, absent)")
    lines = raw.get("lines", [])
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise CasesError(f"{where}: `lines` must be a list of strings (the log lines)")
    expect = raw.get("expect", {})
    absent = raw.get("absent", [])
    if not isinstance(expect, dict) or not isinstance(absent, list):
        raise CasesError(f"{where}: `expect` must be a table (series = value), `absent` a list")
    if not expect and not absent:
        raise CasesError(f"{where}: expects nothing (`expect` or `absent`)")
    try:
        expected: list[tuple[Series, float]] = []
        for text, value in expect.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CasesError(f"{where}: the value of {text} must be a number")
            expected.append((parse_series(text), float(value)))
        gone = tuple(parse_series(str(t)) for t in absent)
    except ValueError as exc:
        raise CasesError(f"{where}: {exc}") from exc
    return Case(str(name), tuple(x.encode() for x in lines), tuple(expected), gone)


def run_case(spec: Spec, case: Case) -> list[str]:
    """The differences between what ``case`` expects and what the lines give (empty: passed)."""
    evaluator = Evaluator(spec)
    evaluator.feed(case.lines)
    got = evaluator.samples()
    problems: list[str] = []
    for series, value in case.expect:
        actual = got.get(series)
        if actual is None:
            problems.append(f"{series_text(series)}: expected {_num(value)}, got no such series")
        elif not math.isclose(actual, value, rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"{series_text(series)}: expected {_num(value)}, got {_num(actual)}")
    for series in case.absent:
        if series in got:
            problems.append(f"{series_text(series)}: expected absent, got {_num(got[series])}")
    return problems


def run_cases(cases: Cases) -> tuple[int, list[str]]:
    """Run every case: the number that failed and the report's lines."""
    spec = read_spec(cases.spec_path)
    failed = 0
    out: list[str] = []
    for case in cases.cases:
        problems = run_case(spec, case)
        if problems:
            failed += 1
            out.append(f"FAIL {case.name}")
            out.extend(f"  {p}" for p in problems)
        else:
            out.append(f"ok   {case.name}")
    out.append(f"{len(cases.cases) - failed} passed, {failed} failed")
    return failed, out
