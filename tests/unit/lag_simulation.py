"""Synthetic replication lag for the lag gate's proofs: a queue, not the gate's model.

A replica applies the primary's writes one after another. Its heartbeats (one
each 100 ms) wait for the backlog ahead of them (Lindley's recursion of a
single-server queue: ``W' = max(0, W + work - 100 ms)``), then for their own
apply. The work that arrives in 100 ms is heavy-tailed: log-normal, and 2 % of
intervals bring a large transaction (Pareto, shape 1.5: its variance is
infinite). So lag is near its floor most of the time and climbs in sawtooth
bursts that drain slowly: autocorrelated, skewed, nothing like the
log-normal scale the gate assumes between runs.

Between runs, the replica's speed varies under the regimes of
:mod:`tests.unit.simulation` (t3, a noisy neighbour, drift), and a slower
replica (``shift``) makes both its apply and its backlog slower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.compare import CompareOptions, MetricComparison, run_metrics
from perfsuite.stats.lag import ReplicaLag, lag_blocks
from perfsuite.stats.lag_compare import LAG_METRICS, compare_lag, compare_lag_pairs
from perfsuite.stats.noise import pool_noise

from .simulation import REGIMES, kept_if_rerun_agrees, pair_scales, run_scales

HEARTBEAT_MS = 100.0


def lag_run(
    rng: np.random.Generator,
    *,
    log_scale: float = 0.0,
    seconds: int = 40,
    utilisation: float = 0.3,
    apply_ms: float = 0.5,
    work_sd: float = 0.5,
) -> BlockSet:
    """One run's measured phase as the gate's blocks, through the production path
    (heartbeats -> :func:`lag_blocks` -> :meth:`ReplicaLag.blockset`)."""
    n = int(seconds * 1000 / HEARTBEAT_MS)
    speed = math.exp(log_scale)  # > 1: a slower replica
    rho = min(utilisation * speed, 0.95)
    # Mean rho * 100 ms. work_sd 0.5: a quiet replica (p99 about 1 ms, as the example
    # service's); 1.0: a busy one, behind now and then (p99 about 100 ms).
    work = rho * HEARTBEAT_MS * rng.lognormal(-(work_sd**2) / 2, work_sd, n)
    big = rng.random(n) < 0.02
    work[big] += 5.0 * speed * (rng.pareto(1.5, int(big.sum())) + 1.0)  # from 5 ms up
    # Lindley's recursion W[i] = max(0, W[i-1] + work[i-1] - 100), from W[0] = 0, is
    # S[i] - min(S[0..i]) for the partial sums S of (work - 100): one pass of numpy.
    steps = np.concatenate([[0.0], np.cumsum(work[:-1] - HEARTBEAT_MS)])
    backlog = steps - np.minimum.accumulate(np.minimum(steps, 0.0))
    own = apply_ms * speed * rng.gamma(4.0, 0.25, n)
    lag_us = ((backlog + own) * 1000).astype(np.int64)
    written_us = (np.arange(n) * HEARTBEAT_MS * 1000).astype(np.int64)
    blocks = lag_blocks(
        "r1",
        written_us,
        lag_us,
        np.ones(n, dtype=bool),
        [("steady", "measure", 0.0, float(seconds))],
        0,
    )
    found = ReplicaLag(phases=(), seconds=(), blocks=tuple(blocks)).blockset("r1")
    assert found is not None
    return found


def lag_series(
    regime: str,
    size: int,
    rng: np.random.Generator,
    *,
    noise: float,
    shift_last: float = 0.0,
    work_sd: float = 0.5,
    seconds: int = 40,
) -> list[BlockSet]:
    """``size`` runs of one replica; the last two (the run and its rerun) slower by
    ``shift_last``."""
    scales = run_scales(regime, size, rng, noise)
    scales[-2:] += math.log1p(shift_last)
    return [lag_run(rng, log_scale=float(s), work_sd=work_sd, seconds=seconds) for s in scales]


def lag_session(
    suite: Sequence[list[BlockSet]],
    rng: np.random.Generator,
    *,
    alpha: float = 0.01,
    pooled: bool = True,
) -> list[list[MetricComparison]]:
    """Judge each test's lag as the gate does: lag's noise pooled over the suite's
    baseline runs (``pooled``; else each test's own), alpha split over the tests, a
    regression kept only when the rerun regresses too (``--perf-confirm``)."""
    options = CompareOptions(alpha=alpha)
    share = alpha / len(suite)
    prior = (
        pool_noise(
            [[run_metrics(b, LAG_METRICS) for b in runs[:-2]] for runs in suite], LAG_METRICS
        )
        if pooled
        else None
    )
    out = []
    for runs in suite:
        base = runs[:-2]
        first = compare_lag(runs[-2], base, options, alpha=share, rng=rng, prior=prior)
        if any(c.verdict == "regressed" for c in first):
            again = compare_lag(runs[-1], base, options, alpha=share, rng=rng, prior=prior)
            first = kept_if_rerun_agrees(first, again)
        out.append(first)
    return out


def false_alarms(
    regime: str,
    sessions: int,
    seed: int,
    *,
    noise: float,
    tests: int = 4,
    window: int = 5,
    work_sd: float = 0.5,
) -> int:
    """Sessions of ``tests`` A/A tests in which any lag metric was called regressed."""
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(sessions):
        suite = [
            lag_series(regime, window + 2, rng, noise=noise, work_sd=work_sd) for _ in range(tests)
        ]
        judged = lag_session(suite, rng)
        count += any(c.verdict == "regressed" for cs in judged for c in cs)
    return count


def detections(
    regime: str,
    sessions: int,
    seed: int,
    *,
    noise: float,
    shift: float,
    window: int = 5,
    work_sd: float = 0.5,
) -> dict[str, int]:
    """Of ``sessions`` single tests whose replica got slower by ``shift``: how often
    each lag metric was called regressed."""
    rng = np.random.default_rng(seed)
    caught = dict.fromkeys(LAG_METRICS, 0)
    for _ in range(sessions):
        runs = lag_series(regime, window + 2, rng, noise=noise, shift_last=shift, work_sd=work_sd)
        for c in lag_session([runs], rng)[0]:
            caught[c.metric] += c.verdict == "regressed"
    return caught


def lag_pairs(
    regime: str,
    k: int,
    rng: np.random.Generator,
    *,
    noise: float,
    correlation: float,
    shift: float = 0.0,
    work_sd: float = 0.5,
    utilisation: float = 0.3,
    seconds: int = 10,
) -> tuple[list[BlockSet], list[BlockSet]]:
    """``k`` A/B pairs of rounds of one replica: each round's speed is a part its
    pair shares (the machine of that minute, under ``regime``) plus its own (as
    :func:`tests.unit.simulation.pairs` draws them); the candidate's replica is
    slower by ``shift``. Each round's queue starts empty (a round begins once the
    replicas have caught up) and draws its own bursts."""
    sides = []
    for scales in pair_scales(regime, k, rng, noise=noise, correlation=correlation, shift=shift):
        sides.append(
            [
                lag_run(
                    rng,
                    log_scale=float(s),
                    work_sd=work_sd,
                    utilisation=utilisation,
                    seconds=seconds,
                )
                for s in scales
            ]
        )
    return sides[0], sides[1]


def ab_lag_session(
    suite: Sequence[tuple[list[BlockSet], list[BlockSet]]], *, alpha: float = 0.01
) -> list[list[MetricComparison]]:
    """Judge each test's lag pairs as the A/B gate does: alpha split over the tests."""
    options = CompareOptions(alpha=alpha)
    share = alpha / len(suite)
    return [compare_lag_pairs(base, cand, options, alpha=share) for base, cand in suite]


