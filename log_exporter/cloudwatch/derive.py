"""The spec's CloudWatch declarations applied to an event: ``Program.derive`` -> observations.

Only metrics with a ``cloudwatch`` table in the spec are published; nothing is hard-coded here.
Counters ("inc") become per-interval sums, histograms ("observe") become distributions; gauges
and info metrics have no CloudWatch meaning and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from log_exporter.cloudwatch.metrics_agg import Dimensions, Observation
from log_exporter.limits import OVERFLOW
from log_exporter.spec import Program

DEFAULT_DIMENSION_CAP: Final = 1000


class ObservationDeriver:
    """Callable ``event -> observations``, capping distinct dimension sets per metric.

    Each distinct dimension set is a separately billed CloudWatch metric, so once a metric has
    ``cap`` of them a new one is published with every value ``__overflow__`` (as the store does
    for Prometheus series): totals stay exact, cost stays bounded.
    """

    def __init__(
        self, program: Program | Callable[[], Program], cap: int = DEFAULT_DIMENSION_CAP
    ) -> None:
        # A callable follows spec reloads (serve's pipeline swaps its program on SIGHUP).
        self._program = program if callable(program) else (lambda: program)
        self._cap = cap
        self._seen: dict[str, set[Dimensions]] = {}
        self.overflowed = 0

    def __call__(self, event: dict[str, Any]) -> Sequence[Observation]:
        out: list[Observation] = []
        for d in self._program().derive(event):
            cw = d.metric.cloudwatch
            if cw is None:
                continue
            if d.op == "inc":
                kind: Any = "sum"
            elif d.op == "observe":
                kind = "distribution"
            else:
                continue
            dims = self._capped(cw.name, d.dimensions)
            out.append(Observation(cw.name, dims, d.value, cw.unit, kind))
        return out

    def _capped(self, metric: str, dims: Dimensions) -> Dimensions:
        seen = self._seen.setdefault(metric, set())
        if dims in seen:
            return dims
        if len(seen) < self._cap:
            seen.add(dims)
            return dims
        self.overflowed += 1
        return tuple((name, OVERFLOW) for name, _ in dims)
