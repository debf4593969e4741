"""The seed story's load test of the order service, as perfsuite users write it.

The seed's SLOs: mean latency < 200 ms and error rate < 0.1 %, measured
from the intended send time over the measured phases (warm-up excluded),
declared with the ``slo`` marker; each step of the ramp is checked in the body.
"""

from __future__ import annotations

import pytest

from perfsuite import Phase, Summary

from .conftest import CREATE, ORDER_JOURNEY, PAY, QUERY

# The seed story's SLOs, judged by perfsuite after each test's load.
pytestmark = [pytest.mark.perf, pytest.mark.slo(mean="200ms", error_rate="0.1%")]


def assert_seed_slos(summary: Summary) -> None:
    assert summary.requests > 0
    assert summary.mean_ms < 200.0, f"mean latency {summary.mean_ms:.1f} ms >= 200 ms"
    assert summary.error_rate < 0.001, (
        f"error rate {summary.error_rate:.3%} >= 0.1 % ({summary.errors_by_kind})"
    )


def test_create_order(perf_run, scenario, seed_load: list[Phase]) -> None:
    perf_run(scenario(CREATE), seed_load)


# The pool from inside the service, scraped once a second: a leak exhausts it and
# every request then waits for a connection. A stall of the database queues a
# moment's requests too, so the median over 10 s is judged, not the maximum.
@pytest.mark.expect("quantile_over_time(0.5, order_service_db_pool_waiting[10s]) < 5")
def test_payment_callback(perf_run, scenario, seed_load: list[Phase]) -> None:
    perf_run(scenario(PAY), seed_load)


@pytest.mark.slo(p99="100ms")
def test_order_query(perf_run, scenario, seed_load: list[Phase]) -> None:
    perf_run(scenario(QUERY), seed_load)


def test_mixed(perf_run, scenario, seed_ramp: list[Phase]) -> None:
    """20 % create, 10 % payment callback, 70 % query, on the stepped ramp."""
    mix = scenario(CREATE.with_weight(20), PAY.with_weight(10), QUERY.with_weight(70))
    result = perf_run(mix, seed_ramp)
    # Every step of the ramp is judged alone, too (the marker judges them together).
    for phase in result.phases:
        if phase.role == "measure":
            assert_seed_slos(result.summary(phase=phase.name))


def test_order_journey(perf_run, scenario, seed_load: list[Phase]) -> None:
    """The seed's flow, each order paid with its own id and amount, then read back paid."""
    result = perf_run(scenario(ORDER_JOURNEY), seed_load)
    journeys = result.measured("order_journey")
    assert journeys.ok == journeys.requests > 0
    for step in ("create", "pay", "query"):
        assert result.measured(f"order_journey/{step}").requests == journeys.requests
