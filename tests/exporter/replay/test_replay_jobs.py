"""``replay --jobs N`` gives byte for byte what one process gives: final values, samples in time,
self-metrics, caps and ``__overflow__``, damage reports and exit codes."""

from __future__ import annotations

import gzip
import io
import multiprocessing
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from log_exporter.cli import main
from log_exporter.pipeline import Pipeline
from log_exporter.prometheus.backfill import SpillingWriter
from log_exporter.prometheus.collector import StoreCollector, families
from log_exporter.replay import parallel
from log_exporter.replay.command import ReplayOptions, run, summary
from log_exporter.replay.engine import replay_final, replay_steps
from log_exporter.replay.parallel import replay_parallel
from log_exporter.replay.partial import unsupported
from log_exporter.sources.files import open_sources
from log_exporter.spec import Spec, compile_spec, load_default_spec, load_spec
from log_exporter.store import InfoState, Store
from tests.support.replay_model import make_items, write_rotated_set

BASE = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
WHO = (
    "a",
    "b",
    "c",
    "d",
    "e",
    "somebody-with-a-long-name",
)  # the last one over the label value bound

# Every kind of state the merge keeps, caps and floors included: a unit counter, a valued one,
# a counter fed both ways, gauges with a whole floor, without one, with a fractional floor and
# sets, gauges kept per partition (with and without a floor, resets of one partition and of
# all, the cap on partitions), a histogram and an info metric; exemplars skipped are counted.
SPEC_TEXT = """
version = 1
series_cap = {cap}
label_value_max_bytes = 16

[metrics.t_hits_total]
type = "counter"
help = "hits"
events = ["hit", "ping"]
labels = ["who"]
exemplar = "trace"

[metrics.t_amount_total]
type = "counter"
help = "amounts"
events = ["pay"]
value = "amount"
labels = ["who"]

[metrics.t_mixed_total]
type = "counter"
help = "both"
labels = ["who"]
rules = [{{ events = ["hit"] }}, {{ events = ["pay"], value = "amount" }}]

[metrics.t_active]
type = "gauge"
help = "floored at 0"
floor = 0
labels = ["who"]
rules = [{{ events = ["hit"], op = "inc" }}, {{ events = ["pay"], op = "dec" }}]

[metrics.t_open]
type = "gauge"
help = "no floor, no labels"
rules = [{{ events = ["hit"], op = "dec" }}, {{ events = ["pay", "set"], op = "inc" }}]

[metrics.t_level]
type = "gauge"
help = "sets, values and a fractional floor"
floor = -1.5
labels = ["who"]
rules = [
    {{ events = ["set"], op = "set", value = "amount" }},
    {{ events = ["pay"], op = "inc", value = "amount" }},
    {{ events = ["hit"], op = "dec" }},
]

[metrics.t_inflight]
type = "gauge"
help = "per process, floored at 0"
floor = 0
partition = "pid"
labels = ["who"]
rules = [
    {{ events = ["hit"], op = "inc" }},
    {{ events = ["pay"], op = "dec" }},
    {{ events = ["exit"], op = "reset" }},
    {{ events = ["stop"], op = "reset_all" }},
]

[metrics.t_queued]
type = "gauge"
help = "per process, no floor, no labels"
partition = "pid"
rules = [
    {{ events = ["set", "hit"], op = "dec" }},
    {{ events = ["ping", "pay"], op = "inc" }},
    {{ events = ["exit", "stop"], op = "reset" }},
    {{ events = ["start"], op = "reset_all" }},
]

[metrics.t_seconds]
type = "histogram"
help = "observed"
events = ["pay"]
value = "amount"
buckets = [0.1, 1, 10]
labels = ["who"]
exemplar = "trace"

[metrics.t_info]
type = "info"
help = "latest start"
events = ["start"]
labels = ["version"]
"""


def make_spec(cap: int) -> Spec:
    return load_spec(SPEC_TEXT.format(cap=cap), "jobs.toml")


class _Quiet:
    def update(self, done_bytes: int, events: int) -> None:
        pass


@dataclass(frozen=True)
class Knobs:
    fmt: str
    read_size: int
    stretch_bytes: int
    max_line_bytes: int
    step: float = 1.0


