"""``--file`` patterns with ``{name}`` captures, and ``--label`` pairs, checked at start."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from log_exporter.sources.patterns import (
    PatternError,
    check_label_names,
    parse_label,
    parse_pattern,
)

PODS = "/var/log/pods/{namespace}_{pod}_{_}/sustainbot/*.log"


def test_pod_path_gives_namespace_and_pod_not_uid() -> None:
    """A kubelet path gives the namespace and pod captures; the ``{_}`` uid is matched, not kept."""
    pattern = parse_pattern(PODS)
    assert pattern.labels == ("namespace", "pod")
    path = "/var/log/pods/shop_sustainbot-7d9c-x2_0f3c-11aa/sustainbot/0.log"
    assert pattern.match(path) == ("shop", "sustainbot-7d9c-x2")
    assert pattern.glob == "/var/log/pods/*_*_*/sustainbot/*.log"


def test_capture_never_crosses_a_directory() -> None:
    """``{name}`` matches within one path segment, as ``*`` does."""
    pattern = parse_pattern("/logs/{app}/app.log")
    assert pattern.match("/logs/a/b/app.log") is None
    assert pattern.match("/logs/a/app.log") == ("a",)


def test_other_container_in_the_pod_is_not_matched() -> None:
    """A file of another container directory of the same pod is not the pattern's."""
    pattern = parse_pattern(PODS)
    assert pattern.match("/var/log/pods/shop_sb-1_u/istio-proxy/0.log") is None


def test_expand_lists_matching_regular_files_sorted(tmp_path: Path) -> None:
    """Expanding finds the files that exist now, in order, and no directory."""
    for pod in ("b", "a"):
        d = tmp_path / f"ns_{pod}_uid" / "app"
        d.mkdir(parents=True)
        (d / "0.log").write_text("")
        (d / "1.log").mkdir()  # a directory named like a log is no file to read
    (tmp_path / "ns_c_uid").mkdir()
    pattern = parse_pattern(str(tmp_path / "{namespace}_{pod}_{_}" / "app" / "*.log"))
    assert pattern.expand() == [
        str(tmp_path / "ns_a_uid/app/0.log"),
        str(tmp_path / "ns_b_uid/app/0.log"),
    ]


def test_expand_of_nothing_is_empty_not_an_error(tmp_path: Path) -> None:
    """A pattern whose directory does not exist yet matches nothing, without an error."""
    assert parse_pattern(str(tmp_path / "later" / "{pod}.log")).expand() == []


def test_plain_path_is_literal() -> None:
    """A path without glob characters or captures is the one-file exporter's ``--file``."""
    assert parse_pattern("./logs/sustainbot.jsonl").literal
    assert not parse_pattern("./logs/*.jsonl").literal


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/logs/{pod", "without its"),
        ("/logs/pod}", "without its"),
        ("/logs/{9pod}.log", "not a valid label name"),
        ("/logs/{__name__}.log", "not a valid label name"),
        ("/logs/{pod}_{pod}.log", "captured twice"),
        ("/logs/[ab.log", "without its"),
        ("", "empty"),
    ],
)
def test_unreadable_pattern_is_refused_naming_it(text: str, says: str) -> None:
    """A pattern that cannot be read fails at start with the flag and what is wrong."""
    with pytest.raises(PatternError, match="--file") as caught:
        parse_pattern(text)
    assert says in str(caught.value)


@pytest.mark.parametrize("item", ["job", "9x=1", "__x=1", "job="])
def test_bad_label_is_refused_naming_it(item: str) -> None:
    """A ``--label`` that is not NAME=VALUE with a valid name and a value is refused."""
    with pytest.raises(PatternError, match=f"--label {item}"):
        parse_label(item)


def test_label_value_may_hold_equals_sign() -> None:
    """Only the first ``=`` separates the name; the value keeps the rest."""
    assert parse_label("selector=a=b") == ("selector", "a=b")


def test_label_and_capture_of_one_name_are_refused_naming_both() -> None:
    """A constant label that a pattern also captures has two sources: both are named."""
    with pytest.raises(PatternError) as caught:
        check_label_names([("pod", "x")], [parse_pattern(PODS)], {})
    assert "--label pod=x" in str(caught.value)
    assert PODS in str(caught.value)


def test_label_given_twice_is_refused() -> None:
    """The same ``--label`` name twice is refused, naming both."""
    with pytest.raises(PatternError, match=r"job=a.*job=b"):
        check_label_names([("job", "a"), ("job", "b")], [], {})


def test_label_a_metric_already_has_is_refused_naming_the_metric() -> None:
    """A label name that a metric's series already carry is refused, naming the metric."""
    with pytest.raises(PatternError, match="log_exporter_lines_total"):
        check_label_names([("result", "x")], [], {"log_exporter_lines_total": ("result",)})


def test_two_patterns_may_capture_the_same_name() -> None:
    """Two ``--file`` patterns each capturing ``pod`` is no conflict: a file takes its own."""
    a, b = parse_pattern("/a/{pod}.log"), parse_pattern("/b/{pod}.log")
    assert check_label_names([("job", "sb")], [a, b], {"m": ("le",)}) == {"job": "sb"}


_SEGMENT = st.text(alphabet="abcxyz-.0", min_size=1, max_size=6)


@given(st.lists(_SEGMENT, min_size=1, max_size=3), st.lists(_SEGMENT, min_size=1, max_size=3))
def test_capture_pattern_matches_what_its_glob_matches(parts: list[str], names: list[str]) -> None:
    """A pattern with captures matches exactly the paths its glob (``*`` for each) matches."""
    pattern = parse_pattern("/l/" + "_".join(f"{{c{i}}}" for i in range(len(parts))) + "/x.log")
    path = "/l/" + "_".join(names) + "/x.log"
    assert (pattern.match(path) is not None) == fnmatch.fnmatchcase(path, pattern.glob)
    if len(parts) == len(names) and all("_" not in n for n in names):
        assert pattern.match(path) == tuple(names)
