"""The A/B lag gate by simulation: false alarms and detection, per replica and round.

    python benchmarks/lag_ab_power.py [--sessions 1000] [--tests 200]

A replica is a queue (tests/unit/lag_simulation.py): quiet (p99 about 1 ms, as
the example service's), busy (behind now and then) or behind (tens of ms in
some rounds). 10 A/B pairs of rounds of 10 s or 40 s (heartbeats every 100 ms),
15 % noise of the replica's speed from round to round, half of it shared by
the two rounds of a pair; a session is 4 tests, one per noise regime
(log-normal, t3, a noisy neighbour, drift), judged at the session's alpha of
1 %. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.lag_simulation import REPLICAS, ab_detections, ab_false_alarms


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--tests", type=int, default=200, help="A/B tests per shift")
    parser.add_argument("--seconds", type=int, nargs="+", default=[10, 40])
    args = parser.parse_args()
    print("A/A sessions of 4 tests with any lag metric regressed (10 pairs a test)")
    print("| replica | round | sessions | false alarms |")
    print("| --- | ---: | ---: | ---: |")
    for replica in REPLICAS:
        for seconds in args.seconds:
            found = ab_false_alarms(replica, args.sessions, seed=11, seconds=seconds)
            share = f"{found} ({found / args.sessions:.1%})"
            print(f"| {replica} | {seconds} s | {args.sessions} | {share} |", flush=True)
    print("\nThe candidate's replica slower by a factor: tests with each metric regressed")
    print("| replica | round | slower | tests | p50 | p95 | p99 |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for replica in REPLICAS:
        for seconds in args.seconds:
            for shift in (0.5, 1.0, 2.0):
                got = ab_detections(replica, args.tests, seed=5, shift=shift, seconds=seconds)
                cells = " | ".join(f"{got[m] / args.tests:.0%}" for m in ("p50", "p95", "p99"))
                print(
                    f"| {replica} | {seconds} s | x{1 + shift:g} | {args.tests} | {cells} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
