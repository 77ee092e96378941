"""The declarative mapping from events to metrics: TOML text -> ``Spec`` -> compiled ``Program``.

One module per step: ``model`` (the validated spec's dataclasses), ``load`` (TOML -> ``Spec``,
with every error named), ``labels`` (the contract's label conversion), ``program`` (``Program``)
and ``codegen`` (the Python source it generates for its two targets: a store, and CloudWatch's
observations). Callers import from here.
"""

from log_exporter.spec.labels import convert_label
from log_exporter.spec.load import (
    SpecError,
    default_spec_text,
    load_default_spec,
    load_spec,
)
from log_exporter.spec.model import ExemplarSpec, LabelSpec, MetricSpec, Op, Rule, Spec
from log_exporter.spec.program import Program, compile_spec

__all__ = [
    "ExemplarSpec",
    "LabelSpec",
    "MetricSpec",
    "Op",
    "Program",
    "Rule",
    "Spec",
    "SpecError",
    "compile_spec",
    "convert_label",
    "default_spec_text",
    "load_default_spec",
    "load_spec",
]
