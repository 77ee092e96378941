"""A plain reference for native histogram buckets: bucket bounds searched one by one and counts
recomputed from scratch after each halving, to check the store's incremental computation."""

from __future__ import annotations

import math

from log_exporter.native import SCHEMA_MIN, bounds

__all__ = ["reference", "reference_key", "upper_bound"]


def upper_bound(index: int, schema: int) -> float:
    """The upper bound of bucket ``index``: 2^(index / 2^schema), from the boundary table for a
    positive schema (the fractions Prometheus uses), exactly a power of two otherwise."""
    if schema <= 0:
        return math.ldexp(1.0, index << -schema)
    per = 1 << schema
    octave, step = divmod(index, per)
    if step == 0:
        return math.ldexp(1.0, octave)
    return math.ldexp(bounds(schema)[step], octave + 1)


def reference_key(v: float, schema: int) -> int:
    """The least bucket whose upper bound is at or above ``v``, found by walking up."""
    index = math.floor(math.log2(v) * 2.0**schema) - 2  # below it: the walk finds the bucket
    while upper_bound(index, schema) < v:
        index += 1
    return index


def reference(
    values: list[float], schema: int, threshold: float, limit: int
) -> tuple[int, int, dict[int, int]]:
    """client_golang's documented behaviour, computed plainly: each value that opens a bucket past
    the limit lowers the schema by one (not below -4), and the counts are those of every value so
    far at the schema reached."""
    seen: list[float] = []
    keys: set[int] = set()
    for v in values:
        seen.append(v)
        if v <= threshold:
            continue
        key = reference_key(v, schema)
        if key not in keys:
            keys.add(key)
            if len(keys) > limit and schema > SCHEMA_MIN:
                schema -= 1
                keys = {reference_key(x, schema) for x in seen if x > threshold}
    counts: dict[int, int] = {}
    for x in seen:
        if x > threshold:
            k = reference_key(x, schema)
            counts[k] = counts.get(k, 0) + 1
    return schema, sum(1 for x in seen if x <= threshold), counts
