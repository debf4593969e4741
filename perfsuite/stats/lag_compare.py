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
In A/B runs the rounds of each pair are judged as latency's are (a paired t on
log-ratios), with the same practical change and heartbeats, the floor taken
on the base build's rounds. Measured by simulation (``tests/unit/test_lag_simulation.py``,
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
from perfsuite.stats.paired import compare_pairs

__all__ = [
    "BEYOND",
    "LAG_FLOOR_MS",
    "LAG_METRICS",
    "LAG_TOLERANCE",
    "compare_lag",
    "compare_lag_pairs",
]

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
    chosen, fewest = _lag_options([current, *baselines], baselines, options, floor_ms, tolerance)
    found = {}
    if chosen.metrics:
        found = _noted(
            compare(current, baselines, chosen, prior=prior, alpha=alpha, rng=rng),
            floor_ms,
            tolerance,
        )
    return _every_metric(found, [current], options, fewest)


def compare_lag_pairs(
    base: Sequence[BlockSet],
    candidate: Sequence[BlockSet],
    options: CompareOptions,
    *,
    alpha: float,
    floor_ms: float = LAG_FLOOR_MS,
    tolerance: float = LAG_TOLERANCE,
) -> list[MetricComparison]:
    """A/B: each lag percentile of the candidate's rounds against the base's, pair by
    pair (:func:`perfsuite.stats.paired.compare_pairs`), with the same practical
    change and heartbeats as against baselines; the floor is the base's median."""
    chosen, fewest = _lag_options([*base, *candidate], base, options, floor_ms, tolerance)
    found = {}
    if chosen.metrics:
        found = _noted(compare_pairs(base, candidate, chosen, alpha=alpha), floor_ms, tolerance)
    return _every_metric(found, candidate, options, fewest)


def _lag_options(
    every: Sequence[BlockSet],
    reference: Sequence[BlockSet],
    options: CompareOptions,
    floor_ms: float,
    tolerance: float,
) -> tuple[CompareOptions, int]:
    """The lag percentiles that every run has heartbeats enough for, each with its
    tolerance (the floor as a share of the ``reference`` runs' median: a change must
    pass both); and the fewest heartbeats of a run."""
    fewest = int(
        min((min(b.requests.sum(), b.seconds.sum() * PER_SECOND) for b in every), default=0)
    )
    judged = tuple(m for m in LAG_METRICS if fewest >= needed(m))
    tolerances = {}
    for metric in judged:
        level = float(np.median([b.metric(metric) for b in reference]))
        tolerances[metric] = max(tolerance, floor_ms / level) if level > 0 else tolerance
    return dataclasses.replace(options, metrics=judged, tolerances=tolerances), fewest


def _noted(
    found: Sequence[MetricComparison], floor_ms: float, tolerance: float
) -> dict[str, MetricComparison]:
    note = f", a change under {tolerance:.0%} or {floor_ms:g} ms is none"
    return {c.metric: c if c.reason else dataclasses.replace(c, method=c.method + note)
            for c in found}  # fmt: skip


def _every_metric(
    found: dict[str, MetricComparison],
    current: Sequence[BlockSet],
    options: CompareOptions,
    fewest: int,
) -> list[MetricComparison]:
    """Every lag percentile (the ``current`` runs' mean): those not judged say why."""
    for metric in LAG_METRICS:
        if metric not in found:
            why = (
                f"too few heartbeats to judge ({fewest} in a run; {needed(metric):,} are "
                f"needed, {BEYOND} above it: a longer phase or a shorter heartbeat)"
            )
            value = float(np.mean([b.metric(metric) for b in current])) if current else math.nan
            found[metric] = unjudged(metric, value, options, why)
    return [found[m] for m in LAG_METRICS]
