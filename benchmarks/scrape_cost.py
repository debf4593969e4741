"""What scraping the service once a second costs the measurement.

    python benchmarks/scrape_cost.py [--pairs 8] [--seconds 20] [--rate 500]

Pairs of runs of the example order service's order query (open model, after
a 2 s warm-up), one with the service's metrics scraped once a second (a
``pin`` in ``[tool.perfsuite.metrics]``) and one without, in alternating
order, each a fresh session (a throwaway MariaDB and the service). Per run:
p50, p99, the largest event-loop stall of any second, late sends, and the
generator's CPU; then the median of the paired differences. Whether every
perf test should be scraped by default depends on these being within the
run-to-run noise.

Run it where nothing else loads the machine; it prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

PROJECT = f"""
[tool.perfsuite]
mysql = "process"
database = "orders"
sql = ["{REPO / "examples/order_service/schema.sql"}"]

[tool.perfsuite.service]
command = "{{python}} -m examples.order_service --port {{port}}"
health = "/health"
startup_timeout = "30s"

[tool.perfsuite.pool]
check = false
metrics = "order-service"
"""
SCRAPED = '\n[tool.perfsuite.metrics]\npin = ["order_service_db_pool_in_use"]\n'

CONFTEST = """
import pytest
from examples.order_service.seed import seed_database

@pytest.fixture(scope="session")
def perf_seed(perf_mysql):
    return seed_database(perf_mysql, users=2_000, skus=500, orders=5_000)
"""

TESTS = """
from perfsuite import Request, Scenario

def order(ctx):
    return ctx.get(f"/orders/{{ctx.pick('order')[0]}}")

def test_open(perf_run, perf_phases, perf_seed):
    scenario = Scenario(Request(name="order_query", build=order, status={{200}}),
                        data={{"order": list(perf_seed.orders)}}, seed=1)
    perf_run(scenario, [perf_phases.warmup(rate=100, duration="2s"),
                        perf_phases.constant(rate={rate}, duration="{seconds}s")])
"""


def _run(project: Path, scraped: bool) -> dict[str, float]:
    (project / "pyproject.toml").write_text(PROJECT + (SCRAPED if scraped else ""))
    env = {**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": "unix:///nonexistent.sock"}
    before = set((project / "reports" / "runs").glob("*.json"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--perf-profile=full"],
        cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    new = sorted(set((project / "reports" / "runs").glob("*.json")) - before)
    if not new:
        raise SystemExit(f"no run record:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    entry: dict[str, Any] = json.loads(new[-1].read_text())["tests"][0]
    if scraped != bool(entry.get("metrics")):
        raise SystemExit(f"scraped={scraped} but the record says otherwise")
    load = entry["loads"][0]
    (cell,) = [c for c in load["cells"] if c["phase"] != "warmup"]
    generator = load["generator"]
    return {
        "p50": cell["summary"]["p50"],
        "p99": cell["summary"]["p99"],
        "stall": generator["loop_stall_max_ms"],
        "late": generator["late"],
        "cpu": generator["cpu"],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=500)
    args = parser.parse_args()
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="perfsuite-scrape-bench-") as tmp:
        project = Path(tmp)
        (project / "conftest.py").write_text(CONFTEST)
        (project / "test_bench.py").write_text(TESTS.format(rate=args.rate, seconds=args.seconds))
        (project / "reports" / "runs").mkdir(parents=True)
        for i in range(args.pairs):
            for scraped in (i % 2 == 0, i % 2 == 1):
                rows[scraped].append(_run(project, scraped))
            print(f"pair {i + 1}: {rows[True][-1]} vs {rows[False][-1]}", flush=True)
    print(f"\n{args.pairs} pairs, {args.rate} req/s for {args.seconds} s:\n")
    print("| number | scraped (median) | not scraped (median) | paired difference (median) |")
    print("| --- | ---: | ---: | ---: |")
    for key in ("p50", "p99", "stall", "late", "cpu"):
        on = [r[key] for r in rows[True]]
        off = [r[key] for r in rows[False]]
        diff = statistics.median(a - b for a, b in zip(on, off, strict=True))
        print(f"| {key} | {statistics.median(on):.4g} | {statistics.median(off):.4g} "
              f"| {diff:+.4g} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
