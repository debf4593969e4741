"""Synthetic runs for the statistics' proofs.

Inside a run: log-normal latencies with AR(1) autocorrelation (a GC pause
slows a stretch). Between runs, the noise a shared CI machine adds, in
regimes that are *not* the gate's own model (a log-normal scale, i.i.d.):

- ``lognormal``: the gate's model, the reference row;
- ``t3``: heavy tails, Student's t with 3 degrees of freedom;
- ``neighbour``: a mixture, 10 % of runs slowed by +30 % (a noisy neighbour);
- ``drift``: AR(1) across runs (phi 0.7): the machine's level wanders.

Error rates vary from run to run (a gamma-distributed rate, then binomial
errors per block), and so does throughput (each run's blocks take longer or
shorter), as on a real machine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np
from scipy.signal import lfilter

from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.compare import CompareOptions, MetricComparison, compare, run_metrics
from perfsuite.stats.hdr import hdr_indices
from perfsuite.stats.noise import pool_noise
from perfsuite.stats.paired import compare_pairs

REGIMES = ("lognormal", "t3", "neighbour", "drift")


def make_run(
    rng: np.random.Generator,
    *,
    log_scale: float = 0.0,
    blocks: int = 30,
    per_block: int = 100,
    median_ms: float = 20.0,
    sigma: float = 0.5,
    phi: float = 0.7,
    error_rate: float = 0.0,
    seconds: float = 1.0,
) -> BlockSet:
    """One run: latencies scaled by ``exp(log_scale)``, blocks of ``seconds`` each."""
    n = blocks * per_block
    shocks = rng.standard_normal(n) * sigma * math.sqrt(1 - phi**2)
    ar = lfilter([1.0], [1.0, -phi], shocks)  # stationary sd = sigma
    micros = np.exp(math.log(median_ms * 1000.0) + log_scale + ar).astype(np.int64)
    union, inverse = np.unique(hdr_indices(micros), return_inverse=True)
    cell = np.repeat(np.arange(blocks), per_block) * union.size + inverse
    counts = np.bincount(cell, minlength=blocks * union.size).reshape(blocks, union.size)
    return BlockSet(
        index=union,
        counts=counts.astype(np.int64),
        requests=np.full(blocks, per_block, dtype=np.int64),
        errors=rng.binomial(per_block, error_rate, size=blocks).astype(np.int64),
        seconds=np.full(blocks, seconds),
    )


def simulate_runs(
    runs: int,
    *,
    rng: np.random.Generator,
    run_noise: float,
    shift: float = 0.0,
    blocks: int = 30,
    per_block: int = 100,
    median_ms: float = 20.0,
    sigma: float = 0.5,
    phi: float = 0.7,
    error_rate: float = 0.0,
) -> list[BlockSet]:
    """``runs`` runs; each run's latencies are scaled by exp(N(0, run_noise)) * (1 + shift)."""
    scales = rng.normal(0.0, run_noise, size=runs) + math.log1p(shift)
    return [
        make_run(
            rng,
            log_scale=float(s),
            blocks=blocks,
            per_block=per_block,
            median_ms=median_ms,
            sigma=sigma,
            phi=phi,
            error_rate=error_rate,
        )
        for s in scales
    ]


