"""The example perf suite's set-up, written as a user of perfsuite would.

MySQL and the order service come from perfsuite's fixtures (configured in
``[tool.perfsuite]`` of pyproject.toml). Here: the seed data, the requests of
the seed story, and its load phases, written for the ``full`` profile and
scaled by ``--perf-profile``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from examples.order_service.seed import Dataset, seed_database
from perfsuite import (
    Context,
    Journey,
    MySQLServer,
    Phase,
    Phases,
    Request,
    Scenario,
    Step,
    User,
    json_field,
)


@pytest.fixture(scope="session")
def perf_seed(perf_mysql: MySQLServer) -> Dataset:
    """Many users and SKUs, and orders to pay and read: caches can't flatter us."""
    return seed_database(perf_mysql, users=10_000, skus=2_000, orders=5_000)


def create_order(ctx: Context) -> httpx.Request:
    skus = ctx.rng.sample(ctx.data["sku_id"], k=ctx.rng.randint(1, 3))
    items = [{"sku_id": sku, "quantity": ctx.rng.randint(1, 3)} for sku in skus]
    return ctx.post("/orders", json={"user_id": ctx.pick("user_id"), "items": items})


def payment_callback(ctx: Context) -> httpx.Request:
    # Callbacks are retried in real life: a repeat must get the same 200. And
    # now and then the provider calls back for an order we never had: 404.
    if ctx.rng.random() < 0.01:
        unknown = 10_000_000 + ctx.rng.randrange(1_000_000)
        body = {"order_id": unknown, "payment_id": f"pay-{unknown}", "amount_cents": 100}
        return ctx.post("/payments/callback", json=body)
    order_id, _, total = ctx.pick("order")
    body = {"order_id": order_id, "payment_id": f"pay-{order_id}", "amount_cents": total}
    return ctx.post("/payments/callback", json=body)


def order_query(ctx: Context) -> httpx.Request:
    return ctx.get(f"/orders/{ctx.pick('order')[0]}")


def paid(status: int, body: bytes) -> bool:
    return status == 404 or json.loads(body)["status"] == "paid"


CREATE = Request(name="create_order", build=create_order, status={201})
PAY = Request(name="payment_callback", build=payment_callback, status={200, 404}, check=paid)
QUERY = Request(name="order_query", build=order_query, status={200})


def pay_it(user: User) -> httpx.Request:
    # The order just created, with its own amount: the service answers 422 to a
    # wrong amount and 404 to an unknown order, so a 200 proves both came through.
    order = user["order_id"]
    body = {"order_id": order, "payment_id": f"pay-{order}", "amount_cents": user["amount"]}
    return user.post("/payments/callback", json=body)


# The seed's flow as one journey: create an order, pay for it, query it.
ORDER_JOURNEY = Journey(
    "order_journey",
    Step(
        name="create",
        build=create_order,
        status={201},
        extract={"order_id": json_field("id"), "amount": json_field("total_cents")},
    ),
    Step(name="pay", build=pay_it, status={200}, check=paid),
    Step(name="query", build=lambda u: u.get(f"/orders/{u['order_id']}"), status={200}, check=paid),
)


@pytest.fixture(scope="session")
def feeders(perf_seed: Dataset) -> dict[str, list[object]]:
    """Pre-generated ids the requests draw from."""
    return {
        "user_id": [u[0] for u in perf_seed.users],
        "sku_id": [s[0] for s in perf_seed.skus],
        "order": list(perf_seed.orders),
    }


@pytest.fixture
def seed_load(perf_phases: Phases) -> list[Phase]:
    """The seed story's run: warm up, then 1,000 req/s for 10 minutes."""
    return [
        perf_phases.warmup(rate=100, duration="30s"),
        perf_phases.constant(rate=1_000, duration="10m"),
    ]


@pytest.fixture
def seed_ramp(perf_phases: Phases) -> list[Phase]:
    """The seed story's stepped ramp to find the knee: 100 to 1,000 req/s."""
    return [
        perf_phases.warmup(rate=100, duration="30s"),
        *perf_phases.stairs(start=100, step=100, steps=10, hold="1m"),
    ]


@pytest.fixture
def scenario(feeders: dict[str, list[object]]) -> type[Scenario]:
    """``scenario(CREATE, ...)`` with the feeders filled in."""

    class _Scenario(Scenario):
        def __init__(self, *items: Request | Journey) -> None:
            super().__init__(*items, data=feeders, seed=42)

    return _Scenario
