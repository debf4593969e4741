"""Cost per request on the real example service: how steady it is, what it catches,
and what performance_schema costs.

    python benchmarks/cost_example.py [--runs 20] [--baseline-runs 5]
                                      [--overhead-pairs 5] [--seconds 10]

Three parts, each on fresh sessions (a throwaway MariaDB and the example
order service, started from this checkout):

1. **Noise.** ``--runs`` runs of the order query (open model, 200 req/s for
   ``--seconds``, after a 2 s warm-up) on the correct service: the run-to-run
   coefficient of variation of queries, rows examined, database time and
   CPU per request, next to that of p50 and p95.
2. **Detection.** ``--baseline-runs`` of them are saved as the baseline;
   then ``--runs`` A/A runs (the correct service) and ``--runs`` runs with
   one more query per request (the ``slow:0.000001`` fault: a ``SELECT
   SLEEP`` of a nanosecond) are compared with it: how often
   ``queries_per_request`` and p50 say ``regressed``, and how often latency
   says ``inconclusive``.
3. **Overhead.** ``--overhead-pairs`` pairs of closed-model runs (16 users
   for ``--seconds``, no think time) with and without performance_schema
   (``--perf-no-cost``), in alternating order: the throughput and p50 of
   each, and their ratio.

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

TOML = """
[tool.perfsuite.pool]
check = false
"""

TESTS = """
import os
from perfsuite import Request, Scenario

def order(ctx):
    return ctx.get(f"/orders/{{ctx.pick('order')[0]}}")

def _scenario(perf_seed):
    return Scenario(Request(name="order_query", build=order, status={{200}}),
                    data={{"order": list(perf_seed.orders)}}, seed=1)

def test_open(perf_run, perf_phases, perf_seed):
    perf_run(_scenario(perf_seed), [perf_phases.warmup(rate=100, duration="2s"),
                                   perf_phases.constant(rate=200, duration="{seconds}s")])

def test_closed(perf_run, perf_phases, perf_seed):
    perf_run(_scenario(perf_seed), [perf_phases.users(users=16, duration="{seconds}s")])
"""


def _session(project: Path, test: str, fault: str, *args: str) -> dict[str, Any]:
    # No CPU profile of the service: its sampling would add to the cost measured.
    _, tests = run_session(project, "-k", test, "--perf-flamegraph=never", *args, fault=fault)
    return tests[0]


def _measured(entry: dict[str, Any]) -> dict[str, float]:
    load = entry["loads"][0]
    cells = [c for c in load["cells"] if c["phase"] != "warmup"]
    requests = sum(c["summary"]["ok"] for c in cells)  # successful ones
    duration = sum(p["duration"] for p in load["phases"] if p["role"] == "measure")
    out = {
        "p50": statistics.median(c["summary"]["p50"] for c in cells),
        "p95": statistics.median(c["summary"]["p95"] for c in cells),
        "rps": requests / duration if duration else float("nan"),
    }
    for cost in entry.get("cost") or []:
        if cost:
            out |= {k: v for k, v in cost["per_request"].items() if v is not None}
    return out


def _cv(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{statistics.stdev(values) / mean:.2%}" if mean and len(values) > 1 else "-"


def _verdicts(entry: dict[str, Any], where: str, metric: str) -> str:
    for c in entry["comparisons"].get(where, []):
        if c["metric"] == metric:
            return str(c["verdict"])
    return "-"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--overhead-pairs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--parts", default="noise,detection,overhead", help="which parts (comma-separated)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfsuite-cost-bench-") as tmp:
        project = write_project(Path(tmp), TESTS.format(seconds=args.seconds), toml=TOML)
        started = time.monotonic()

        parts = set(args.parts.split(","))
        if "noise" in parts:
            runs = [_measured(_session(project, "test_open", "")) for _ in range(args.runs)]
            names = ["queries_per_request", "rows_examined_per_request", "db_ms_per_request",
                     "cpu_ms_per_request", "p50", "p95"]  # fmt: skip
            print(f"\n{args.runs} runs of the correct service, 200 req/s for {args.seconds} s:\n")
            print("| metric | mean | run-to-run CV |")
            print("| --- | ---: | ---: |")
            for name in names:
                values = [r[name] for r in runs if name in r]
                print(f"| {name} | {statistics.fmean(values):.4g} | {_cv(values)} |")

        if "detection" in parts:
            for _ in range(args.baseline_runs):
                _session(project, "test_open", "", "--perf-save-baseline")
            rows = []
            for label, fault in (
                ("A/A (correct service)", ""),
                ("+1 query per request", "slow:0.000001"),
            ):
                entries = [
                    _session(project, "test_open", fault, "--perf-compare", "--perf-no-confirm")
                    for _ in range(args.runs)
                ]
                q = [_verdicts(e, "cost", "queries_per_request") for e in entries]
                p50 = [_verdicts(e, "order_query", "p50") for e in entries]
                values = [_measured(e).get("queries_per_request") for e in entries]
                odd = [(v, w) for v, w in zip(values, q, strict=True) if w != q[0]]
                print(f"{label}: queries per request {min(values):.5f} to {max(values):.5f}; "
                      f"verdicts other than {q[0]!r}: {odd or 'none'}", flush=True)  # fmt: skip
                regressed = q.count("regressed")
                rows.append(
                    f"| {label} | {len(entries)} | {regressed} | {p50.count('regressed')} "
                    f"| {p50.count('inconclusive')} | {p50.count('unchanged')} |"
                )
            print(f"\nCompared with {args.baseline_runs} baseline runs (no rerun):\n")
            print("| runs of | runs | queries_per_request regressed | p50 regressed "
                  "| p50 inconclusive | p50 unchanged |")  # fmt: skip
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            print("\n".join(rows))

        if "overhead" in parts:
            with_ps, without = [], []
            for i in range(args.overhead_pairs):
                order = [("on", ()), ("off", ("--perf-no-cost",))]
                if i % 2:
                    order.reverse()
                for side, extra in order:
                    m = _measured(_session(project, "test_closed", "", *extra))
                    (with_ps if side == "on" else without).append(m)
            print(f"\nperformance_schema on vs off, {args.overhead_pairs} pairs, 16 users, "
                  f"{args.seconds} s, alternating:\n")  # fmt: skip
            print("| | req/s (median) | p50 ms (median) |")
            print("| --- | ---: | ---: |")
            for label, ms in (("on", with_ps), ("off (--perf-no-cost)", without)):
                rps = statistics.median(m["rps"] for m in ms)
                p50 = statistics.median(m["p50"] for m in ms)
                print(f"| {label} | {rps:,.0f} | {p50:.2f} |")
            ratio = statistics.median(
                a["rps"] / b["rps"] for a, b in zip(with_ps, without, strict=True)
            )
            print(f"\nthroughput with / without, median of pairs: {ratio:.3f}")
        print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