def run_scales(regime: str, size: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """The log scale of ``size`` consecutive runs under a noise regime (sd about ``noise``)."""
    if regime == "lognormal":
        return rng.normal(0.0, noise, size)
    if regime == "t3":
        return noise * rng.standard_t(3, size) / math.sqrt(3.0)  # t3's variance is 3
    if regime == "neighbour":
        return rng.normal(0.0, noise, size) + math.log(1.3) * (rng.random(size) < 0.1)
    if regime == "drift":
        phi = 0.7
        shocks = rng.normal(0.0, noise * math.sqrt(1 - phi**2), size)
        shocks[0] = rng.normal(0.0, noise)  # start in the stationary distribution
        return lfilter([1.0], [1.0, -phi], shocks)
    raise ValueError(f"unknown regime {regime!r}")


def series(
    regime: str,
    size: int,
    rng: np.random.Generator,
    *,
    noise: float,
    shift_last: float = 0.0,
    error_rate: float = 0.002,
    **run: float,
) -> list[BlockSet]:
    """``size`` runs of one test under ``regime``; the last two (the run judged and
    its rerun) shifted by ``shift_last``."""
    scales = run_scales(regime, size, rng, noise)
    scales[-2:] += math.log1p(shift_last)
    # The error rate of a run varies (mean error_rate, CV 0.7), and so does its
    # throughput: a slower run also answers a little fewer requests per second.
    rates = error_rate * rng.gamma(2.0, 0.5, size)
    seconds = np.exp(0.3 * scales + rng.normal(0.0, 0.01, size))
    return [
        make_run(rng, log_scale=float(s), error_rate=float(e), seconds=float(t), **run)  # type: ignore[arg-type]
        for s, e, t in zip(scales, rates, seconds, strict=True)
    ]


def kept_if_rerun_agrees(
    first: list[MetricComparison], again: list[MetricComparison]
) -> list[MetricComparison]:
    """``--perf-confirm``: a regression stays only where the rerun regressed too."""
    rerun = {c.metric: c.verdict for c in again}
    return [
        c
        if c.verdict != "regressed" or rerun[c.metric] == "regressed"
        else dataclasses.replace(c, verdict="inconclusive")
        for c in first
    ]


def session(
    suite: Sequence[list[BlockSet]],
    options: CompareOptions,
    rng: np.random.Generator,
    *,
    confirm: bool = True,
) -> list[list[MetricComparison]]:
    """Judge a suite as the gate does, each test's runs being its baseline runs, then its
    run, then the rerun that confirms a regression (``--perf-confirm``): the noise pooled
    over every test's baseline runs, alpha split over the tests."""
    prior = pool_noise(
        [[run_metrics(b, options.metrics) for b in runs[:-2]] for runs in suite],
        options.metrics,
    )
    share = options.alpha / len(suite)
    out = []
    for runs in suite:
        base = runs[:-2]
        first = compare(runs[-2], base, options, prior=prior, alpha=share, rng=rng)
        if confirm and any(c.verdict == "regressed" for c in first):
            again = compare(runs[-1], base, options, prior=prior, alpha=share, rng=rng)
            first = kept_if_rerun_agrees(first, again)
        out.append(first)
    return out


def pair_scales(
    regime: str,
    k: int,
    rng: np.random.Generator,
    *,
    noise: float,
    correlation: float,
    shift: float = 0.0,
) -> Iterator[np.ndarray]:
    """The log scales of ``k`` A/B pairs' rounds, the base's then the candidate's
    (see :func:`pairs`); drawn as each side is asked for, so that a caller's own
    draws for the base's rounds come before the candidate's scales."""
    common = run_scales(regime, k, rng, noise * math.sqrt(correlation))
    own_regime = "lognormal" if regime == "drift" else regime
    for extra in (0.0, math.log1p(shift)):
        own = run_scales(own_regime, k, rng, noise * math.sqrt(1.0 - correlation))
        yield common + own + extra


def pairs(
    regime: str,
    k: int,
    rng: np.random.Generator,
    *,
    noise: float,
    correlation: float,
    shift: float = 0.0,
    error_rate: float = 0.002,
    **run: float,
) -> tuple[list[BlockSet], list[BlockSet]]:
    """``k`` A/B pairs of rounds: base and candidate share a part of their noise.

    Each round's log scale is a part common to its pair (the machine of that
    minute: drift, a neighbour across both rounds) plus a part of its own (a
    neighbour in one round only, the placement of a fresh process), their
    variances split by ``correlation``. The common part follows ``regime``;
    the own part too, but independent from round to round (each pair runs on
    fresh processes: nothing of a process carries over), so under ``drift``
    it is log-normal. The candidate is slower by ``shift``.
    """
    sides = []
    for scales in pair_scales(regime, k, rng, noise=noise, correlation=correlation, shift=shift):
        rates = error_rate * rng.gamma(2.0, 0.5, k)
        seconds = np.exp(0.3 * scales + rng.normal(0.0, 0.01, k))
        sides.append(
            [
                make_run(rng, log_scale=float(s), error_rate=float(e), seconds=float(t), **run)  # type: ignore[arg-type]
                for s, e, t in zip(scales, rates, seconds, strict=True)
            ]
        )
    return sides[0], sides[1]


def ab_session(
    suite: Sequence[tuple[list[BlockSet], list[BlockSet]]], options: CompareOptions
) -> list[list[MetricComparison]]:
    """Judge an A/B suite as the gate does: alpha split over the tests."""
    share = options.alpha / len(suite)
    return [compare_pairs(base, cand, options, alpha=share) for base, cand in suite]
