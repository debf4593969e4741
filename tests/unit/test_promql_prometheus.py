"""The PromQL evaluator agrees with Prometheus itself (Debian's ``prometheus``).

A Prometheus of the test's own scrapes a local endpoint once a second. Its
stored samples are read back raw (a range-vector query) and given to
perfsuite's evaluator; each expression is then asked of both at the same
instants (``query_range``), so any difference is one of evaluation, not of
scrape timing: the values must match to 1e-9, the label sets exactly.
perfsuite's own scraper reads the same endpoint meanwhile; its rates agree
with Prometheus's within 2 % (two scrapers, two sets of instants).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from perfsuite.errors import PromQLError
from perfsuite.probes.prometheus_api import PrometheusAPI
from perfsuite.probes.scrape import Scraped, Scraper, ScrapeTarget
from perfsuite.session.metrics import judge_remote
from perfsuite.stats.promql import (
    Evaluator,
    Expectation,
    Series,
    SeriesSet,
    Vector,
    judge,
    labels_of,
    parse,
)

from .conftest import debian_binary, prometheus_api, prometheus_server

EXPRESSIONS = [
    "agree_requests_total",
    "rate(agree_requests_total[5s])",
    "increase(agree_requests_total[10s])",
    "irate(agree_requests_total[5s])",
    "rate(agree_restarts_total[10s])",  # a counter that resets
    "increase(agree_restarts_total[8s])",
    "irate(agree_restarts_total[4s])",
    "delta(agree_pool_in_use[10s])",
    "idelta(agree_pool_in_use[5s])",
    "max_over_time(agree_pool_in_use[10s])",
    "min_over_time(agree_pool_in_use[7s])",
    "avg_over_time(agree_pool_in_use[10s])",
    "sum_over_time(agree_pool_in_use[6s])",
    "count_over_time(agree_pool_in_use[10s])",
    "quantile_over_time(0.9, agree_pool_in_use[10s])",
    "stddev_over_time(agree_pool_in_use[10s])",
    "last_over_time(agree_pool_in_use[10s])",
    "histogram_quantile(0.9, sum by (le) (rate(agree_latency_seconds_bucket[10s])))",
    "histogram_quantile(0.5, rate(agree_latency_seconds_bucket[10s]))",
    "sum by (code) (rate(agree_requests_total[10s]))",
    'sum(rate(agree_requests_total{code=~"5.."}[10s])) / sum(rate(agree_requests_total[10s]))',
    "max without (pool) (agree_pool_in_use)",
    "avg(agree_pool_in_use)",
    "count by (job) (agree_pool_in_use)",
    "agree_pool_in_use > 3",
    "agree_pool_in_use >= bool 3",
    "2 * agree_pool_in_use + 1",
    "agree_pool_in_use offset 3s",
    'agree_requests_total{code="200"} / ignoring(code) agree_requests_total{code="500"}',
    "clamp_max(agree_pool_in_use, 4)",
    "-agree_pool_in_use",
    '(sum(rate(agree_requests_total{code="404"}[10s])) or vector(0))',
    'agree_requests_total and on(job) agree_pool_in_use{pool="a"}',
    'agree_pool_in_use unless agree_pool_in_use{pool="a"}',
    "agree_pool_in_use > 2 or agree_pool_in_use < 1",
]
OWN_SCRAPES = "sum(rate(agree_requests_total[10s]))"


class _Signals:
    """Metrics that are functions of time: counters at fixed rates, one that resets every
    7 s, gauges that step, a histogram whose buckets fill at fixed rates."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def collect(self) -> Iterator[Any]:
        t = time.monotonic() - self.t0
        requests = CounterMetricFamily("agree_requests", "requests", labels=["code"])
        requests.add_metric(["200"], math.floor(t * 70))
        requests.add_metric(["500"], math.floor(t * 3))
        yield requests
        restarts = CounterMetricFamily("agree_restarts", "work since the last restart")
        restarts.add_metric([], math.floor((t % 7) * 11))
        yield restarts
        pool = GaugeMetricFamily("agree_pool_in_use", "in use", labels=["pool"])
        pool.add_metric(["a"], float(math.floor(t / 2) % 6))
        pool.add_metric(["b"], float(math.floor(t / 3) % 4 + 1))
        yield pool
        rates = [("0.01", 20), ("0.05", 50), ("0.1", 80), ("0.5", 95), ("+Inf", 100)]
        latency = HistogramMetricFamily("agree_latency_seconds", "latency")
        buckets = [(le, math.floor(t * per_second)) for le, per_second in rates]
        latency.add_metric([], buckets, sum_value=t * 3.0)
        yield latency


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    """Debian's Prometheus."""
    return debian_binary("prometheus", "this test compares perfsuite's PromQL with its")


def _raw_samples(url: str, at: float) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """Every sample Prometheus stored of the job, as it stored them (times in ms)."""
    data = prometheus_api(url, "query", query='{job="agree"}[10m]', time=f"{at:.3f}")
    assert data["resultType"] == "matrix"
    return [
        (series["metric"], [(round(float(t) * 1000), float(v)) for t, v in series["values"]])
        for series in data["result"]
    ]


def _rebased(raw: list[tuple[dict[str, str], list[tuple[int, float]]]], origin: int) -> SeriesSet:
    """The samples with times in seconds from ``origin`` (ms): Prometheus computes in
    whole milliseconds, and seconds since 1970 in a float are only good to 0.2 us."""
    return SeriesSet(
        tuple(
            Series.of(labels, [((t - origin) / 1000, v) for t, v in points])
            for labels, points in raw
        )
    )


