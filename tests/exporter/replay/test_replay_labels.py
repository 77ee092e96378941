"""``replay --file PATTERN --label NAME=VALUE`` and ``trace --file``: file sets by captured labels,
each ordered on its own, every series labelled, exact with ``--jobs``, conflicts refused."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from log_exporter.cli import main
from log_exporter.limits import EXIT_CONFIG
from log_exporter.prometheus.backfill import SpillingWriter
from log_exporter.replay.command import ReplayOptions, run, run_shipping
from log_exporter.replay.trace import run as trace
from log_exporter.spec import Spec
from tests.support.event_history import Generated, write_pod_logs
from tests.support.processes import binary
from tests.support.processes import run as run_process

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
# Pod -> (seed of its traffic, the names of its generations, oldest first): the first pod's
# rotated by logrotate, the second's by the kubelet.
PODS = {
    "sustainbot-0": (7, ["0.log.2.gz", "0.log.1", "0.log"]),
    "sustainbot-1": (11, ["0.log.20260101-010000.gz", "0.log.20260101-020000", "0.log"]),
}
DETECTIONS = "sustainbot_prescriptive_language_detections"


def _pods_tree(root: Path) -> dict[str, tuple[Generated, int]]:
    """A /var/log/pods-shaped tree, each pod's history in three generations (one gzipped);
    each pod's generated traffic and its number of lines."""
    return {
        pod: write_pod_logs(root / f"staging_{pod}_{seed:08x}-uid" / "app", START, names, seed=seed)
        for pod, (seed, names) in PODS.items()
    }


def _replay(*args: str, stdout: io.BytesIO | None = None) -> tuple[int, str, str]:
    files = [a for a in args if not a.startswith("-") and "=" not in a]
    patterns = [a.removeprefix("--file=") for a in args if a.startswith("--file=")]
    labels = [a.removeprefix("--label=") for a in args if a.startswith("--label=")]
    jobs = next((int(a.removeprefix("--jobs=")) for a in args if a.startswith("--jobs=")), 1)
    om = "--om" in args
    out, err = stdout or io.BytesIO(), io.StringIO()
    options = ReplayOptions(
        files=files,
        patterns=patterns,
        labels=labels,
        jobs=jobs,
        quiet=True,
        format="openmetrics" if om else "prometheus",
        step=60.0,
    )
    code = run(options, stdout=out, stderr=err)
    return code, out.getvalue().decode(), err.getvalue()