# A replica of each kind (lag_run's work_sd, utilisation): quiet (p99 about 1 ms, as
# the example service's), busy (behind now and then), behind (p50 tens of ms in some
# rounds: its lag is above the 10 ms floor, where only the 25 % tolerance holds it).
REPLICAS = {
    "quiet": {"work_sd": 0.5, "utilisation": 0.3},
    "busy": {"work_sd": 1.0, "utilisation": 0.3},
    "behind": {"work_sd": 1.0, "utilisation": 0.6},
}


def ab_false_alarms(
    replica: str,
    sessions: int,
    seed: int,
    *,
    seconds: int,
    pairs: int = 10,
    noise: float = 0.15,
    correlation: float = 0.5,
) -> int:
    """A/A sessions of 4 tests (one per noise regime) in which any lag metric of any
    test was called regressed."""
    rng = np.random.default_rng(seed)
    kind = REPLICAS[replica]
    count = 0
    for _ in range(sessions):
        suite = [
            lag_pairs(
                regime, pairs, rng, noise=noise, correlation=correlation, seconds=seconds, **kind
            )
            for regime in REGIMES
        ]
        count += any(c.verdict == "regressed" for cs in ab_lag_session(suite) for c in cs)
    return count


def ab_detections(
    replica: str,
    tests: int,
    seed: int,
    *,
    shift: float,
    seconds: int,
    pairs: int = 10,
    noise: float = 0.15,
    correlation: float = 0.5,
) -> dict[str, int]:
    """Of ``tests`` A/B tests whose candidate's replica is slower by ``shift`` (in a
    session of 4, the others A/A): how often each lag metric was called regressed."""
    rng = np.random.default_rng(seed)
    kind = REPLICAS[replica]
    caught = dict.fromkeys(LAG_METRICS, 0)
    for _ in range(tests):
        suite = [
            lag_pairs(
                regime,
                pairs,
                rng,
                noise=noise,
                correlation=correlation,
                seconds=seconds,
                shift=shift if n == 0 else 0.0,
                **kind,
            )
            for n, regime in enumerate(REGIMES)
        ]
        for c in ab_lag_session(suite)[0]:
            caught[c.metric] += c.verdict == "regressed"
    return caught
