"""Replay's and trace's file sets: the files named on the command line, grouped by the labels
their ``--file`` pattern captured from their paths.

A file set is every file giving the same labels (the files named without a pattern, and those of
patterns without captures, give none); each set is one log, ordered oldest first on its own
(``open_sources``), whose series carry its labels. A ``--file`` names a log as ``serve`` follows
it: replay reads each matching file with its rotated generations beside it (``app.log.1``,
``app.log.2.gz``, the kubelet's ``0.log.20240101-120000.gz``, logrotate's ``app.log-20240101``),
the history ``serve`` would have read. A file named positionally is read alone, as always.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from log_exporter.sources.files import ReplayError
from log_exporter.sources.patterns import FilePattern

__all__ = ["FileSet", "Labels", "gather", "labels_text", "rotated_generations"]

Labels = tuple[tuple[str, str], ...]
# What follows a log's name in its rotated generations' names: logrotate's ".N" and dateext's
# "-YYYYMMDD", the kubelet's ".YYYYMMDD-HHMMSS"; each may end in ".gz".
_GENERATION = r"(?:\.\d+|\.\d{8}-\d{6}|-\d{8}(?:\d{2})?)(?:\.gz)?"


@dataclass(slots=True)
class FileSet:
    """The paths of one log, unordered, and the labels every series derived from it carries."""

    labels: Labels
    paths: list[str] = field(default_factory=list)


def labels_text(labels: Labels) -> str:
    """``{name="value",...}``, as Prometheus writes a series' labels (``{}`` for none)."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def rotated_generations(path: str) -> list[str]:
    """The regular files beside ``path`` whose names are its own rotated generations."""
    directory, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + _GENERATION)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    return sorted(
        os.path.join(directory, n)
        for n in names
        if pattern.fullmatch(n) and os.path.isfile(os.path.join(directory, n))
    )


def gather(files: Sequence[str], patterns: Sequence[FilePattern]) -> list[FileSet]:
    """The file sets of ``files`` (read alone, no labels) and of ``patterns`` (each match and its
    rotated generations, labelled by its captures), in order of their labels.

    ``ReplayError`` for a pattern matching no file (a batch command has nothing to wait for),
    and for a file two patterns give different labels (its events would be counted twice).
    """
    sets: dict[Labels, FileSet] = {}
    claimed: dict[str, tuple[Labels, str]] = {}

    def add(path: str, labels: Labels, source: str) -> None:
        key = os.path.realpath(path)
        earlier = claimed.get(key)
        if earlier is not None and earlier[0] != labels:
            raise ReplayError(
                f"{path}: given the labels {labels_text(earlier[0])} by {earlier[1]} and "
                f"{labels_text(labels)} by {source}: its events would be counted twice"
            )
        if earlier is None:
            claimed[key] = (labels, source)
            sets.setdefault(labels, FileSet(labels)).paths.append(path)

    for path in files:
        add(path, (), "the command line")
    for pattern in patterns:
        matched = pattern.expand()
        if not matched:
            raise ReplayError(f"--file {pattern.text}: no file matches")
        for path in matched:
            values = pattern.match(path)
            assert values is not None, "expand gives only matching paths"
            labels = tuple(zip(pattern.labels, values, strict=True))
            for each in (path, *rotated_generations(path)):
                add(each, labels, f"--file {pattern.text}")
    return [sets[k] for k in sorted(sets)]
