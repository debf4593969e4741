"""The lag gate by simulation: false alarms and detection, per regime and replica.

    python benchmarks/lag_gate_power.py [--scenario quiet|busy] [--sessions 1000]

A replica is a queue (tests/unit/lag_simulation.py): quiet (p99 about 1 ms, as
the example service's) or busy (behind now and then, p99 about 100 ms).
Heartbeats every 100 ms for 40 s a run, 5 baseline runs, 15 % run-to-run noise
of the replica's speed. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.lag_simulation import detections, false_alarms


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=("quiet", "busy"), default="quiet")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--tests", type=int, default=200, help="single tests per shift")
    args = parser.parse_args()
    sd = 0.5 if args.scenario == "quiet" else 1.0
    print(f"{args.scenario} replica: A/A sessions of 4 tests with any lag metric regressed")
    print("| regime | sessions | false alarms |")
    print("| --- | ---: | ---: |")
    for regime in ("lognormal", "t3", "neighbour", "drift"):
        found = false_alarms(regime, args.sessions, seed=7, noise=0.15, work_sd=sd)
        print(f"| {regime} | {args.sessions} | {found} ({found / args.sessions:.1%}) |", flush=True)
    print(f"\n{args.scenario} replica slower by a factor: tests with each metric regressed")
    print("| slower | tests | p50 | p95 | p99 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for shift in (0.5, 1.0, 2.0, 4.0):
        got = detections("lognormal", args.tests, seed=3, noise=0.15, shift=shift, work_sd=sd)
        cells = " | ".join(f"{got[m] / args.tests:.0%}" for m in ("p50", "p95", "p99"))
        print(f"| x{1 + shift:g} | {args.tests} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
