"""Fixtures shared by the exporter's test folders, one folder per stage of the package.

The data path's helpers (``store_for``, ``feed``, ``render``) are plain functions in
``tests.support.pipeline``; they are offered here as fixtures too, as the root conftest offers
the common helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from log_exporter.pipeline import Pipeline
from log_exporter.store import Store
from tests.support import pipeline
from tests.support.prometheus import Prometheus

PrometheusFactory = Callable[..., Prometheus]


@pytest.fixture
def prometheus_factory(prometheus_binary: str, tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Starts real Prometheus servers, each in a directory of its own under ``tmp_path``, with
    ``Prometheus``'s keyword arguments (a ``config`` to scrape by, a ``data`` TSDB to read);
    all are stopped after the test."""
    started: list[Prometheus] = []

    def start(**kwargs: Any) -> Prometheus:
        directory = tmp_path / f"prometheus-{len(started)}"
        directory.mkdir()
        started.append(Prometheus(prometheus_binary, directory, **kwargs))
        return started[-1]

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture
def store_for() -> Callable[..., tuple[Pipeline, Store]]:
    """``tests.support.pipeline.store_for``: a spec's pipeline over a new store."""
    return pipeline.store_for


@pytest.fixture
def feed() -> Callable[..., None]:
    """``tests.support.pipeline.feed``: events fed as one batch of JSON lines."""
    return pipeline.feed


@pytest.fixture
def render() -> Callable[..., bytes]:
    """``tests.support.pipeline.render``: a store's or a collector's Prometheus text page."""
    return pipeline.render