def _by_pod(text: str, sample: str) -> Counter[str]:
    """The sum of ``sample``'s series per pod label."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and "pod" in s.labels:
                counts[s.labels["pod"]] += int(s.value)
    return counts


@pytest.fixture
def tree(tmp_path: Path) -> tuple[str, dict[str, tuple[Generated, int]]]:
    pods = _pods_tree(tmp_path / "pods")
    return str(tmp_path / "pods" / "{namespace}_{pod}_{_}" / "app" / "*.log"), pods


def test_pods_history_counted_per_pod_exactly_with_and_without_jobs(
    tree: tuple[str, dict[str, tuple[Generated, int]]],
) -> None:
    """Each pod's rotated and gzipped generations are replayed as its own log, every series
    carrying its pod and namespace, and --jobs 2 writes the very bytes of --jobs 1."""
    pattern, pods = tree
    code, one, err = _replay(f"--file={pattern}", "--label=job=sustainbot", "--jobs=1")
    assert code == 0, err
    code, two, err = _replay(f"--file={pattern}", "--label=job=sustainbot", "--jobs=2")
    assert code == 0, err
    assert one == two
    assert _by_pod(one, "log_exporter_lines_total") == {p: n for p, (_, n) in pods.items()}
    assert _by_pod(one, f"{DETECTIONS}_total") == {
        p: len(g.detections) for p, (g, _) in pods.items()
    }
    # One family each, every series (build info and self-metrics too) in namespace and job.
    types = [line for line in one.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    samples = [line for line in one.splitlines() if not line.startswith("#")]
    assert all('job="sustainbot"' in line for line in samples)
    assert all('namespace="staging"' in line for line in samples if "build_info" not in line)


def test_labelled_set_holds_what_its_files_replayed_alone_hold(
    tree: tuple[str, dict[str, tuple[Generated, int]]], tmp_path: Path
) -> None:
    """A pod's series are the series a replay of its files alone gives, with its labels added."""
    pattern, _ = tree
    code, together, err = _replay(f"--file={pattern}")
    assert code == 0, err
    pod_dir = next((tmp_path / "pods").glob("staging_sustainbot-1_*")) / "app"
    code, alone, err = _replay(*(str(p) for p in sorted(pod_dir.iterdir())))
    assert code == 0, err

    def values(text: str, pod: str | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "log_exporter_build_info":
                    continue  # the process's, not a pod's: once, without pod
                if pod is not None and s.labels.pop("pod", None) != pod:
                    continue
                s.labels.pop("namespace", None)
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    assert values(together, "sustainbot-1") == values(alone, None)


def test_a_pattern_without_the_rotated_names_still_reads_them_once(
    tree: tuple[str, dict[str, tuple[Generated, int]]],
) -> None:
    """``*.log`` reads each log's rotated generations; ``*.log*`` matching them too counts no
    line twice."""
    pattern, pods = tree
    code, narrow, _ = _replay(f"--file={pattern}")
    code2, wide, _ = _replay(f"--file={pattern}*")
    assert code == code2 == 0
    assert narrow == wide
    assert _by_pod(narrow, "log_exporter_lines_total") == {p: n for p, (_, n) in pods.items()}


def test_backfill_of_many_sets_is_one_family_each_that_promtool_accepts(
    tree: tuple[str, dict[str, tuple[Generated, int]]], tmp_path: Path
) -> None:
    """The OpenMetrics backfill of two pods writes each family once, the same with --jobs 2,
    and real promtool builds blocks from it."""
    promtool = binary("promtool")
    pattern, _ = tree
    code, one, err = _replay(f"--file={pattern}", "--label=job=sb", "--om", "--jobs=1")
    assert code == 0, err
    code, two, err = _replay(f"--file={pattern}", "--label=job=sb", "--om", "--jobs=2")
    assert code == 0, err
    assert one == two
    types = [line for line in one.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    pods = {line.split('pod="')[1].split('"')[0] for line in one.splitlines() if 'pod="' in line}
    assert pods == set(PODS)
    path = tmp_path / "backfill.om"
    path.write_text(one)
    created = run_process(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(tmp_path / "d")]
    )
    assert created.returncode == 0, created.stdout + created.stderr


@pytest.mark.parametrize(
    ("label", "named"),
    [
        ("pod=x", "--file "),  # a capture of the pattern
        ("result=x", "log_exporter_lines_total"),  # a self-metric's label
        ("le=x", "sustainbot_governed_workflow_duration_seconds"),  # a histogram's bucket
        ("drag_mode=x", "sustainbot_aim_requests_total"),  # a spec metric's label
    ],
)
def test_a_label_given_twice_is_refused_at_start_naming_both(
    tree: tuple[str, dict[str, tuple[Generated, int]]], label: str, named: str
) -> None:
    """A --label whose name a capture or a metric already gives stops the replay before any
    output, naming the flag and the other source."""
    pattern, _ = tree
    code, out, err = _replay(f"--file={pattern}", f"--label={label}")
    assert code == EXIT_CONFIG
    assert out == ""
    assert f"--label {label}" in err and named in err, err


def test_a_pattern_matching_nothing_is_refused_naming_it(tmp_path: Path) -> None:
    """A --file pattern that matches no file leaves replay nothing to read: exit 2 naming it."""
    pattern = str(tmp_path / "{pod}" / "*.log")
    code, _, err = _replay(f"--file={pattern}")
    assert code == EXIT_CONFIG
    assert f"--file {pattern}: no file matches" in err
    assert main(["trace", "x", "--file", pattern]) == 2


def test_a_file_two_patterns_label_differently_is_refused(tmp_path: Path) -> None:
    """A file that two patterns would replay under different labels would count twice: refused."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "app.log").write_bytes(b"{}\n")
    first = str(tmp_path / "{dir}" / "app.log")
    second = str(tmp_path / "{where}" / "*.log")
    code, _, err = _replay(f"--file={first}", f"--file={second}")
    assert code == EXIT_CONFIG
    assert "counted twice" in err and first in err and second in err


def test_cli_takes_repeated_file_and_label_flags(
    tree: tuple[str, dict[str, tuple[Generated, int]]],
    tmp_path: Path,
) -> None:
    """The documented spelling works: --file and --label repeated, with a positional file."""
    pattern, pods = tree
    extra = tmp_path / "extra.log"
    extra.write_bytes(b"not json\n")
    out = tmp_path / "out.prom"
    argv = ["replay", "--quiet", "--file", pattern, "--label", "job=sb", "--label", "env=x"]
    assert main([*argv, "-o", str(out), str(extra)]) == 0
    text = out.read_text()
    assert 'log_exporter_lines_total{env="x",job="sb",result="malformed"} 1.0' in text
    assert _by_pod(text, "log_exporter_lines_total") == {p: n for p, (_, n) in pods.items()}


def test_trace_over_pods_prints_each_event_after_its_pods_labels(
    tree: tuple[str, dict[str, tuple[Generated, int]]],
) -> None:
    """trace --file finds the request's events in every pod's history, each line after its
    set's labels and a tab, the line itself as the file holds it."""
    pattern, _ = tree
    trace_id = f"{5:032x}"  # the fifth event of both pods' traffic
    out, err = io.BytesIO(), io.StringIO()
    assert trace(trace_id, [], patterns=[pattern], stdout=out, stderr=err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert [line.split(b"\t")[0] for line in lines] == [
        b'{namespace="staging",pod="sustainbot-0"}',
        b'{namespace="staging",pod="sustainbot-1"}',
    ]
    assert all(trace_id.encode() in line.split(b"\t", 1)[1] for line in lines)


def test_a_set_without_any_timestamp_exits_1_naming_it(
    tree: tuple[str, dict[str, tuple[Generated, int]]], tmp_path: Path
) -> None:
    """In a backfill, a pod whose lines carry no usable timestamp gives no samples: the others
    are written, and the exit status 1 and a message name the pod."""
    pattern, _ = tree
    untimed = tmp_path / "pods" / "staging_sustainbot-9_x" / "app"
    untimed.mkdir(parents=True)
    (untimed / "0.log").write_bytes(b'{"event": "aim.request"}\n' * 3)
    code, out, err = _replay(f"--file={pattern}", "--om")
    assert code == 1
    assert 'the files of {namespace="staging",pod="sustainbot-9"}: no event has a usable' in err
    assert 'pod="sustainbot-0"' in out and 'pod="sustainbot-9"' not in out


def test_cloudwatch_replay_refuses_patterns_and_labels(tmp_path: Path) -> None:
    """replay --cloudwatch ships files named alone: --file and --label stop it before shipping."""
    shipped: list[Spec] = []

    def ship(spec: Spec) -> int:
        shipped.append(spec)
        return 0

    options = ReplayOptions(files=[], patterns=[str(tmp_path / "*.log")], labels=["job=x"])
    err = io.StringIO()
    assert run_shipping(options, ship, stderr=err) == EXIT_CONFIG
    assert shipped == []
    assert "--cloudwatch ships the files named alone" in err.getvalue()


def test_trace_of_a_pattern_without_captures_prints_lines_as_they_are(
    tree: tuple[str, dict[str, tuple[Generated, int]]], tmp_path: Path
) -> None:
    """Without captures there is one unlabelled set: lines are printed with no prefix."""
    directory = next((tmp_path / "pods").glob("staging_sustainbot-0_*")) / "app"
    out, err = io.BytesIO(), io.StringIO()
    code = trace(f"{5:032x}", [], patterns=[str(directory / "*.log")], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert out.getvalue().startswith(b'{"timestamp"')


def test_backfill_writer_takes_each_logs_snapshots_in_its_own_time() -> None:
    """Snapshots of two logs, each in increasing time, make one family holding both logs'
    series, each series' points in time order; time going back within one log is refused."""
    family = GaugeMetricFamily("g", "a gauge", value=1.0)
    out = io.BytesIO()
    with SpillingWriter() as writer:
        writer.add([family], 10.0, (("pod", "a"),))
        writer.add([family], 20.0, (("pod", "a"),))
        writer.add([family], 5.0, (("pod", "b"),))
        with pytest.raises(ValueError, match="timestamps must increase"):
            writer.add([family], 15.0, (("pod", "a"),))
        writer.write(out)
    assert out.getvalue().decode().splitlines() == [
        "# TYPE g gauge",
        "# HELP g a gauge",
        'g{pod="a"} 1 10',
        'g{pod="a"} 1 20',
        'g{pod="b"} 1 5',
        "# EOF",
    ]
