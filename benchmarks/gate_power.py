"""Where the stored-baseline gate holds: false alarms and detection, by noise regime.

    python benchmarks/gate_power.py [--sessions 1000] [--rows lognormal:0.02,...]

Synthetic sessions as in tests/unit/test_simulation.py: a suite of 4 tests,
each with 10 fresh baseline runs, judged as the gate judges (noise pooled
over the suite, the session's alpha = 1 % split over the tests, max-T over
each endpoint's metrics). Run-to-run noise regimes that are not the gate's
own model: ``lognormal``, ``t3`` (heavy tails), ``neighbour`` (10 % of runs
+30 %), ``drift`` (AR(1) across runs); error rate and throughput vary.

Columns: A/A sessions with any regressed metric, without and with the
confirming rerun (the default); then the share of sessions in which a
slowdown of one test's latency by +10 %, +20 %, +50 % was reported as a p50
regression (with the rerun).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from simulation import series, session

from perfsuite.stats.compare import CompareOptions

ROWS = (
    "lognormal:0.02,lognormal:0.06,lognormal:0.15,"
    "neighbour:0.02,neighbour:0.06,t3:0.06,drift:0.06,drift:0.15"
)
SHIFTS = (0.10, 0.20, 0.50)


def _row(regime: str, noise: float, sessions: int, options: CompareOptions) -> list[float]:
    rng = np.random.default_rng(int(noise * 1000) + len(regime))
    alarms = {False: 0, True: 0}
    caught = dict.fromkeys(SHIFTS, 0)
    for _ in range(sessions):
        suite = [series(regime, 12, rng, noise=noise, blocks=12) for _ in range(4)]
        for confirm in (False, True):
            verdicts = session(suite, options, rng, confirm=confirm)
            alarms[confirm] += any(c.verdict == "regressed" for cs in verdicts for c in cs)
        for shift in SHIFTS:
            slow = series(regime, 12, rng, noise=noise, blocks=12, shift_last=shift)
            first = session([slow, *suite[1:]], options, rng)[0]
            caught[shift] += {c.metric: c.verdict for c in first}["p50"] == "regressed"
    return [alarms[False] / sessions, alarms[True] / sessions] + [
        caught[s] / sessions for s in SHIFTS
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rows", default=ROWS, help="regime:noise,...")
    args = parser.parse_args()
    options = CompareOptions()
    print(f"{args.sessions} sessions of 4 tests per row; 10 baseline runs per test")
    print(
        "| run-to-run noise | false alarms, no rerun | false alarms (default) "
        + "".join(f"| +{s:.0%} p50 caught " for s in SHIFTS)
        + "|"
    )
    print("| --- | ---: | ---: " + "| ---: " * len(SHIFTS) + "|")
    for row in args.rows.split(","):
        regime, noise = row.split(":")
        start = time.perf_counter()
        cells = _row(regime, float(noise), args.sessions, options)
        print(
            f"| {regime} {float(noise):.0%} | "
            + " | ".join(f"{x:.1%}" for x in cells)
            + f" |  <!-- {time.perf_counter() - start:.0f} s -->",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
