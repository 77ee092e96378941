"""Replay of several file sets: each set replayed on its own, its series carrying its labels,
every family written once with the series of all sets.

A set (``log_exporter.sources.filesets``) is one log: replayed into a store of its own, in one
process or with ``--jobs`` (the workers' partial states merge into that set's store), exactly as
a replay of that log alone. Its series then take the set's labels, and the constant ``--label``
pairs: in the text format, families are merged by name once every set is done (the output holds
every series anyway); in backfill OpenMetrics, each set's samples are added to one
``SpillingWriter`` with its labels as they are taken, so one set's store is in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from log_exporter.prometheus.backfill import Labels
from log_exporter.replay.engine import ReplayStats
from log_exporter.replay.serial import ShowsProgress
from log_exporter.sources.files import LogFile

__all__ = ["Families", "LabelledSet", "SetProgress", "add_stats"]


@dataclass(frozen=True, slots=True)
class LabelledSet:
    """One file set, checked and ordered oldest first, and the labels all its series carry."""

    labels: Labels
    sources: list[LogFile]


class SetProgress:
    """One set's progress, shown on the whole replay's bar after the sets done before it."""

    def __init__(self, bar: ShowsProgress) -> None:
        self._bar = bar
        self.done_bytes = 0
        self.events = 0

    def update(self, done_bytes: int, events: int) -> None:
        self._bar.update(self.done_bytes + done_bytes, self.events + events)

    def next_set(self, size: int, events: int) -> None:
        """The set just replayed was ``size`` bytes and gave ``events``."""
        self.done_bytes += size
        self.events += events


def add_stats(total: ReplayStats, one: ReplayStats) -> None:
    """Add one set's replay to the whole replay's."""
    total.files += one.files
    total.lines += one.lines
    total.untimed += one.untimed
    total.late += one.late
    total.steps += one.steps
    total.damage += one.damage
    if one.first_time is not None:
        first = total.first_time
        total.first_time = one.first_time if first is None else min(first, one.first_time)
    if one.last_time is not None:
        last = total.last_time
        total.last_time = one.last_time if last is None else max(last, one.last_time)


class Families(Collector):
    """Families merged by name across sets, each series with its set's labels first: a registry
    collector writing each family once (the text formats allow a family only once)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def add(self, families: Iterable[Metric], labels: Mapping[str, str]) -> None:
        """Add every series of ``families``, each carrying ``labels`` before its own."""
        for family in families:
            samples = family.samples
            if labels:
                samples = [s._replace(labels={**labels, **s.labels}) for s in samples]
            merged = self._by_name.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                self._by_name[family.name] = merged
            merged.samples += samples

    def collect(self) -> Sequence[Metric]:
        return list(self._by_name.values())
