"""The example order service against a real MariaDB: endpoints and fault switches."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from examples.order_service.faults import Faults, parse_faults
from examples.order_service.seed import Dataset, generate
from perfsuite.provision import MySQLServer, Service
from perfsuite.replay import read_capture

from .conftest import ServiceFactory


@pytest.fixture
def service(order_service_factory: ServiceFactory) -> Iterator[Service]:
    with order_service_factory() as service:
        yield service


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=10.0) as client:
        yield client


def pool_gauges(client: httpx.Client) -> dict[str, float]:
    text = client.get("/metrics").text
    found = re.findall(r"^order_service_db_pool_(\w+) (\S+)$", text, flags=re.MULTILINE)
    return {name: float(value) for name, value in found}


def test_create_then_read_an_order(client: httpx.Client, order_data: Dataset) -> None:
    sku_a, sku_b = order_data.skus[0], order_data.skus[1]
    body = {"user_id": 3, "items": [{"sku_id": 1, "quantity": 2}, {"sku_id": 2, "quantity": 1}]}
    created = client.post("/orders", json=body)
    assert created.status_code == 201
    order = created.json()
    assert order["status"] == "created"
    assert order["total_cents"] == 2 * sku_a[2] + sku_b[2]
    read = client.get(f"/orders/{order['id']}")
    assert read.status_code == 200
    assert read.json() == {
        "id": order["id"],
        "user_id": 3,
        "status": "created",
        "total_cents": order["total_cents"],
        "payment_id": None,
        "items": [
            {"sku_id": 1, "quantity": 2, "price_cents": sku_a[2]},
            {"sku_id": 2, "quantity": 1, "price_cents": sku_b[2]},
        ],
    }


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": 1},
        {"user_id": 1, "items": []},
        {"user_id": "1", "items": [{"sku_id": 1, "quantity": 1}]},
        {"user_id": 1, "items": [{"sku_id": 1, "quantity": 0}]},
        {"user_id": 1, "items": [{"sku_id": 1, "quantity": 1}, {"sku_id": 1, "quantity": 1}]},
        {"user_id": 10**9, "items": [{"sku_id": 1, "quantity": 1}]},
        {"user_id": 1, "items": [{"sku_id": 10**9, "quantity": 1}]},
        [1, 2],
    ],
)
def test_bad_orders_get_422(client: httpx.Client, body: object, order_data: Dataset) -> None:
    response = client.post("/orders", json=body)
    assert response.status_code == 422
    assert "error" in response.json()


def test_malformed_json_gets_422(client: httpx.Client) -> None:
    response = client.post(
        "/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_unknown_order_is_404(client: httpx.Client) -> None:
    assert client.get("/orders/987654321").status_code == 404
    assert client.get("/orders/abc").status_code == 422


def test_payment_callback_is_idempotent(client: httpx.Client, order_data: Dataset) -> None:
    order_id, _, total = order_data.orders[10]
    body = {"order_id": order_id, "payment_id": "pay-idem", "amount_cents": total}
    first = client.post("/payments/callback", json=body)
    again = client.post("/payments/callback", json=body)
    assert (first.status_code, first.json()["duplicate"]) == (200, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert client.get(f"/orders/{order_id}").json()["status"] == "paid"
    other = client.post("/payments/callback", json={**body, "payment_id": "pay-other"})
    assert other.status_code == 409


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"order_id": 987654321, "payment_id": "p", "amount_cents": 1}, 404),
        ({"order_id": 1, "payment_id": "", "amount_cents": 1}, 422),
        ({"order_id": 1, "payment_id": "p"}, 422),
        ({"order_id": -1, "payment_id": "p", "amount_cents": 1}, 422),
        ({"order_id": 1, "payment_id": "p", "amount_cents": 1}, 422),  # wrong amount
    ],
)
def test_payment_callback_errors(
    client: httpx.Client, body: dict[str, object], status: int
) -> None:
    assert client.post("/payments/callback", json=body).status_code == status


def test_metrics_expose_the_pool(client: httpx.Client) -> None:
    gauges = pool_gauges(client)
    assert set(gauges) >= {"size", "in_use", "idle", "waiting", "max"}
    assert gauges["max"] == 10
    assert gauges["in_use"] == 0


def test_without_fault_the_pool_returns_to_idle(client: httpx.Client) -> None:
    for i in range(5):
        bad = {"order_id": 900_000 + i, "payment_id": "p", "amount_cents": 1}
        assert client.post("/payments/callback", json=bad).status_code == 404
    assert pool_gauges(client)["in_use"] == 0


def test_leak_fault_keeps_connections_in_use(order_service_factory: ServiceFactory) -> None:
    with (
        order_service_factory(ORDER_SERVICE_FAULT="leak") as service,
        httpx.Client(base_url=service.base_url, timeout=10.0) as client,
    ):
        for i in range(3):
            bad = {"order_id": 900_000 + i, "payment_id": "p", "amount_cents": 1}
            assert client.post("/payments/callback", json=bad).status_code == 404
        gauges = pool_gauges(client)
        assert gauges["in_use"] == 3
        # Correct paths still release: the leak is on the error path only.
        assert client.get("/orders/1").status_code == 200
        assert pool_gauges(client)["in_use"] == 3


@pytest.mark.exclusive  # it times requests
@pytest.mark.parametrize("fault", ["slow:80", "delay:80"])
def test_slow_fault_adds_the_delay(
    order_service_factory: ServiceFactory, client: httpx.Client, fault: str
) -> None:
    def mean_query_seconds(c: httpx.Client) -> float:
        start = time.perf_counter()
        for i in range(10):
            assert c.get(f"/orders/{i + 1}").status_code == 200
        return (time.perf_counter() - start) / 10

    normal = mean_query_seconds(client)
    with (
        order_service_factory(ORDER_SERVICE_FAULT=fault) as slow_service,
        httpx.Client(base_url=slow_service.base_url, timeout=10.0) as slow_client,
    ):
        slow = mean_query_seconds(slow_client)
        # Other endpoints are not slowed.
        assert slow_client.get("/health").status_code == 200
    # Behaviour, not speed: each slow query waited at least the 80 ms it was told to,
    # which the same queries without the fault do not (even on a loaded CI machine,
    # where a difference of means is too noisy to pin).
    assert slow >= 0.080
    assert normal < 0.080


def test_fault_parsing() -> None:
    assert parse_faults(None) == Faults()
    assert parse_faults("leak") == Faults(leak=True)
    assert parse_faults("slow:25, leak") == Faults(leak=True, slow_query_ms=25.0)
    assert parse_faults("delay:0.25") == Faults(delay_query_ms=0.25)
    for bad in ("slow:", "slow:-5", "delay:x", "delay:nan", "delay", "crash"):
        with pytest.raises(ValueError, match="ORDER_SERVICE_FAULT"):
            parse_faults(bad)


def test_service_refuses_an_unknown_fault(order_service_factory: ServiceFactory) -> None:
    from perfsuite.errors import ServiceError

    with (
        pytest.raises(ServiceError, match="unknown fault 'crash'"),
        order_service_factory(ORDER_SERVICE_FAULT="crash"),
    ):
        pass


def test_seed_data_is_repeatable() -> None:
    assert generate(users=50, skus=20, orders=30, seed=1) == generate(
        users=50, skus=20, orders=30, seed=1
    )
    assert generate(users=50, skus=20, orders=30, seed=1) != generate(
        users=50, skus=20, orders=30, seed=2
    )


def test_seed_command_loads_a_database(mariadb: MySQLServer) -> None:
    import os
    import subprocess
    import sys

    from .conftest import REPO, SCHEMA, admin_url

    mariadb.execute("CREATE DATABASE IF NOT EXISTS seed_cli", admin=True)
    url = admin_url(mariadb, "seed_cli")
    target = MySQLServer.from_url(url)
    target.run_sql_file(SCHEMA)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.order_service.seed",
            "--users",
            "30",
            "--skus",
            "10",
            "--orders",
            "5",
        ],
        cwd=REPO,
        env={**os.environ, "PERFSUITE_MYSQL_URL": url},  # not in argv: ps shows argv
        check=True,
    )
    counts = target.query(
        "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM skus), "
        "(SELECT COUNT(*) FROM orders)"
    )
    assert counts == [(30, 10, 5)]


def test_the_service_records_its_traffic_as_a_capture(
    order_service_factory: ServiceFactory, tmp_path: Path
) -> None:
    path = tmp_path / "traffic.jsonl"
    body = {"user_id": 3, "items": [{"sku_id": 1, "quantity": 2}]}
    with (
        order_service_factory(ORDER_SERVICE_RECORD=str(path)) as service,
        httpx.Client(base_url=service.base_url, timeout=10.0) as c,
    ):
        created = c.post("/orders", json=body, headers={"Authorization": "Bearer x"})
        read = c.get(f"/orders/{created.json()['id']}?fields=all")
        assert c.get("/metrics").status_code == 200  # a scrape, not traffic
    capture = read_capture(path)
    assert capture.format == "jsonl"
    post, get = list(capture)
    assert (post.method, post.target, json.loads(post.body or b"")) == ("POST", "/orders", body)
    assert post.header("authorization") == "Bearer x"  # kept: masked only in reports
    assert post.response is not None
    assert post.response.status == 201
    assert json.loads(post.response.body or b"") == created.json()
    assert (get.method, get.target) == ("GET", f"/orders/{created.json()['id']}?fields=all")
    assert get.response is not None
    assert json.loads(get.response.body or b"") == read.json()
    assert 0 <= get.offset < 10
