"""The seed story's load test of the order service, as perfsuite users write it.

Counts are written for the ``full`` profile (1,000 req/s for 10 minutes) and
scaled by ``--perf-profile``. The seed's SLOs: mean latency < 200 ms, error
rate < 0.1 %.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from examples.order_service.seed import Dataset
from perfsuite import Profile, Service

from ._drive import Outcome, drive

pytestmark = pytest.mark.perf

FULL_REQUESTS = 1_000 * 600  # 1,000 req/s for 10 minutes


@pytest.fixture
def client(perf_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=perf_service.base_url, timeout=5.0) as client:
        yield client


def assert_seed_slos(outcome: Outcome) -> None:
    assert outcome.mean_ms < 200.0, f"mean latency {outcome.mean_ms:.1f} ms >= 200 ms"
    assert outcome.error_rate < 0.001, f"error rate {outcome.error_rate:.3%} >= 0.1 %"


def create_order(client: httpx.Client, rng: random.Random, data: Dataset) -> httpx.Request:
    skus = rng.sample(range(1, len(data.skus) + 1), k=rng.randint(1, 3))
    body = {
        "user_id": rng.randint(1, len(data.users)),
        "items": [{"sku_id": s, "quantity": rng.randint(1, 3)} for s in skus],
    }
    return client.build_request("POST", "/orders", json=body)


def pay_order(client: httpx.Client, i: int, data: Dataset) -> httpx.Request:
    order_id, _, total = data.orders[i % len(data.orders)]
    body = {"order_id": order_id, "payment_id": f"pay-{order_id}", "amount_cents": total}
    return client.build_request("POST", "/payments/callback", json=body)


def query_order(client: httpx.Client, rng: random.Random, data: Dataset) -> httpx.Request:
    return client.build_request("GET", f"/orders/{rng.randint(1, len(data.orders))}")


def test_create_order(client: httpx.Client, perf_seed: Dataset, perf_profile: Profile) -> None:
    rng = random.Random(1)
    outcome = drive(
        client,
        lambda _: create_order(client, rng, perf_seed),
        perf_profile.count(FULL_REQUESTS),
        ok=lambda r: r.status_code == 201,
    )
    assert_seed_slos(outcome)


def test_payment_callback(client: httpx.Client, perf_seed: Dataset, perf_profile: Profile) -> None:
    # Retried callbacks for an already paid order must get the same 200.
    outcome = drive(
        client,
        lambda i: pay_order(client, i, perf_seed),
        perf_profile.count(FULL_REQUESTS),
        ok=lambda r: r.status_code == 200 and r.json()["status"] == "paid",
    )
    assert_seed_slos(outcome)


def test_order_query(client: httpx.Client, perf_seed: Dataset, perf_profile: Profile) -> None:
    rng = random.Random(3)
    outcome = drive(
        client,
        lambda _: query_order(client, rng, perf_seed),
        perf_profile.count(FULL_REQUESTS),
        ok=lambda r: r.status_code == 200,
    )
    assert_seed_slos(outcome)


def test_mixed(client: httpx.Client, perf_seed: Dataset, perf_profile: Profile) -> None:
    """20 % create, 10 % payment callback, 70 % query: the seed's traffic mix."""
    rng = random.Random(4)
    kinds = rng.choices(["create", "pay", "query"], weights=[20, 10, 70], k=10**6)

    def build(i: int) -> httpx.Request:
        if kinds[i] == "create":
            return create_order(client, rng, perf_seed)
        if kinds[i] == "pay":
            return pay_order(client, i, perf_seed)
        return query_order(client, rng, perf_seed)

    outcome = drive(
        client,
        build,
        min(len(kinds), perf_profile.count(FULL_REQUESTS)),
        ok=lambda r: r.status_code in (200, 201),
    )
    assert_seed_slos(outcome)
