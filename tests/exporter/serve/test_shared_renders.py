"""Concurrent scrapes of the same page share one render (and one gzip): real clients on
loopback against an in-process server whose collector is held until every scrape waits."""

from __future__ import annotations

import gzip
import http.client
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from log_exporter.prometheus.server import MetricsServer, SharedRenders
from tests.support.waits import wait_for


class _Held(Collector):
    """Counts its collections; each waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.collections = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.collections += 1
        assert self.release.wait(60)
        yield GaugeMetricFamily("held_gauge", "Held.", value=float(self.collections))


@pytest.fixture
def held() -> Iterator[tuple[MetricsServer, _Held]]:
    collector = _Held()
    registry = CollectorRegistry()
    registry.register(collector)
    collector.release.set()  # registration collects once
    collector.release.clear()
    collector.collections = 0
    srv = MetricsServer(registry, listen="127.0.0.1:0")
    srv.start()
    yield srv, collector
    collector.release.set()
    srv.shutdown()


def _scrape(srv: MetricsServer, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.address, timeout=60)
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return response.status, body
    finally:
        conn.close()


@pytest.mark.parametrize("headers", [{}, {"Accept-Encoding": "gzip"}], ids=["plain", "gzip"])
def test_scrapes_arriving_during_a_render_share_it(
    held: tuple[MetricsServer, _Held], headers: dict[str, str]
) -> None:
    """Seven scrapes that arrive while an eighth's render runs wait for it and get its very
    page: the registry is collected once, not eight times."""
    srv, collector = held
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(_scrape, srv, headers)
        wait_for(lambda: collector.collections, "the first render to start")
        rest = [pool.submit(_scrape, srv, headers) for _ in range(7)]
        wait_for(srv._site.shared.waiting, "seven scrapes to wait", until=lambda n: n == 7)
        collector.release.set()
        answers = [first.result(), *(f.result() for f in rest)]
    assert collector.collections == 1
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1
    assert b"held_gauge 1.0" in answers[0][1]


def test_different_pages_are_rendered_apart(held: tuple[MetricsServer, _Held]) -> None:
    """A text scrape and an OpenMetrics scrape at once are two renders: a page is shared only
    with scrapes asking for the same format and compression."""
    srv, collector = held
    with ThreadPoolExecutor(2) as pool:
        text = pool.submit(_scrape, srv, {})
        wait_for(lambda: collector.collections, "the first render to start")
        om = pool.submit(_scrape, srv, {"Accept": "application/openmetrics-text; version=1.0.0"})
        wait_for(lambda: collector.collections, "the second render", until=lambda n: n == 2)
        collector.release.set()
        assert text.result()[1].startswith(b"# HELP held_gauge")
        assert om.result()[1].endswith(b"# EOF\n")


def test_a_request_that_came_during_a_render_takes_its_page_a_later_one_a_new_page() -> None:
    """A scrape that arrived before the last render of its page finished (but found no thread
    until after) gets that page; one that arrived after gets a fresh render."""
    now = [100.0]
    shared = SharedRenders(clock=lambda: now[0])
    pages = iter([b"first", b"second"])

    def render() -> bytes:
        now[0] += 1.0  # the render takes a second
        return next(pages)

    key = ("text/plain; version=0.0.4; charset=utf-8", False)
    assert shared.get(key, render, arrived=100.0) == b"first"
    assert shared.get(key, render, arrived=100.5) == b"first"  # came during it
    assert shared.get(key, render, arrived=101.5) == b"second"  # came after it
    assert shared.renders == 2


def test_health_probes_answer_while_every_handler_thread_waits_for_a_render(
    held: tuple[MetricsServer, _Held],
) -> None:
    """With a render stuck and more scrapes waiting than there are handler threads, /healthz
    and /readyz still answer at once: the loop answers them itself."""
    srv, collector = held
    with ThreadPoolExecutor(12) as pool:
        scrapes = [pool.submit(_scrape, srv, {}) for _ in range(12)]
        wait_for(srv._site.shared.waiting, "the handler threads to wait", until=lambda n: n >= 7)
        for path in ("/healthz", "/readyz"):
            conn = http.client.HTTPConnection(*srv.address, timeout=5)
            conn.request("GET", path)
            assert conn.getresponse().status == 200
            conn.close()
        collector.release.set()
        assert {f.result()[0] for f in scrapes} == {200}
