"""Scraping real HTTP endpoints: prometheus_client's own server, and one serving given text."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from perfsuite.probes.scrape import Scraper, ScrapeTarget
from perfsuite.session.metrics import ScrapedLoad, encode_scraped
from perfsuite.stats.promql import Evaluator, parse


class _Text:
    """A local endpoint that serves whatever text it is given, with a content type."""

    def __init__(self) -> None:
        self.body = ""
        self.content_type = "text/plain; version=0.0.4"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = owner.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", owner.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def text() -> Iterator[_Text]:
    served = _Text()
    yield served
    served.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_prometheus_client_endpoint_is_scraped_into_series() -> None:
    registry = CollectorRegistry()
    requests = Counter("app_requests", "requests", ["code"], registry=registry)
    in_use = Gauge("app_pool_in_use", "connections in use", registry=registry)
    latency = Histogram("app_latency_seconds", "latency", buckets=(0.1, 0.5), registry=registry)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        clock = _Clock()
        scraper = Scraper([ScrapeTarget(job="service", url=url)], clock=clock)
        for second in range(4):
            clock.now = 1000.0 + second
            requests.labels(code="200").inc(10)
            in_use.set(second)
            latency.observe(0.05 * (second + 1))
            scraper.scrape_once()
        scraped = scraper.scraped
    finally:
        server.shutdown()
        server.server_close()
    assert scraped.scrapes == 4
    assert not scraped.failures
    assert scraped.types["app_requests"] == "counter"
    assert scraped.types["app_latency_seconds"] == "histogram"
    instance = f"127.0.0.1:{server.server_port}"
    key = (
        ("__name__", "app_requests_total"),
        ("code", "200"),
        ("instance", instance),
        ("job", "service"),
    )
    assert scraped.points[key] == ([1000.0, 1001.0, 1002.0, 1003.0], [10.0, 20.0, 30.0, 40.0])
    ev = Evaluator(scraped.series_set())
    assert ev.at(parse('rate(app_requests_total{job="service"}[4s])'), 1003.0) == {
        (("code", "200"), ("instance", instance), ("job", "service")): pytest.approx(10.0)
    }
    assert ev.at(parse("max_over_time(app_pool_in_use[10s])"), 1003.0) == {
        (("instance", instance), ("job", "service")): 3.0
    }
    # Observations 0.05, 0.10, 0.15, 0.20: two in (0, 0.1], two in (0.1, 0.5].
    q = ev.at(parse("histogram_quantile(0.75, sum by (le) (app_latency_seconds_bucket))"), 1003)
    assert q == {(): pytest.approx(0.1 + 0.4 * 1 / 2)}


def test_a_counter_reset_between_scrapes_is_a_reset_for_rate(text: _Text) -> None:
    clock = _Clock()
    scraper = Scraper([ScrapeTarget(job="svc", url=text.url)], clock=clock)
    for second, value in enumerate([100, 110, 120, 3, 13]):  # the service restarted
        clock.now = 1000.0 + second
        text.body = f"# TYPE done_total counter\ndone_total {value}\n"
        scraper.scrape_once()
    ev = Evaluator(scraper.scraped.series_set())
    # Increases 10, 10, 3 (from 0 after the restart), 10: 33 over 4 s of samples.
    (value,) = ev.at(parse("increase(done_total[5s])"), 1004.5).values()  # type: ignore[union-attr]
    assert value == pytest.approx(33 * (4 + 0.5 + 0.5) / 4)


def test_openmetrics_is_parsed_by_its_own_parser(text: _Text) -> None:
    text.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    text.body = '# TYPE jobs counter\njobs_total{queue="a"} 7\n# EOF\n'
    scraper = Scraper([ScrapeTarget(job="svc", url=text.url)])
    scraper.scrape_once()
    ((labels, (_, values)),) = scraper.scraped.points.items()
    assert dict(labels)["__name__"] == "jobs_total"
    assert values == [7.0]
    # OpenMetrics requires its closing "# EOF": without it the scrape fails, and is kept.
    text.body = '# TYPE jobs counter\njobs_total{queue="a"} 8\n'
    scraper.scrape_once()
    assert "ValueError" in scraper.scraped.failures["svc"][0]


def test_the_cap_and_the_filter_leave_series_out_and_count_them(text: _Text) -> None:
    text.body = "".join(f'a_metric{{n="{i}"}} {i}\n' for i in range(10)) + "b_metric 1\nc_x 2\n"
    scraper = Scraper(
        [ScrapeTarget(job="svc", url=text.url)], max_series=4, keep=["^a_", "^b_"], drop=["^b_"]
    )
    scraper.scrape_once()
    scraper.scrape_once()
    scraped = scraper.scraped
    assert len(scraped.points) == 4
    assert scraped.dropped_series == 6  # a_metric 4..9, counted once each
    assert scraped.filtered_series == 2  # b_metric (dropped) and c_x (not kept)


def test_an_unreachable_target_is_kept_as_an_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    scraper = Scraper([ScrapeTarget(job="exporter", url=f"http://127.0.0.1:{port}/metrics")])
    for _ in range(8):
        scraper.scrape_once()
    assert scraper.scraped.scrapes == 8
    assert scraper.scraped.failed == {"exporter": 8}
    assert len(scraper.scraped.failures["exporter"]) == 5  # the first ones, not every one
    assert "ConnectError" in scraper.scraped.failures["exporter"][0]
    assert not scraper.scraped.points


def test_the_thread_scrapes_until_stopped(text: _Text) -> None:
    text.body = "up 1\n"
    scraper = Scraper([ScrapeTarget(job="svc", url=text.url)], interval=0.05)
    scraper.start()
    threading.Event().wait(0.5)
    scraped = scraper.stop()
    count = scraped.scrapes
    assert count >= 5  # one at the start, one a tick, one at the stop
    ((times, _),) = scraped.points.values()
    assert len(times) == count
    assert times == sorted(times)
    threading.Event().wait(0.2)
    assert scraper.scraped.scrapes == count  # nothing after the stop


def test_the_record_keeps_the_named_series_then_fills_up_to_its_limit(text: _Text) -> None:
    text.body = (
        "# TYPE lat histogram\n"
        + "".join(f'lat_bucket{{le="{le}"}} {i}\n' for i, le in enumerate(["0.1", "1", "+Inf"]))
        + "lat_sum 3\nlat_count 2\n"
        + "".join(f"gauge_{c} 1\n" for c in "abcd")
        + "watched 7\n"
    )
    scraper = Scraper([ScrapeTarget(job="svc", url=text.url)])
    scraper.scrape_once()
    scraped = ScrapedLoad(scraped=scraper.scraped, wall_start=None)

    def names(limit: int, named: set[str]) -> list[str]:
        record = encode_scraped(scraped, named, limit)
        assert record["scraped_series"] == 10
        assert record["recorded_series"] == len(record["series"])
        return [s["labels"]["__name__"] for s in record["series"]]

    # The named first, always (past the limit too); histogram buckets last.
    assert names(0, {"watched"}) == ["watched"]
    assert names(3, {"watched"}) == ["watched", "gauge_a", "gauge_b"]
    assert names(10, set()) == [
        "gauge_a", "gauge_b", "gauge_c", "gauge_d", "lat_count", "lat_sum", "watched",
        "lat_bucket", "lat_bucket", "lat_bucket",
    ]  # fmt: skip