def render(spec: Spec, files: list[Path], jobs: int, k: Knobs) -> tuple[bytes, str]:
    """The output and the closing summary of replaying ``files`` with ``jobs`` processes."""
    sources = open_sources([str(f) for f in files], k.max_line_bytes)
    store = Store(spec.definitions)
    pipeline = Pipeline(compile_spec(spec), store)
    max_line_bytes, step = k.max_line_bytes, k.step
    knobs: dict[str, Any] = {
        "jobs": jobs,
        "read_size": k.read_size,
        "stretch_bytes": k.stretch_bytes,
    }
    if k.fmt == "prometheus":
        stats = replay_final(sources, pipeline, _Quiet(), max_line_bytes, **knobs)
        registry = CollectorRegistry()
        registry.register(StoreCollector(store))
        return generate_latest(registry), summary(stats) + repr(stats.damage)
    buf = io.BytesIO()
    with SpillingWriter() as writer:

        def emit(t: float) -> None:
            writer.add(families(store.snapshot_unlocked()), t)

        stats = replay_steps(sources, pipeline, step, emit, _Quiet(), max_line_bytes, **knobs)
        writer.write(buf)
    return buf.getvalue(), summary(stats) + repr(stats.damage) + repr(stats.last_time)


def ts(seconds: float) -> str:
    return datetime.fromtimestamp(BASE + seconds, UTC).isoformat().replace("+00:00", "Z")


AMOUNTS = st.sampled_from([0.1, 0.7, 0.001, 3, 2.5, -2.5, 1e16, "x", None, 1e-300, 0.3])
EVENTS = st.sampled_from(["hit", "pay", "set", "start", "ping", "other", "exit", "stop"])
# Exemplar values: usable, missing, not a string, too long to keep.
TRACES = st.sampled_from(["t-1", "t-2", None, 7, "t" * 200])
# Partitions: a few processes, a missing pid ("unknown") and one cut to __overflow__.
PIDS = st.sampled_from([101, 102, 103, 104, 105, None, "p" * 40])


@st.composite
def lines(draw: st.DrawFn) -> list[bytes]:
    """A log: events at mostly rising times (some late, some untimed) and imperfect lines."""
    out: list[bytes] = []
    t = 0.0
    for _ in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(["event"] * 8 + ["blank", "junk", "long", "crlf"]))
        if kind == "blank":
            out.append(b"")
        elif kind == "junk":
            out.append(b'{"event": "hit"')
        elif kind == "long":
            out.append(b'{"event":"hit","who":"' + b"x" * 150 + b'"}')
        else:
            t += draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0, -2.0]))
            event: dict[str, object] = {"event": draw(EVENTS)}
            if draw(st.integers(0, 9)):
                event["timestamp"] = ts(t)
            event["who"] = draw(st.sampled_from(WHO))
            pid = draw(PIDS)
            if pid is not None:
                event["pid"] = pid
            trace = draw(TRACES)
            if trace is not None:
                event["trace"] = trace
            amount = draw(AMOUNTS)
            if amount is not None:
                event["amount"] = amount
            event["version"] = draw(st.sampled_from(["1", "2"]))
            line = orjson.dumps(event)
            out.append(line + b"\r" if kind == "crlf" else line)
    return out


def write_files(tmp: Path, log: list[bytes], cuts: list[int], zipped: list[bool]) -> list[Path]:
    """The log cut into rotated files (oldest has the highest number), some gzipped."""
    pieces: list[list[bytes]] = []
    start = 0
    for c in [*sorted(cuts), len(log)]:
        pieces.append(log[start:c])
        start = c
    files = []
    for i, piece in enumerate(pieces):
        number = len(pieces) - 1 - i
        data = b"".join(line + b"\n" for line in piece)
        name = "t.jsonl" if number == 0 else f"t.jsonl.{number}"
        if zipped[i % len(zipped)] and number:
            path = tmp / f"{name}.gz"
            path.write_bytes(gzip.compress(data))
        else:
            path = tmp / name
            path.write_bytes(data)
        files.append(path)
    return files


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    log=lines(),
    cuts=st.lists(st.integers(0, 60), max_size=2),
    zipped=st.lists(st.booleans(), min_size=1, max_size=3),
    cap=st.sampled_from([2, 3, 1000]),
    jobs=st.integers(2, 3),
    read_size=st.sampled_from([16, 48, 64, 200]),
    stretch_reads=st.integers(1, 3),
    step=st.sampled_from([0.5, 1.0, 7.0]),
    fmt=st.sampled_from(["prometheus", "openmetrics"]),
)
def test_any_log_cut_anywhere_gives_the_output_of_one_process(
    tmp_path_factory: pytest.TempPathFactory,
    log: list[bytes],
    cuts: list[int],
    zipped: list[bool],
    cap: int,
    jobs: int,
    read_size: int,
    stretch_reads: int,
    step: float,
    fmt: str,
) -> None:
    """Random events, files, split points and job counts: output and summary byte-identical to
    one process, in both formats (caps, overflow, floors, sets, partitions and their resets,
    oversized lines included)."""
    tmp = tmp_path_factory.mktemp("jobs")
    files = write_files(tmp, log, [c for c in cuts if c <= len(log)], zipped)
    spec = make_spec(cap)
    assert unsupported(spec) is None  # else everything runs in one process and this shows nothing
    knobs = Knobs(fmt, read_size, read_size * stretch_reads, 100, step)
    assert render(spec, files, jobs, knobs) == render(spec, files, 1, knobs)


