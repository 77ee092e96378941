"""Native histogram buckets: the spec's ``native``, the buckets observations land in (resolution
halving past the limit, the zero bucket), the state file, and replay's exact merge."""

from __future__ import annotations

import json
import math
import random
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log_exporter.native import SCHEMA_MAX, SCHEMA_MIN, bounds, bucket_key, pick_schema
from log_exporter.replay.merge import Merger
from log_exporter.replay.partial import Partial, TooWide
from log_exporter.replay.target import bind_partial
from log_exporter.spec import SpecError, compile_spec, load_spec
from log_exporter.store import HistogramState, Store
from tests.support.native_reference import reference

SPEC = """
[metrics.wait_seconds]
type = "histogram"
help = "Waits."
events = ["done"]
labels = ["who"]
value = "seconds"
{extra}
"""


def spec_with(extra: str) -> Any:
    return load_spec(SPEC.format(extra=extra), "native.toml")


def native_table(factor: float, threshold: float, limit: int) -> str:
    inner = f"bucket_factor = {factor!r}, zero_threshold = {threshold!r}, max_buckets = {limit}"
    return f"native = {{ {inner} }}"


def feed(spec: Any, values: list[float], who: list[str] | None = None) -> Store:
    store = Store(spec.definitions)
    apply = compile_spec(spec).bind(store)["done"]
    for i, v in enumerate(values):
        apply({"event": "done", "seconds": v, "who": who[i] if who else "a"})
    return store


def shown(store: Store) -> dict[tuple[str, ...], Any]:
    """The histogram's series as a snapshot shows them (with their count)."""
    (m,) = [m for m in store.snapshot().metrics if m.definition.name == "wait_seconds"]
    return m.series


def native_of(store: Store) -> dict[tuple[str, ...], tuple[int, int, dict[int, int]]]:
    state = store.states["wait_seconds"]
    assert isinstance(state, HistogramState)
    return {k: (b.schema, b.zero, dict(b.positive)) for k, b in state.native.items()}


values_strategy = st.lists(
    st.one_of(
        st.just(0.0) | st.floats(1e-300, 1e6),  # no subnormals: the reference cannot place them
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 0.25, 1024.0, 1e-300, 2.5e-300]),
        # Exactly on a boundary of the finest schema, where a wrong table or < for <= shows.
        st.builds(
            lambda i, e: math.ldexp(bounds(SCHEMA_MAX)[i], e),
            st.integers(0, 255),
            st.integers(-20, 20),
        ),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=values_strategy,
    factor=st.one_of(st.floats(1.0001, 100.0), st.sampled_from([1.1, 2.0, 1.00271, 65536.0])),
    threshold=st.sampled_from([0.0, 2.938735877055719e-39, 0.001, 0.5]),
    limit=st.integers(1, 12),
)
def test_buckets_equal_a_plain_reference_with_halving_and_zero_bucket(
    values: list[float], factor: float, threshold: float, limit: int
) -> None:
    """Random values, factors, zero thresholds and bucket limits: each series' native buckets are
    what a plain reference computes (the schema reached by halving, the zero bucket, counts)."""
    spec = spec_with(native_table(factor, threshold, limit))
    store = feed(spec, values)
    schema = pick_schema(factor)
    expected = reference(values, schema, threshold, limit)
    got = native_of(store).get(("a",), (schema, 0, {}))
    assert got == expected
    assert sum(got[2].values()) + got[1] == len(values)