def _by_time(data: dict[str, Any]) -> dict[int, Vector]:
    """A query_range answer by instant (in ms)."""
    out: dict[int, Vector] = {}
    for series in data["result"]:
        labels = labels_of(series["metric"])
        for t, v in series["values"]:
            out.setdefault(round(float(t) * 1000), {})[labels] = float(v)
    return out


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@dataclass(frozen=True)
class _Agreement:
    url: str  # the Prometheus, still running
    raw: list[tuple[dict[str, str], list[tuple[int, float]]]]  # what it stored
    scraped: Scraped  # what perfsuite's scraper read meanwhile
    start: int  # ms: the first instant judged
    end: int
    answers: dict[str, dict[int, Vector]]


@pytest.fixture(scope="module")
def agreement(
    prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Agreement]:
    """A Prometheus and perfsuite's scraper on one endpoint for 26 s, and what
    Prometheus answers to every expression over the last 15 instants."""
    registry = CollectorRegistry()
    registry.register(_Signals())  # type: ignore[arg-type]
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    target = f"127.0.0.1:{server.server_port}"
    ours = Scraper([ScrapeTarget(job="agree", url=f"http://{target}/metrics")])
    try:
        with prometheus_server(
            prometheus_binary, tmp_path_factory.mktemp("prometheus"), target
        ) as url:
            ours.start()
            threading.Event().wait(26)  # 26 scrapes: windows of 10 s, 15 instants to judge
            scraped = ours.stop()
            raw = _raw_samples(url, time.time())
            last = max(points[-1][0] for _, points in raw)
            # Instants off the scrape grid by a quarter second: no sample sits on a
            # window's edge (Prometheus 2 includes it, 3 and perfsuite do not).
            end = last - 250
            start = end - 14_000
            answers = {
                text: _by_time(
                    prometheus_api(
                        url, "query_range", query=text, start=start / 1000, end=end / 1000, step=1
                    )
                )
                for text in [*EXPRESSIONS, OWN_SCRAPES]
            }
            yield _Agreement(url, raw, scraped, start, end, answers)
    finally:
        server.shutdown()
        server.server_close()


def test_the_evaluator_gives_prometheus_values(agreement: _Agreement) -> None:
    raw, scraped, start, end, answers = (
        agreement.raw,
        agreement.scraped,
        agreement.start,
        agreement.end,
        agreement.answers,
    )
    mine_on_ours = Evaluator(scraped.series_set())
    evaluator = Evaluator(_rebased(raw, start))
    compared = 0
    for text in EXPRESSIONS:
        theirs = answers[text]
        mine = evaluator.steps(parse(text), 0.0, (end - start) / 1000, 1.0)
        assert any(theirs.values()), f"Prometheus gave nothing for {text}"
        for i, vector in enumerate(mine):
            t = start + i * 1000
            expected = theirs.get(t, {})
            assert set(vector) == set(expected), (text, t, vector, expected)
            for labels, value in vector.items():
                assert _same(value, expected[labels]), (text, t, labels, value, expected[labels])
                compared += 1
    assert compared > 15 * 14

    # perfsuite's own scrapes, at instants of their own, give the same rates within 2 %.
    # Only at instants whose 10 s window both have filled (Prometheus's first scrape
    # comes up to an interval after it is ready).
    theirs = answers[OWN_SCRAPES]
    first = max(
        min(p[0][0] for _, p in raw), round(min(min(t) for t, _ in scraped.points.values()) * 1000)
    )
    steps = mine_on_ours.steps(parse(OWN_SCRAPES), start / 1000, end / 1000, 1.0)
    judged = 0
    for i, vector in enumerate(steps):
        if start + i * 1000 - 10_000 < first:
            continue
        ((_, value),) = vector.items()
        ((_, expected),) = theirs[start + i * 1000].items()
        assert value == pytest.approx(expected, rel=0.02), i
        assert value == pytest.approx(73.0, rel=0.02)  # 70/s and 3/s
        judged += 1
    assert judged >= 5


def test_an_expectation_judged_by_prometheus_is_judged_as_here(agreement: _Agreement) -> None:
    remote = PrometheusAPI(agreement.url)
    local = Evaluator(_rebased(agreement.raw, agreement.start))
    start, end = agreement.start / 1000, agreement.end / 1000
    try:
        for text in (
            "max_over_time(agree_pool_in_use[10s]) <= 5",  # pool a reaches 5: holds
            "agree_pool_in_use < 4",  # a and b both reach 4 at times: broken
            "rate(agree_requests_total[5s]) > 1",
            "histogram_quantile(0.9, sum by (le) (rate(agree_latency_seconds_bucket[10s]))) < 0.1",
        ):
            e = Expectation(text=text)
            there = judge_remote(e, remote, start, end, origin=start)
            here = judge(e, local, 0.0, end - start)
            assert (there.ok, there.judged, there.broken) == (here.ok, here.judged, here.broken)
            assert there.report() == here.report()
            assert there.judged == 15
        missing = judge_remote(
            Expectation(text="agree_pool_waiting < 1"), remote, start, end, origin=start
        )
        assert "agree_pool_in_use, agree_requests_total" in missing.report()
    finally:
        remote.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = PrometheusAPI(f"http://127.0.0.1:{port}")
    with pytest.raises(PromQLError, match=f"cannot query Prometheus at http://127.0.0.1:{port}"):
        judge_remote(Expectation(text="up < 1"), down, start, end, origin=start)