def big_log(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        event = rng.choice(["hit", "pay", "set", "start", "hit", "pay", "exit", "stop"])
        amount = rng.choice([0.1, 0.7, 3, 0.001])
        who = rng.choice(WHO[:3])
        pid = rng.choice([101, 102, 103])
        out.append(
            f'{{"event":"{event}","timestamp":"{ts(i / 10)}","who":"{who}",'
            f'"amount":{amount},"version":"{i % 3}","pid":{pid}}}\n'.encode()
        )
    return b"".join(out)


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_stretches_are_merged_not_replayed_again_when_caps_are_not_reached(
    tmp_path: Path, fmt: str
) -> None:
    """Under the caps every stretch is merged from its worker (none replayed by the parent), and
    the result is still byte-identical: the merge itself is exact, floats included."""
    log = tmp_path / "t.jsonl"
    log.write_bytes(big_log(3000, 1))
    spec = make_spec(1000)
    knobs = Knobs(fmt, 1024, 8192, 1000)
    assert render(spec, [log], 2, knobs) == render(spec, [log], 1, knobs)

    sources = open_sources([str(log)])
    store = Store(spec.definitions)
    outcome = replay_parallel(
        sources, Pipeline(compile_spec(spec), store), 2, _Quiet(), read_size=1024,
        stretch_bytes=8192,
    )  # fmt: skip
    assert outcome.serial == 0
    assert outcome.lines == 3000


def overflow_log() -> bytes:
    """Stretches of 4 KiB: the first admits a and b, the second sends c and d to overflow,
    interleaved, with amounts whose float sum depends on their order (1e16 + 1 rounds)."""
    first = [("hit", "a", 1), ("pay", "b", 1)]
    second = [
        ("pay", "c", 1),
        ("hit", "c", 1),
        ("pay", "d", 1e16),
        ("pay", "c", 1),
        ("hit", "c", 1),
    ]
    # Only a counter of whole counts goes over the cap here: merged, not replayed again.
    third = [("ping", "e", 0), ("ping", "f", 0), ("ping", "e", 0)]
    out = []
    for part in (first, second, third):
        chunk = b"".join(
            f'{{"event":"{e}","timestamp":"{ts(i)}","who":"{w}","amount":{a}}}\n'.encode()
            for i, (e, w, a) in enumerate(part)
        )
        out.append(chunk + b" " * (4096 - len(chunk) - 1) + b"\n")  # a blank line pads it
    return b"".join(out)


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_overflow_of_interleaved_keys_equals_one_process(tmp_path: Path, fmt: str) -> None:
    """New series past the cap, interleaved in one stretch: the overflow series gets the events in
    log order (float sums included) and the overflow counter counts every redirected event."""
    log = tmp_path / "t.jsonl"
    log.write_bytes(overflow_log())
    spec = make_spec(2)
    knobs = Knobs(fmt, 1024, 4096, 8192)
    one = render(spec, [log], 1, knobs)
    assert b'who="__overflow__"} 1e+16' in one[0]
    assert render(spec, [log], 2, knobs) == one


def test_built_in_spec_is_replayed_in_parallel() -> None:
    """SustainBot's own spec has nothing the merge cannot reproduce, so --jobs applies to it."""
    assert unsupported(load_default_spec()) is None


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_sustainbot_logs_are_merged_from_workers_not_replayed_in_one_process(
    tmp_path: Path, fmt: str
) -> None:
    """A rotated SustainBot log set (requests in flight per pid, workers starting and exiting, the
    service restarting) replays with --jobs 2 byte-identically to --jobs 1, every stretch merged."""
    items = make_items(random.Random(7), 3000, BASE, junk=0.01, untimed=0.02)
    files = write_rotated_set(tmp_path, items)
    spec = load_default_spec()
    knobs = Knobs(fmt, 4096, 16384, 8192, step=60.0)
    one = render(spec, files, 1, knobs)
    assert b"sustainbot_active_requests" in one[0]
    assert render(spec, files, 2, knobs) == one

    store = Store(spec.definitions)
    outcome = replay_parallel(
        open_sources([str(f) for f in files]), Pipeline(compile_spec(spec), store), 2,
        _Quiet(), read_size=4096, stretch_bytes=16384,
    )  # fmt: skip
    assert outcome.serial == 0


def partition_cap_log() -> bytes:
    """Two 4 KiB stretches: the first fills the cap (2) with pids 1 and 2; the second brings
    pids 3 and 4, which share the overflow partition in log order, around a reset of pid 1."""
    first = [("hit", 1), ("hit", 2), ("hit", 2)]
    second = [("hit", 3), ("exit", 1), ("hit", 4), ("pay", 3), ("hit", 5), ("pay", 4)]
    out = []
    for part in (first, second):
        chunk = b"".join(
            f'{{"event":"{e}","timestamp":"{ts(i)}","who":"a","pid":{p}}}\n'.encode()
            for i, (e, p) in enumerate(part)
        )
        out.append(chunk + b" " * (4096 - len(chunk) - 1) + b"\n")
    return b"".join(out)


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_partitions_past_the_cap_in_a_stretch_equal_one_process(tmp_path: Path, fmt: str) -> None:
    """Partitions created past the cap within a stretch (the overflow partition, a reset freeing
    a place): that stretch is replayed in order by the parent, and the output is one process's."""
    log = tmp_path / "t.jsonl"
    log.write_bytes(partition_cap_log())
    spec = make_spec(2)
    knobs = Knobs(fmt, 1024, 4096, 8192)
    one = render(spec, [log], 1, knobs)
    assert render(spec, [log], 2, knobs) == one

    store = Store(spec.definitions)
    outcome = replay_parallel(
        open_sources([str(log)]), Pipeline(compile_spec(spec), store), 2, _Quiet(),
        read_size=1024, stretch_bytes=4096,
    )  # fmt: skip
    assert outcome.serial == 1
    inflight = store.states["t_inflight"]
    assert not isinstance(inflight, InfoState) and inflight.overflowed > 0


VALUED_PARTS = """
version = 1

[metrics.t_load]
type = "gauge"
help = "per process, valued"
partition = "pid"
rules = [
    { events = ["pay"], op = "inc", value = "amount" },
    { events = ["exit"], op = "reset" },
]
"""


def test_valued_partitioned_gauge_is_replayed_in_one_process(tmp_path: Path) -> None:
    """A partitioned gauge fed float values (whose sums round by the order partitions interleave)
    is not merged: the spec is named as unsupported and --jobs 2 still gives one process's sums."""
    spec = load_spec(VALUED_PARTS, "valued.toml")
    reason = unsupported(spec)
    assert reason is not None and "t_load" in reason and "value" in reason
    rng = random.Random(5)
    events = [
        {"event": rng.choice(["pay", "pay", "exit"]), "pid": rng.choice([1, 2, 3]),
         "amount": rng.choice([0.1, 0.7, 1e16, 3.3]), "timestamp": ts(i)}
        for i in range(3000)
    ]  # fmt: skip
    log = tmp_path / "t.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    spec_file = tmp_path / "valued.toml"
    spec_file.write_text(VALUED_PARTS)
    results = []
    for jobs in (1, 2):
        out, err = tmp_path / f"out{jobs}.txt", io.StringIO()
        options = ReplayOptions(
            files=[str(log)], spec=str(spec_file), output=str(out), jobs=jobs, quiet=True
        )
        assert run(options, stderr=err) == 0
        results.append(out.read_bytes())
        if jobs == 2:
            assert "one process, not 2: metric t_load" in err.getvalue()
    assert results[1] == results[0]


def damaged_set(tmp: Path) -> list[Path]:
    """A rotated set given shuffled: a truncated .gz, a corrupt .gz, a multi-member .gz, plain."""
    events = big_log(4000, 2).splitlines(keepends=True)
    parts = [b"".join(events[i * 800 : (i + 1) * 800]) for i in range(5)]
    p4 = tmp / "t.jsonl.4.gz"
    p4.write_bytes(gzip.compress(parts[0])[:-300])  # truncated copy
    p3 = tmp / "t.jsonl.3.gz"
    bad = bytearray(gzip.compress(parts[1], compresslevel=1))
    bad[len(bad) // 2] ^= 0xFF
    p3.write_bytes(bytes(bad))
    p2 = tmp / "t.jsonl.2.gz"
    half = len(parts[2]) // 2
    p2.write_bytes(gzip.compress(parts[2][:half]) + gzip.compress(parts[2][half:]))
    p1 = tmp / "t.jsonl.1"
    p1.write_bytes(parts[3])
    p0 = tmp / "t.jsonl"
    p0.write_bytes(parts[4])
    files = [p2, p0, p4, p1, p3]
    return files


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_damaged_rotated_set_gives_the_same_report_and_exit_code(
    tmp_path: Path, fmt: Literal["prometheus", "openmetrics"]
) -> None:
    """A rotated, gzipped, shuffled set with damaged members: --jobs 2 writes the same output,
    prints the same damage report and summary, and exits with the same code as --jobs 1."""
    files = damaged_set(tmp_path)
    results = []
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}.txt"
        err = io.StringIO()
        options = ReplayOptions(
            files=[str(f) for f in files],
            format=fmt,
            step=5.0,
            output=str(out),
            jobs=jobs,
        )
        code = run(options, stderr=err)
        text = out.read_bytes()
        results.append((code, err.getvalue(), text))
    assert results[0][0] == 1
    assert "corrupt gzip stream" in results[0][1] and "truncated" in results[0][1]
    assert results[1] == results[0]


def test_jobs_with_cloudwatch_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CloudWatch takes each stream in order: replay --cloudwatch --jobs 2 is refused, exit 2."""
    log = tmp_path / "t.jsonl"
    log.write_bytes(big_log(10, 3))
    code = main(["replay", "--quiet", "--jobs", "2", "--cloudwatch", str(log)])
    assert code == 2
    assert "--cloudwatch replays in one process" in capsys.readouterr().err


def test_jobs_below_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--jobs 0 is a usage error, found before anything is read (exit 2)."""
    log = tmp_path / "t.jsonl"
    log.write_bytes(big_log(10, 3))
    assert main(["replay", "--quiet", "--jobs", "0", str(log)]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_workers_started_by_forkserver_give_the_same_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With other threads alive fork is unsafe and forkserver starts the workers (the spec goes
    to them pickled): the output is still that of one process."""
    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("forkserver"))
    log = tmp_path / "t.jsonl"
    log.write_bytes(big_log(2000, 4))
    spec = make_spec(1000)
    knobs = Knobs("openmetrics", 1024, 8192, 1000)
    assert render(spec, [log], 2, knobs) == render(spec, [log], 1, knobs)


# The spec above reading another log's shape: every field under "m", the event type in
# "m.kind", Unix milliseconds in "t", amounts scaled, and a metric without events whose match
# uses operators. The partial target shares the generator, so the merge stays exact.
NESTED_SPEC_TEXT = (
    SPEC_TEXT.replace('labels = ["who"]', 'labels = [{{ name = "who", field = "m.who" }}]')
    .replace('labels = ["version"]', 'labels = [{{ name = "version", field = "m.version" }}]')
    .replace('value = "amount"', 'value = {{ field = "m.amount", scale = 0.001 }}')
    .replace('exemplar = "trace"', 'exemplar = {{ name = "trace", field = "m.trace" }}')
    .replace('partition = "pid"', 'partition = "m.pid"')
    + """
[metrics.t_any_total]
type = "counter"
help = "every event of pid 102 or later, who a or b"
labels = [{{ name = "who", field = "m.who" }}]
match = {{ "m.pid" = {{ ge = 102 }}, "m.who" = {{ not = "c", prefix = ["a", "b"] }} }}

[input]
event_field = "m.kind"
timestamp = {{ field = "t", format = "unix_ms" }}
"""
)


def nested_log(n: int, seed: int) -> bytes:
    """``big_log``'s events with every field under "m" and the time in Unix milliseconds."""
    out = []
    for raw in big_log(n, seed).splitlines():
        event = orjson.loads(raw)
        stamp = datetime.fromisoformat(event.pop("timestamp")).timestamp()
        event["kind"] = event.pop("event")
        out.append(orjson.dumps({"t": round(stamp * 1000), "m": event}) + b"\n")
    return b"".join(out)


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_a_spec_reading_nested_fields_and_unix_times_is_replayed_exactly_in_parallel(
    tmp_path: Path, fmt: str
) -> None:
    """Field paths, an ``[input]`` event field and Unix-millisecond times, scaled values and a
    metric without ``events`` matched by operators give with 2 jobs what one process gives."""
    log = tmp_path / "n.jsonl"
    log.write_bytes(nested_log(3000, 2))
    spec = load_spec(NESTED_SPEC_TEXT.format(cap=1000), "nested.toml")
    assert unsupported(spec) is None
    knobs = Knobs(fmt, 1024, 8192, 1000)
    one = render(spec, [log], 1, knobs)
    assert render(spec, [log], 2, knobs) == one
    assert b't_any_total{who="a"}' in one[0] and b"t_seconds_sum" in one[0]
