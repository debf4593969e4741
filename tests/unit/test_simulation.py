"""The gate's error rates, measured over thousands of synthetic comparisons.

Runs are synthetic: log-normal latencies (median 20 ms, sigma 0.5) with AR(1)
autocorrelation (phi 0.7) inside a run, 30 blocks of 700 requests, and a
log-normal run-to-run scale. Each comparison takes the previous 10 runs of a
history as its baseline, as a CI history does. ``benchmarks/gate_power.py``
sweeps the noise levels; this test pins the two ends.
"""

from __future__ import annotations

import numpy as np
import pytest

from perfsuite.stats.compare import CompareOptions, compare

from .simulation import simulate_runs

# Minutes of one core at 100 %: not next to a load.
pytestmark = pytest.mark.usefixtures("quiet")

COMPARISONS = 1000
WINDOW = 10
OPTIONS = CompareOptions(resamples=200)


def _history(noise: float, seed: int) -> tuple[list, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return simulate_runs(COMPARISONS + WINDOW, rng=rng, run_noise=noise, per_block=700), rng


def test_false_alarms_stay_under_one_percent_at_6_percent_run_noise() -> None:
    runs, rng = _history(0.06, seed=21)
    alarms = sum(
        any(
            c.verdict == "regressed"
            for c in compare(runs[i + WINDOW], runs[i : i + WINDOW], OPTIONS, rng=rng)
        )
        for i in range(COMPARISONS)
    )
    assert alarms / COMPARISONS <= 0.01, f"{alarms} false alarms in {COMPARISONS} A/A comparisons"


def test_a_10_percent_p95_shift_is_caught_at_half_a_percent_run_noise() -> None:
    runs, rng = _history(0.005, seed=22)
    shifted = simulate_runs(COMPARISONS, rng=rng, run_noise=0.005, per_block=700, shift=0.10)
    caught = 0
    for i in range(COMPARISONS):
        verdicts = {
            c.metric: c.verdict for c in compare(shifted[i], runs[i : i + WINDOW], OPTIONS, rng=rng)
        }
        caught += verdicts["p95"] == "regressed"
    assert caught / COMPARISONS >= 0.95, f"caught {caught} of {COMPARISONS}"
