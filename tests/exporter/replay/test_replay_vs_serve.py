"""The same log through serve's path (the real Tailer, Pipeline.feed) and through replay: equal."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.collector import StoreCollector
from log_exporter.replay.engine import replay_final
from log_exporter.sources.files import open_sources
from log_exporter.sources.tail import Tailer
from log_exporter.spec import compile_spec, load_default_spec
from log_exporter.store import Store
from tests.support.replay_model import Item, make_items, write_rotated_set
from tests.support.waits import wait_for


class _Silent:
    def update(self, done_bytes: int, events: int) -> None:
        pass


def _exposition(store: Store) -> bytes:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, build_info=False))
    return generate_latest(registry)


def _new_pipeline() -> tuple[Pipeline, Store]:
    spec = load_default_spec()
    store = Store(spec.definitions)
    return Pipeline(compile_spec(spec), store), store


def through_serve(live: Path, read_size: int) -> bytes:
    """Tail ``live`` with the real Tailer and feed each batch, as serve does, until caught up."""
    pipeline, store = _new_pipeline()
    tailer = Tailer(live, read_size=read_size, max_batch_bytes=max(read_size * 3, 64))
    size = live.stat().st_size

    def caught_up() -> bool:
        batch = tailer.poll()
        pipeline.feed(batch)
        return tailer.caught_up and store.bytes_read >= size and not batch.lines

    try:
        wait_for(caught_up, "the tailer to reach the end of the file", interval=0)
    finally:
        tailer.close()
    return _exposition(store)


def through_replay(paths: list[Path]) -> bytes:
    pipeline, store = _new_pipeline()
    sources = open_sources([str(p) for p in paths])
    stats = replay_final(sources, pipeline, _Silent())
    assert not stats.damage
    return _exposition(store)


# Not the gzip magic: replay reads a file that starts with it as gzip (by content, not by name),
# so a log whose first junk line began with it would be a damaged gzip there, not a malformed line.
junk_lines = st.binary(max_size=40).filter(
    lambda b: b"\n" not in b and b"{" not in b and not b.startswith(b"\x1f\x8b")
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
    parts=st.integers(1, 4),
    untimed=st.sampled_from([0.0, 0.1]),
    junk=st.lists(junk_lines, max_size=8),
    read_size=st.sampled_from([7, 100, 4096, 1 << 20]),
    order=st.randoms(use_true_random=False),
)
def test_serve_and_replay_give_identical_final_values(
    seed: int,
    n: int,
    parts: int,
    untimed: float,
    junk: list[bytes],
    read_size: int,
    order: random.Random,
) -> None:
    """Any generated log (events, junk lines, untimed events) gives byte-identical final metrics
    through the live tail path and through replay of it as a shuffled gzip rotated set."""
    rng = random.Random(seed)
    items = make_items(rng, n, 1_764_000_000.0, junk=0.05, untimed=untimed)
    for raw in junk:
        items.insert(rng.randrange(len(items) + 1), Item(raw, None, None))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        live = directory / "live" / "sustainbot.jsonl"
        live.parent.mkdir()
        live.write_bytes(b"".join(it.raw + b"\n" for it in items))
        rotated = directory / "rotated"
        rotated.mkdir()
        paths = write_rotated_set(rotated, items, parts=parts)
        order.shuffle(paths)
        assert through_serve(live, read_size) == through_replay(paths)
