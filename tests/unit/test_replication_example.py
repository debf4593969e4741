"""The example order service with a replica it reads orders from: its ``nokey``
fault (an audit table without a primary key) makes the replica fall behind under
write load, and ``replica_lag_p99`` fails; the correct service keeps it close."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.order_service.project import run_session, write_project
from perfsuite.report.rows import stale_rows

from .conftest import html_report

# A perf session of its own (three servers, the service, a load): nothing beside.
pytestmark = pytest.mark.exclusive

TESTS = """
import json
import pytest
from perfsuite import Journey, Request, Scenario, Step, json_field

def create(ctx):
    sku = ctx.pick("sku_id")
    return ctx.post("/orders", json={"user_id": ctx.pick("user_id"),
                                     "items": [{"sku_id": sku, "quantity": 1}]})

def pay(user):
    body = {"order_id": user["order_id"], "payment_id": f"pay-{user['order_id']}",
            "amount_cents": user["amount"]}
    return user.post("/payments/callback", json=body)

def query(user):  # the order page, read from the replica
    return user.get(f"/orders/{user['order_id']}")


def unpaid(status, body):  # the replica has not applied the payment (or the order) yet
    return status == 404 or json.loads(body)["status"] != "paid"


ORDER = Journey(
    "order",
    Step(
        name="create",
        build=create,
        status={201},
        extract={"order_id": json_field("id"), "amount": json_field("total_cents")},
    ),
    Step(name="pay", build=pay, status={200}),
    Step(name="query", build=query, status={200, 404}, stale=unpaid),
)

@pytest.mark.slo(replica_lag_p99="200ms")
def test_orders_reach_the_replica(perf_run, perf_phases, perf_seed, perf_mysql):
    assert perf_mysql.replicas
    data = {"user_id": [u[0] for u in perf_seed.users], "sku_id": [s[0] for s in perf_seed.skus]}
    perf_run(Scenario(ORDER, data=data, seed=3),
             [perf_phases.warmup(rate=20, duration="2s"),
              perf_phases.constant(rate=40, duration="8s")])
"""


def _run(project: Path, fault: str) -> tuple[str, dict[str, object]]:
    done, (test,) = run_session(
        project,
        "--perf-flamegraph=never",
        "--perf-markdown=summary.md",
        fault=fault,
        env={"ORDER_SERVICE_READS": "replica"},
    )
    return done.stdout, test


def test_the_nokey_fault_makes_the_replica_fall_behind(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "project",
        TESTS,
        top="replicas = 1",
        toml="[tool.perfsuite.pool]\ncheck = false\n",
        users=500,
        skus=100,
        orders=100,
    )
    correct, test = _run(project, "")
    assert test["outcome"] == "passed", correct[-3000:]
    (lag,) = test["replica_lag"]  # type: ignore[misc]
    correct_p99 = {row["phase"]: row["p99"] for row in lag["phases"]}
    (correct_stale,) = stale_rows([test])
    faulty, test = _run(project, "nokey")
    assert test["outcome"] == "failed", faulty[-3000:]
    (slo,) = [s for s in test["slo"] if s["metric"] == "replica_lag_p99"]  # type: ignore[union-attr]
    assert not slo["passed"]
    assert slo["measured"] > 200, slo
    # The order page read right after the payment: unpaid far more often behind a
    # replica that lags by seconds than behind one that lags by milliseconds.
    (stale,) = stale_rows([test])
    assert stale.endpoint == "order/query"
    assert stale.rate > 0.5, stale
    assert stale.rate > 2 * correct_stale.rate, (stale, correct_stale)
    assert "perfsuite: stale reads" in faulty
    # The pull request's summary and the HTML report show both, with what they count.
    markdown = (project / "summary.md").read_text()
    lag_table = markdown.split("Replica lag (from a heartbeat's write")[1]
    assert "| `test_orders_reach_the_replica` | replica 1 (127.0.0.1:" in lag_table, markdown
    stale_table = markdown.split("Stale reads (measured phases")[1]
    assert f"| order/query | {stale.stale:,} | {stale.ok:,} | {stale.rate:.2%} |" in stale_table
    page = html_report(project)
    assert "<h3>Stale reads (measured phases)</h3>" in page
    assert f"<td class=n>{stale.stale:,}</td><td class=n>{stale.ok:,}</td>" in page
    print(
        f"correct: lag p99 by phase {correct_p99} ms, {correct_stale}\n"
        f"nokey: {slo['text']}, {stale}"
    )
