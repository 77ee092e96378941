"""The declarative mapping from events to metrics: TOML text -> ``Spec`` -> compiled ``Program``.

One module per step: ``model`` (the validated spec's dataclasses), ``cloudwatch`` (a metric's
``cloudwatch`` table and the ``Observation`` it gives), ``load`` (TOML -> ``Spec``, with every
error named; ``read_spec`` reads a spec file), ``labels`` (the contract's label conversion),
``program`` (``Program``) and ``codegen`` (the shared generator of Python source and two of its
targets: a store, and CloudWatch's observations; replay writes the third, its partial state).
Callers import from here. The package imports none of its users (CloudWatch, Prometheus,
replay, serve, the command line).
"""

from log_exporter.spec.labels import convert_label
from log_exporter.spec.load import (
    SpecError,
    default_spec_text,
    load_default_spec,
    load_spec,
    read_spec,
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
    "read_spec",
]