# Values on a bound of the finest schema (a bound of every coarser one too) and one step either
# side, each twice, so the second lands in a bucket that exists: the generated code's guess from
# the logarithm, off by one there, must be caught by the table every time.
near_bounds_strategy = st.lists(
    st.builds(
        lambda i, e, step: (
            math.nextafter(math.ldexp(bounds(SCHEMA_MAX)[i], e), math.inf * step if step else 0.0)
            if step
            else math.ldexp(bounds(SCHEMA_MAX)[i], e)
        ),
        st.integers(0, 255),
        st.integers(-40, 40),
        st.sampled_from([-1, 0, 1]),
    ),
    max_size=40,
).map(lambda vs: [v for v in vs for _ in range(2)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=near_bounds_strategy,
    factor=st.sampled_from([1.00271, 1.01, 1.1, 1.5, 2.0, 16.0, 65536.0]),
    threshold=st.sampled_from([0.0, 2.938735877055719e-39, 0.001]),
)
def test_values_next_to_a_bound_land_in_the_reference_bucket_at_the_spec_schema(
    values: list[float], factor: float, threshold: float
) -> None:
    """Values on a bucket bound or one step beside it, under a bucket limit above their number (so
    the series stays at the spec's schema, where the fast placement applies), counted as the
    reference counts them."""
    store = feed(spec_with(native_table(factor, threshold, 10_000)), values)
    schema = pick_schema(factor)
    expected = reference(values, schema, threshold, 10_000)
    assert native_of(store).get(("a",), (schema, 0, {})) == expected


def test_schema_is_the_coarsest_whose_growth_stays_within_the_factor() -> None:
    """The schema picked for a factor grows its buckets by at most the factor, and the next
    coarser schema would exceed it (clamped to -4..8), as client_golang picks it."""
    for factor in [1.001, 1.00271, 1.01, 1.05, 1.1, 1.5, 2.0, 3.0, 16.0, 1e9]:
        s = pick_schema(factor)
        assert SCHEMA_MIN <= s <= SCHEMA_MAX
        if s < SCHEMA_MAX:
            assert 2 ** (2.0**-s) <= factor
        if s > SCHEMA_MIN:
            assert 2 ** (2.0 ** -(s - 1)) > factor
    assert pick_schema(1.1) == 3
    assert pick_schema(2.0) == 0


def test_native_true_takes_client_golang_defaults_and_buckets_become_optional() -> None:
    """``native = true`` gives schema 3, client_golang's zero threshold and 160 buckets; without
    ``buckets`` the classic form is the +Inf bucket alone."""
    spec = spec_with("native = true")
    d = spec.definitions[0]
    assert d.buckets == ()
    assert d.native is not None
    assert (d.native.schema, d.native.zero_threshold, d.native.max_buckets) == (
        3,
        2.938735877055719e-39,
        160,
    )
    store = feed(spec, [0.2, 3.0])
    assert shown(store)[("a",)] == [2.0, 3.2]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("native = { bucket_factor = 1.0 }", "'native.bucket_factor': must be a number above 1"),
        ("native = { bucket_factor = 'x' }", "'native.bucket_factor': must be a number above 1"),
        ("native = { zero_threshold = -1 }", "'native.zero_threshold': must be a finite number"),
        ("native = { zero_threshold = inf }", "'native.zero_threshold': must be a finite number"),
        ("native = { max_buckets = 0 }", "'native.max_buckets': must be an integer from 1"),
        ("native = { max_buckets = 1.5 }", "'native.max_buckets': must be an integer from 1"),
        ("native = { buckets = 3 }", "'native.buckets'"),
        ("native = 'yes'", "'native': must be true, false or an inline table"),
    ],
)
def test_bad_native_table_fails_naming_the_field(extra: str, message: str) -> None:
    """A bad ``native`` setting is refused at load, naming the metric and the field."""
    with pytest.raises(SpecError) as caught:
        spec_with(extra)
    assert "[metrics.wait_seconds]" in str(caught.value)
    assert message in str(caught.value)


def test_native_on_a_counter_is_refused() -> None:
    """Only a histogram takes ``native``."""
    with pytest.raises(SpecError, match="only a histogram has native buckets"):
        load_spec(
            '[metrics.a_total]\ntype = "counter"\nhelp = "h"\nevents = ["x"]\nnative = true\n',
            "c.toml",
        )


