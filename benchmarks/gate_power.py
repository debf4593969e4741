"""Where the regression gate holds: false alarms and detection vs run-to-run noise.

    python benchmarks/gate_power.py [--comparisons 1000] [--shift 0.10]

Synthetic runs as in tests/unit/test_simulation.py (log-normal latencies with
AR(1) autocorrelation, 30 blocks of 700 requests, a log-normal run-to-run
scale); each comparison takes the previous 10 runs as its baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from simulation import simulate_runs

from perfsuite.stats.compare import CompareOptions, compare


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--comparisons", type=int, default=1000)
    parser.add_argument("--shift", type=float, default=0.10)
    parser.add_argument("--noise", default="0,0.005,0.01,0.015,0.02,0.03,0.04,0.06")
    args = parser.parse_args()
    options = CompareOptions(resamples=200)
    n, window = args.comparisons, 10
    print(f"{n} A/A and {n} shifted (+{args.shift:.0%} latency) comparisons per level")
    print("| run-to-run noise | false alarms (any metric) | p95 regressed | p95 inconclusive |")
    print("| ---: | ---: | ---: | ---: |")
    for noise in (float(x) for x in args.noise.split(",")):
        rng = np.random.default_rng(int(noise * 10_000) + 1)
        runs = simulate_runs(n + window, rng=rng, run_noise=noise, per_block=700)
        shifted = simulate_runs(n, rng=rng, run_noise=noise, per_block=700, shift=args.shift)
        alarms = caught = unsure = 0
        for i in range(n):
            base = runs[i : i + window]
            aa = compare(runs[i + window], base, options, rng=rng)
            alarms += any(c.verdict == "regressed" for c in aa)
            p95 = {c.metric: c.verdict for c in compare(shifted[i], base, options, rng=rng)}["p95"]
            caught += p95 == "regressed"
            unsure += p95 == "inconclusive"
        print(
            f"| {noise:.1%} | {alarms / n:.1%} | {caught / n:.1%} | {unsure / n:.1%} |", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
