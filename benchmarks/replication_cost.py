"""What a replica costs: start-up, and the binary log's toll on the example service.

    python benchmarks/replication_cost.py [--rounds 3] [--pairs 4] [--seconds 10]

1. **Start-up.** ``--rounds`` times each, alternating: the seconds until a
   throwaway MariaDB is ready alone (no binary log), and with one replica
   (the primary with its binary log, the replica initialised, started and
   replicating).
2. **Throughput.** ``--pairs`` pairs of sessions of the example order service
   under a write load (closed model, 16 users, each creating an order and
   paying for it, no think time, ``--seconds``), alternating which goes
   first: without replicas, and with one replica (binary log, row-based;
   the lag measured, its heartbeats included); and with the replica stopped
   before the load (the primary's binary log written, nothing applying it:
   the log's own cost). Successful journeys per second, p50/p99 of the
   payment, and the replica's lag p99.

Run it where nothing else loads the machine; it prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from examples.order_service.project import run_session, write_project
from perfsuite.config import MySQLConfig, ReplicationConfig
from perfsuite.provision.mysql_process import mysql_process

TESTS = """
import os
from perfsuite import Journey, Scenario, Step, json_field

def create(ctx):
    return ctx.post("/orders", json={{"user_id": ctx.pick("user_id"),
                                     "items": [{{"sku_id": ctx.pick("sku_id"), "quantity": 1}}]}})

def pay(user):
    body = {{"order_id": user["order_id"], "payment_id": f"pay-{{user['order_id']}}",
            "amount_cents": user["amount"]}}
    return user.post("/payments/callback", json=body)

ORDER = Journey(
    "order",
    Step(name="create", build=create, status={{201}},
         extract={{"order_id": json_field("id"), "amount": json_field("total_cents")}}),
    Step(name="pay", build=pay, status={{200}}),
)

def test_writes(perf_run, perf_phases, perf_seed, perf_mysql):
    if os.environ.get("STOP_REPLICA"):  # the binary log alone: nobody applies it
        for replica in perf_mysql.replicas:
            replica.execute("STOP SLAVE", admin=True)
    data = {{"user_id": [u[0] for u in perf_seed.users], "sku_id": [s[0] for s in perf_seed.skus]}}
    perf_run(Scenario(ORDER, data=data, seed=3),
             [perf_phases.users(users=4, duration="2s", name="warm", role="warmup"),
              perf_phases.users(users=16, duration="{seconds}s")])
"""


def _startup(replicas: int) -> float:
    began = time.monotonic()
    config = MySQLConfig(database="orders", replication=ReplicationConfig(replicas=replicas))
    with mysql_process(config):
        return time.monotonic() - began


def _measured(test: dict[str, Any]) -> dict[str, float]:
    load = test["loads"][0]
    measured = [p for p in load["phases"] if p["role"] == "measure"]
    seconds = sum(p["duration"] for p in measured)
    names = {p["name"] for p in measured}
    pays = [c for c in load["cells"] if c["phase"] in names and c["endpoint"].endswith("pay")]
    out = {
        "journeys/s": sum(c["summary"]["ok"] for c in pays) / seconds,
        "p50": statistics.median(c["summary"]["p50"] for c in pays),
        "p99": statistics.median(c["summary"]["p99"] for c in pays),
    }
    for lag in test.get("replica_lag") or []:
        if lag:
            rows = [r for r in lag["phases"] if r["role"] == "measure"]
            out["lag p99"] = max(r["p99"] for r in rows)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=4, help="rounds of the three")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()

    alone, paired = [], []
    for _ in range(args.rounds):
        alone.append(_startup(0))
        paired.append(_startup(1))
    print(f"\n| servers | start-up, s (median of {args.rounds}) | each run |")
    print("| --- | ---: | --- |")
    for label, times in (("primary alone", alone), ("primary + 1 replica", paired)):
        each = ", ".join(f"{t:.2f}" for t in times)
        print(f"| {label} | {statistics.median(times):.2f} | {each} |")

    with tempfile.TemporaryDirectory(prefix="perfsuite-repl-bench-") as tmp:
        pool = "[tool.perfsuite.pool]\ncheck = false\n"
        unwatched = pool + "[tool.perfsuite.replication]\nlag = false\n"  # nothing applies it
        configs = {
            "no replica": ("", pool),
            "1 replica": ("replicas = 1", pool),
            "binary log only": ("replicas = 1", unwatched),
        }
        projects = {
            label: write_project(
                Path(tmp) / label.replace(" ", "_"),
                TESTS.format(seconds=args.seconds),
                top=top,
                toml=toml,
                users=2_000,
                skus=500,
                orders=100,
            )
            for label, (top, toml) in configs.items()
        }
        rows: dict[str, list[dict[str, float]]] = {label: [] for label in projects}
        labels = list(projects)
        for pair in range(args.pairs):
            order = labels[pair % 3 :] + labels[: pair % 3]  # each first in turn
            for label in order:
                env = {"STOP_REPLICA": "1"} if label == "binary log only" else {}
                _, (test,) = run_session(projects[label], "--perf-flamegraph=never", env=env)
                rows[label].append(_measured(test))
    print(f"\n{args.pairs} rounds, 16 users creating and paying orders for {args.seconds} s:\n")
    print("| servers | journeys/s | pay p50 ms | pay p99 ms | lag p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, runs in rows.items():
        cells = []
        for key in ("journeys/s", "p50", "p99", "lag p99"):
            stopped = label == "binary log only" and key == "lag p99"  # nothing applied
            values = [r[key] for r in runs if key in r and not stopped]
            cells.append(f"{statistics.median(values):,.2f}" if values else "-")
        print(f"| {label} | {' | '.join(cells)} |")
    base, with_replica, logged = (statistics.median(r["journeys/s"] for r in rows[k]) for k in rows)
    print(f"\nthroughput with a replica / without: {with_replica / base:.3f}")
    print(f"throughput with the binary log alone / without: {logged / base:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