def test_histogram_without_buckets_or_native_is_still_refused() -> None:
    """A histogram with neither ``buckets`` nor ``native`` is an error, as before."""
    with pytest.raises(SpecError, match="'buckets'"):
        spec_with("")


def test_state_file_round_trip_keeps_native_buckets_exactly() -> None:
    """A dump written to JSON and restored gives every series' schema, zero count and buckets
    back unchanged (halved resolution included), beside the classic cells."""
    spec = spec_with("buckets = [0.1, 1.0]\n" + native_table(1.01, 0.001, 8))
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 3) for _ in range(500)] + [0.0, 0.0005]
    store = feed(spec, values, [rng.choice("abc") for _ in values])
    before = native_of(store)
    assert {s for s, _, _ in before.values()} != {pick_schema(1.01)}  # some halving happened
    restored = Store.load(spec.definitions, json.loads(json.dumps(store.dump())))
    assert native_of(restored) == before
    assert restored.states["wait_seconds"].series == store.states["wait_seconds"].series  # type: ignore[union-attr]


def test_state_under_a_finer_schema_is_rebuilt_exactly_at_a_coarser_one() -> None:
    """Buckets saved under a finer schema, restored into a spec with a coarser one, are what the
    coarser schema would have counted from the start; the classic values stay."""
    rng = random.Random(3)
    values = [rng.lognormvariate(0, 2) for _ in range(300)] + [0.0]
    fine = spec_with("buckets = [1.0]\n" + native_table(1.01, 0.0, 1000))
    coarse = spec_with("buckets = [1.0]\n" + native_table(1.1, 0.0, 1000))
    store = feed(fine, values)
    restored = Store.load(coarse.definitions, json.loads(json.dumps(store.dump())))
    assert native_of(restored) == native_of(feed(coarse, values))
    assert restored.states["wait_seconds"].series == store.states["wait_seconds"].series  # type: ignore[union-attr]


def test_state_of_an_earlier_release_keeps_classic_values_and_seeds_native_buckets() -> None:
    """A state file without native buckets (an earlier release, or native just turned on) keeps
    the classic values exactly; the native buckets hold the same count, each classic bucket's
    observations at its bound, so count, sum and buckets agree."""
    classic = spec_with("buckets = [0.1, 1.0]")
    store = feed(classic, [0.0, 0.05, 0.3, 0.7, 7.0, 9.0])
    dump = json.loads(json.dumps(store.dump()))
    assert "native" not in dump["metrics"]["wait_seconds"]
    both = spec_with("buckets = [0.1, 1.0]\n" + native_table(1.1, 0.0, 160))
    restored = Store.load(both.definitions, dump)
    assert restored.states["wait_seconds"].series == store.states["wait_seconds"].series  # type: ignore[union-attr]
    schema, zero, positive = native_of(restored)[("a",)]
    assert schema == 3
    assert zero + sum(positive.values()) == 6
    assert positive == {
        bucket_key(0.1, 3): 2,
        bucket_key(1.0, 3): 2,
        bucket_key(math.nextafter(1.0, 2.0), 3): 2,
    }


def test_reload_turning_native_on_keeps_classic_values() -> None:
    """A spec reload that adds ``native`` to a histogram keeps its classic values (as a reload
    keeps any metric of the same shape) and seeds its native buckets."""
    classic = spec_with("buckets = [0.1, 1.0]")
    store = feed(classic, [0.05, 0.3])
    state = store.states["wait_seconds"]
    assert isinstance(state, HistogramState)
    total = state.series[("a",)][-1]
    both = spec_with("buckets = [0.1, 1.0]\nnative = true")
    store.reconfigure(both.definitions)
    apply = compile_spec(both).bind(store)["done"]
    apply({"event": "done", "seconds": 2.0, "who": "a"})
    state = store.states["wait_seconds"]
    assert isinstance(state, HistogramState)
    assert state.series[("a",)] == [1.0, 1.0, 1.0, total + 2.0]
    assert native_of(store)[("a",)][2] == {bucket_key(0.1, 3): 1, bucket_key(1.0, 3): 1, 8: 1}


