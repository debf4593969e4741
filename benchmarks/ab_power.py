"""Where the A/B gate holds: false alarms and detection, by pair correlation.

    python benchmarks/ab_power.py [--sessions 1000] [--pairs 10] [--noise 0.15]

Synthetic sessions as in tests/unit/test_ab_simulation.py: a suite of 4
tests (log-normal, heavy-tailed, noisy-neighbour and drifting round noise),
each run as ``--pairs`` A/B pairs of rounds and judged as the A/B gate
judges (paired t on log-ratios, max-T over each endpoint's metrics, the
session's alpha = 1 % split over the tests). The pair correlation is the
share of a round's noise that its pair shares (the machine of that minute).

Columns: A/A sessions with any regressed metric; then the share of sessions
in which a slowdown of the first test's latency was reported as a p50
regression; and the median of what the gate says it can detect (its
minimum detectable effect on p50).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from simulation import REGIMES, ab_session, pairs

from perfsuite.stats.compare import CompareOptions

SHIFTS = (0.10, 0.20, 0.30, 0.50)


def _row(correlation: float, args: argparse.Namespace, options: CompareOptions) -> list[str]:
    rng = np.random.default_rng(int(correlation * 1000))
    alarms = 0
    caught = dict.fromkeys(SHIFTS, 0)
    mdes = []

    def suite(shift: float) -> list:
        return [
            pairs(
                r,
                args.pairs,
                rng,
                noise=args.noise,
                correlation=correlation,
                shift=shift if i == 0 else 0.0,
                blocks=10,
            )
            for i, r in enumerate(REGIMES)
        ]

    for _ in range(args.sessions):
        verdicts = ab_session(suite(0.0), options)
        alarms += any(c.verdict == "regressed" for cs in verdicts for c in cs)
        mdes.append({c.metric: c for c in verdicts[0]}["p50"].mde)
        for shift in SHIFTS:
            first = ab_session(suite(shift), options)[0]
            caught[shift] += {c.metric: c.verdict for c in first}["p50"] == "regressed"
    n = args.sessions
    return (
        [f"{alarms / n:.1%}"]
        + [f"{caught[s] / n:.1%}" for s in SHIFTS]
        + [f"{float(np.median(mdes)):.1%}"]
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--correlations", default="0.5,0.8,0.9,0.95")
    args = parser.parse_args()
    options = CompareOptions()
    print(
        f"{args.sessions} sessions of 4 tests per row; {args.pairs} pairs per test; "
        f"round-to-round noise {args.noise:.0%}"
    )
    print(
        "| pair correlation | false alarms (A/A) "
        + "".join(f"| +{s:.0%} p50 caught " for s in SHIFTS)
        + "| detects (median) |"
    )
    print("| ---: | ---: " + "| ---: " * len(SHIFTS) + "| ---: |")
    for corr in (float(c) for c in args.correlations.split(",")):
        start = time.perf_counter()
        cells = _row(corr, args, options)
        print(
            f"| {corr:g} | "
            + " | ".join(cells)
            + f" |  <!-- {time.perf_counter() - start:.0f} s -->",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
