"""What profiling the service costs, and whether the growth check cries wolf.

    python benchmarks/profiling_cost.py [--pairs 10] [--seconds 12] [--rate 300] [--hz 100]

Pairs of runs of the example order service's order query (open model, after
a 2 s warm-up; each a fresh session: a throwaway MariaDB and the service),
one with py-spy sampling the service (``--hz`` samples a second) over its
window (``--perf-flamegraph=always``; 10 s in the middle of the phase, at most
80 % of it: 12 s phases are profiled for 9.6 s) and one without (``never``),
in alternating order. Per run: the
answered requests a second, p50, p99, and the service's CPU per request; then
the medians and the median paired difference. Every run also judges growth
(threads, descriptors, connections, the asyncio task count): the service has
no leak, so every "leak" verdict is a false alarm, counted over all runs.

Run it where nothing else loads the machine; it prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from examples.order_service.project import (
    ORDER_QUERY_TEST,
    PROFILED,
    run_session,
    write_project,
)


def _run(project: Path, profiled: bool) -> dict[str, Any]:
    keep = "always" if profiled else "never"
    done, tests = run_session(project, f"--perf-flamegraph={keep}")
    entry = tests[0]
    if profiled != bool(entry.get("profiles")):
        raise SystemExit(f"profiled={profiled} but the record says otherwise:\n{done.stdout}")
    (cell,) = [c for c in entry["loads"][0]["cells"] if c["phase"] != "warmup"]
    cost = (entry.get("cost") or [None])[0] or {}
    return {
        "ok_rps": cell["summary"]["rps"],
        "p50": cell["summary"]["p50"],
        "p99": cell["summary"]["p99"],
        "cpu_ms": (cost.get("per_request") or {}).get("cpu_ms_per_request"),
        "leaks": [c["text"] for c in entry.get("counts", []) if c["verdict"] == "leak"],
        "judged": sum(c["verdict"] != "not judged" for c in entry.get("counts", [])),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--hz", type=int, default=100)
    args = parser.parse_args()
    rows: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="perfsuite-profiling-bench-") as tmp:
        tests = ORDER_QUERY_TEST.format(rate=args.rate, seconds=args.seconds)
        project = write_project(Path(tmp), tests, toml=f"{PROFILED}rate = {args.hz}\n")
        for i in range(args.pairs):
            for profiled in (i % 2 == 0, i % 2 == 1):
                rows[profiled].append(_run(project, profiled))
            print(f"pair {i + 1}: {rows[True][-1]} vs {rows[False][-1]}", flush=True)
    print(
        f"\n{args.pairs} pairs, {args.rate} req/s for {args.seconds} s, py-spy at {args.hz} Hz:\n"
    )
    print("| number | profiled (median) | not profiled (median) | paired difference (median) |")
    print("| --- | ---: | ---: | ---: |")
    for key in ("ok_rps", "p50", "p99", "cpu_ms"):
        on = [r[key] for r in rows[True] if r[key] is not None]
        off = [r[key] for r in rows[False] if r[key] is not None]
        diff = statistics.median(a - b for a, b in zip(on, off, strict=False))
        print(f"| {key} | {statistics.median(on):.4g} | {statistics.median(off):.4g} "
              f"| {diff:+.4g} |")  # fmt: skip
    runs = rows[True] + rows[False]
    leaks = [text for r in runs for text in r["leaks"]]
    judged = sum(r["judged"] for r in runs)
    print(f"\ngrowth: {len(leaks)} leak verdicts in {len(runs)} runs ({judged} counts judged)")
    for text in leaks:
        print(f"  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
