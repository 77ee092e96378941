"""One compiled program bound to several stores (a node's label sets): each store counts only
the events fed through its own pipeline, though the bound functions share their compiled code."""

from __future__ import annotations

from log_exporter.pipeline import Pipeline
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.store import Store
from tests.support.pipeline import feed


def test_stores_bound_to_one_program_count_only_their_own_events() -> None:
    """Three pipelines of one program over three stores: the jwt counter of each store holds
    the events fed to it, none of the others'."""
    spec = load_default_spec()
    program = compile_spec(spec)
    pipelines = [Pipeline(program, Store(spec.definitions)) for _ in range(3)]
    for n, pipeline in enumerate(pipelines, start=1):
        feed(pipeline, [{"event": "auth.jwt_validated", "outcome": "failure"}] * n)
    counts = []
    for p in pipelines:
        jwt = {m.definition.name: m for m in p.store.snapshot().metrics}[
            "sustainbot_jwt_validations_total"
        ]
        counts.append(jwt.series.get(("failure",)))
    assert counts == [1.0, 2.0, 3.0]
