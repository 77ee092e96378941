"""Embedded Metric Format: datums as JSON log documents CloudWatch turns into metrics.

Follows the EMF specification: a root ``_aws`` member with ``Timestamp`` (ms) and
``CloudWatchMetrics`` directives (Namespace, Dimensions as lists of names, Metrics with Name and
Unit); dimension values and metric values are root members. A metric value is a number or an
array of at most 100 numbers. EMF has no counts, so a distribution's values are repeated as often
as they were observed, 100 per document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any, Final

from log_exporter.cloudwatch.metrics_agg import Datum

MAX_VALUES_PER_DOCUMENT: Final = 100


def documents(datums: Iterable[Datum], namespace: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(timestamp ms, EMF document) for every datum, split to <= 100 values per document."""
    for _, ts_ms, doc in parts(datums, namespace):
        yield ts_ms, doc


def parts(datums: Iterable[Datum], namespace: str) -> Iterator[tuple[Datum, int, dict[str, Any]]]:
    """As :func:`documents`, each document with the part of its datum it carries.

    The parts of one datum add up to it, so the shipper can keep exactly what a crash left
    unacknowledged when a distribution's documents span two PutLogEvents batches.
    """
    for datum in datums:
        ts_ms = datum.timestamp * 1000
        if datum.value is not None:
            yield datum, ts_ms, _document(datum, namespace, ts_ms, datum.value)
            continue
        expanded: list[float] = []
        for value, count in zip(datum.values, datum.counts, strict=True):
            expanded.extend([value] * int(count))
        for start in range(0, len(expanded), MAX_VALUES_PER_DOCUMENT):
            chunk = expanded[start : start + MAX_VALUES_PER_DOCUMENT]
            tally: dict[float, int] = {}
            for value in chunk:
                tally[value] = tally.get(value, 0) + 1
            part = replace(
                datum,
                values=tuple(tally),
                counts=tuple(float(c) for c in tally.values()),
            )
            yield part, ts_ms, _document(datum, namespace, ts_ms, chunk)


def _document(
    datum: Datum, namespace: str, ts_ms: int, value: float | list[float]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": ts_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [[name for name, _ in datum.dimensions]],
                    "Metrics": [{"Name": datum.metric, "Unit": datum.unit}],
                }
            ],
        }
    }
    for name, dim_value in datum.dimensions:
        doc[name] = dim_value
    doc[datum.metric] = value
    return doc


def encode(document: dict[str, Any]) -> str:
    """One document as a compact JSON log message (finite numbers only, by construction)."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False)