def test_native_only_count_stays_exact_through_state_file_and_reload() -> None:
    """A histogram with native buckets only shows the count of every observation, in a snapshot
    and in the state file, after a restore and more observations, and after a reload that
    changes its native settings (its count is kept in the native buckets, not twice)."""
    spec = spec_with(native_table(1.01, 0.001, 8))
    rng = random.Random(5)
    first = [rng.lognormvariate(0, 3) for _ in range(200)] + [0.0, 0.0005]
    store = feed(spec, first, [rng.choice("ab") for _ in first])
    counts = {k: cells[0] for k, cells in shown(store).items()}
    assert sum(counts.values()) == len(first)
    dump = json.loads(json.dumps(store.dump()))
    assert {tuple(k): c[0] for k, c in dump["metrics"]["wait_seconds"]["series"]} == counts
    restored = Store.load(spec.definitions, dump)
    assert shown(restored) == shown(store)
    apply = compile_spec(spec).bind(restored)["done"]
    for v in (0.0, 0.5, 5000.0):
        apply({"event": "done", "seconds": v, "who": "a"})
    assert shown(restored)[("a",)][0] == counts[("a",)] + 3
    coarser = spec_with(native_table(1.5, 0.0, 160))
    restored.reconfigure(coarser.definitions)
    assert shown(restored)[("a",)][0] == counts[("a",)] + 3
    assert shown(restored)[("b",)][0] == counts[("b",)]


def test_damaged_native_state_is_refused_as_a_whole() -> None:
    """A state file whose native buckets are not counts is refused, changing nothing."""
    spec = spec_with("native = true")
    dump = feed(spec, [1.0]).dump()
    dump["metrics"]["wait_seconds"]["native_series"][0][3][0][1] = -5
    store = feed(spec, [3.0])
    with pytest.raises(ValueError, match="native bucket count"):
        store.restore(dump)
    assert native_of(store)[("a",)][2] == {13: 1}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=values_strategy,
    who=st.lists(st.sampled_from("abc"), min_size=60, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=3),
    limit=st.integers(1, 6),
    cap=st.sampled_from([1, 2, 1000]),
)
def test_merged_partial_states_equal_one_reader(
    values: list[float], who: list[str], cuts: list[int], limit: int, cap: int
) -> None:
    """Events cut into stretches, each kept by a replay worker's partial state and merged in
    order, leave the same native buckets as one reader of all of them (halving included)."""
    spec = spec_with(f"series_cap = {cap}\n" + native_table(1.01, 0.001, limit))
    events = [{"event": "done", "seconds": v, "who": who[i]} for i, v in enumerate(values)]
    one = Store(spec.definitions)
    apply = compile_spec(spec).bind(one)["done"]
    for ev in events:
        apply(ev)
    merged = Store(spec.definitions)
    merger = Merger(spec)
    edges = [0, *sorted(c for c in cuts if c <= len(events)), len(events)]
    deltas = []
    for start, end in pairwise(edges):
        partial = Partial(spec)
        fn = bind_partial(compile_spec(spec), partial)["done"]
        try:
            for ev in events[start:end]:
                fn(ev)
        except TooWide:
            return  # the worker's bound: replayed in one process instead
        deltas.append(partial.take())
    if not merger.mergeable(merged, deltas):
        return  # replayed in one process instead: nothing merged to compare
    for d in deltas:
        merger.apply(merged, d)
    assert native_of(merged) == native_of(one)
    assert merged.states["wait_seconds"].series == one.states["wait_seconds"].series  # type: ignore[union-attr]
    assert shown(merged) == shown(one)
    assert sum(cells[0] for cells in shown(merged).values()) == len(values)
