"""Is a replica's lag worse than in its baseline runs? Latency's comparison, with
lag's own practical change (pure).

A replica's heartbeats of the measured phases are blocks of a second, as a
load's requests are, and are judged by :func:`perfsuite.stats.compare.compare`
with lag's run-to-run noise pooled over the folder's replicas and tests (not
latency's). What differs is what counts as a change: lag is a queue, quiet most of
the time and in bursts when the replica falls behind, so its percentiles jump
from run to run by more than latency's, and a few milliseconds of it are no
stale read anyone sees. A change must reach :data:`LAG_TOLERANCE` of the
baseline *and* :data:`LAG_FLOOR_MS`; and a percentile is judged only where
every run has :data:`BEYOND` heartbeats above it (p95: 400 heartbeats, 40 s at
the default interval; p99: 2,000), as the gate asks latency for blocks enough.
Measured by simulation (``tests/unit/test_lag_simulation.py``,
``benchmarks/lag_gate_power.py``):
without them, A/A sessions of 4 tests raised 2.4 to 3.6 % false alarms; with
10 heartbeats above a percentile, up to 1.3 % (a busy replica, drifting
noise); with 20, the bounds in the README.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.compare import CompareOptions, MetricComparison, compare, unjudged
from perfsuite.stats.noise import NoisePrior

__all__ = ["BEYOND", "LAG_FLOOR_MS", "LAG_METRICS", "LAG_TOLERANCE", "compare_lag"]

LAG_METRICS = ("p50", "p95", "p99")
LAG_TOLERANCE = 0.25  # relative: a quarter more lag
LAG_FLOOR_MS = 10.0  # absolute: under a read that follows its write by 10 ms, no one sees it
BEYOND = 20  # heartbeats above a percentile for it to be judged
# Lag is a queue's: heartbeats closer than 100 ms apart are not more samples of it (a
# backlog lasts longer), so a run counts at most this many a second, whatever its interval.
PER_SECOND = 10
_Q = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def needed(metric: str) -> int:
    """Heartbeats a run needs for ``metric`` to be judged."""
    return math.ceil(BEYOND / (1.0 - _Q[metric]) - 1e-9)


def compare_lag(
    current: BlockSet,
    baselines: Sequence[BlockSet],
    options: CompareOptions,
    *,
    alpha: float,
    rng: np.random.Generator,
    prior: NoisePrior | None = None,
    floor_ms: float = LAG_FLOOR_MS,
    tolerance: float = LAG_TOLERANCE,
) -> list[MetricComparison]:
    """Each lag percentile of ``current`` against the baseline runs' (``prior``: the
    run-to-run noise of the lag of every replica and test in the baseline folder)."""
    fewest = int(
        min(min(b.requests.sum(), b.seconds.sum() * PER_SECOND) for b in [current, *baselines])
    )
    judged = tuple(m for m in LAG_METRICS if fewest >= needed(m))
    tolerances = {}
    for metric in judged:
        level = float(np.median([b.metric(metric) for b in baselines]))
        # The floor as a share of this baseline: a change must pass both.
        tolerances[metric] = max(tolerance, floor_ms / level) if level > 0 else tolerance
    found: dict[str, MetricComparison] = {}
    if judged:
        chosen = dataclasses.replace(options, metrics=judged, tolerances=tolerances)
        note = f", a change under {tolerance:.0%} or {floor_ms:g} ms is none"
        for c in compare(current, baselines, chosen, prior=prior, alpha=alpha, rng=rng):
            found[c.metric] = c if c.reason else dataclasses.replace(c, method=c.method + note)
    for metric in LAG_METRICS:
        if metric not in found:
            why = (
                f"too few heartbeats to judge ({fewest} in a run; {needed(metric):,} are "
                f"needed, {BEYOND} above it: a longer phase or a shorter heartbeat)"
            )
            found[metric] = unjudged(metric, current.metric(metric), options, why)
    return [found[m] for m in LAG_METRICS]
