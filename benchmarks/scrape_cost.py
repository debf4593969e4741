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
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from examples.order_service.project import ORDER_QUERY_TEST, run_session, write_project

TOML = """
[tool.perfsuite.pool]
check = false
metrics = "order-service"
"""
SCRAPED = '\n[tool.perfsuite.metrics]\npin = ["order_service_db_pool_in_use"]\n'


def _run(project: Path, tests: str, scraped: bool) -> dict[str, float]:
    write_project(project, tests, toml=TOML + (SCRAPED if scraped else ""))
    # No profile either way: only the scraping differs between the two.
    _, entries = run_session(project, "--perf-flamegraph=never")
    entry = entries[0]
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
        tests = ORDER_QUERY_TEST.format(rate=args.rate, seconds=args.seconds)
        project = Path(tmp)
        for i in range(args.pairs):
            for scraped in (i % 2 == 0, i % 2 == 1):
                rows[scraped].append(_run(project, tests, scraped))
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
