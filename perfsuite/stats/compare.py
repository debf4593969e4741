"""Is this run worse than its baseline? Verdicts that do not cry wolf.

Two methods, chosen by how much history there is:

- **prediction interval** (at least ``min_runs`` baseline runs): the metric
  of each baseline run is log-normal across runs; a new run of the same
  build falls inside ``mean ± t(n-1) · s · sqrt(1 + 1/n)`` (in logs). This
  accounts for the run-to-run noise of a shared CI machine, which no
  within-run statistic can see.
- **block bootstrap** (fewer runs): resample blocks of both runs; the
  interval of the relative change. It cannot know the run-to-run noise, so
  it only says ``regressed`` when the *whole* interval lies beyond the
  tolerance.

A metric is ``regressed`` only when the change is significant (one-sided,
alpha divided over the gated metrics: Bonferroni) *and* larger than the
practical tolerance; ``improved`` likewise; ``unchanged`` when its 90 %
interval lies within the tolerance (an equivalence test); ``inconclusive``
otherwise: the data cannot tell. The error rate is compared in absolute terms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats as st

from perfsuite.stats.blocks import BlockSet, Resampled

__all__ = ["CompareOptions", "MetricComparison", "Verdict", "compare", "stack"]

Verdict = Literal["regressed", "improved", "unchanged", "inconclusive"]
GATED = ("p50", "p95", "p99", "mean", "error_rate", "rps")
_HIGHER_IS_BETTER = {"rps"}
_ABSOLUTE = {"error_rate"}


@dataclass(frozen=True, kw_only=True)
class CompareOptions:
    """What is compared and how strictly."""

    metrics: tuple[str, ...] = GATED
    alpha: float = 0.01  # one-sided, shared by the gated metrics (Bonferroni)
    tolerance: float = 0.05  # relative change that matters
    tolerances: Mapping[str, float] = field(default_factory=lambda: {"error_rate": 0.001})
    resamples: int = 2000
    min_runs: int = 3  # baseline runs needed for the prediction interval
    max_pooled_blocks: int = 60

    def tolerance_of(self, metric: str) -> float:
        """The practical tolerance of a metric (absolute for the error rate)."""
        return self.tolerances.get(metric, self.tolerance)


@dataclass(frozen=True, kw_only=True)
class MetricComparison:
    """The verdict on one metric, with the change and its interval."""

    metric: str
    verdict: Verdict
    baseline: float
    current: float
    change: float  # relative (error_rate: absolute), positive = higher
    low: float  # the change's 90 % interval (the one "unchanged" is judged on)
    high: float
    p_value: float  # one-sided, for "worse"
    method: str
    tolerance: float

    @property
    def relative(self) -> bool:
        """Is ``change`` relative (else absolute, for the error rate)?"""
        return self.metric not in _ABSOLUTE

    def describe(self) -> str:
        """``p95 regressed: 120.0 -> 150.0 ms, +25.0 % [+18.2 %, +32.1 %] (...)``."""
        unit = "" if self.metric in ("error_rate", "rps") else " ms"
        if self.relative:
            change = f"{self.change:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"
            values = f"{self.baseline:.3f} -> {self.current:.3f}{unit}"
        else:
            change = f"{self.change * 100:+.3f} pp [{self.low * 100:+.3f}, {self.high * 100:+.3f}]"
            values = f"{self.baseline:.4%} -> {self.current:.4%}"
        return (
            f"{self.metric} {self.verdict}: {values}, {change} "
            f"(p={self.p_value:.2g}, {self.method}, tolerance {self._tol()})"
        )

    def _tol(self) -> str:
        return f"{self.tolerance:.0%}" if self.relative else f"{self.tolerance * 100:g} pp"


def stack(sets: Sequence[BlockSet]) -> BlockSet:
    """All blocks of several block sets as one (e.g. the pooled baseline runs)."""
    index = np.unique(np.concatenate([s.index for s in sets]))
    rows = []
    for s in sets:
        dense = np.zeros((s.n, index.size), dtype=np.int64)
        dense[:, np.searchsorted(index, s.index)] = s.counts
        rows.append(dense)
    return BlockSet(
        index=index,
        counts=np.vstack(rows),
        requests=np.concatenate([s.requests for s in sets]),
        errors=np.concatenate([s.errors for s in sets]),
        seconds=np.concatenate([s.seconds for s in sets]),
    )


# Each side of the equivalence test ("unchanged") is judged at 5 %: a 90 % interval.
EQUIVALENCE = 0.05


@dataclass(frozen=True)
class _Test:
    """One method's answer, on the worse-is-positive scale (log, or absolute)."""

    estimate: float
    p_worse: float
    p_better: float
    low: float  # at the gate's alpha, one-sided each way
    high: float
    eq_low: float  # at EQUIVALENCE, one-sided each way
    eq_high: float


def _prediction(runs: list[float], current: float, sign: float, a: float) -> _Test:
    logs = np.log(runs)
    n = len(logs)
    # Identical runs (sd 0) would make any difference infinitely significant.
    sd = max(float(logs.std(ddof=1)), 1e-4)
    se = sd * math.sqrt(1.0 + 1.0 / n)
    d = sign * (math.log(current) - float(logs.mean()))
    t = d / se
    half = float(st.t.ppf(1.0 - a, df=n - 1)) * se
    eq = float(st.t.ppf(1.0 - EQUIVALENCE, df=n - 1)) * se
    return _Test(
        estimate=d,
        p_worse=float(st.t.sf(t, df=n - 1)),
        p_better=float(st.t.cdf(t, df=n - 1)),
        low=d - half,
        high=d + half,
        eq_low=d - eq,
        eq_high=d + eq,
    )


def _bootstrap(
    metric: str,
    current: Resampled,
    baseline: Resampled,
    sign: float,
    a: float,
) -> _Test:
    cur, base = current.blocks.metric(metric), baseline.blocks.metric(metric)
    cur_b, base_b = current.metric(metric), baseline.metric(metric)
    resamples = cur_b.size
    if metric in _ABSOLUTE:
        d, ds = cur - base, cur_b - base_b
    else:
        d, ds = math.log(cur) - math.log(base), np.log(cur_b) - np.log(base_b)
    d, ds = sign * d, sign * ds
    low, high, eq_low, eq_high = (
        float(x) for x in np.quantile(ds, [a, 1.0 - a, EQUIVALENCE, 1.0 - EQUIVALENCE])
    )
    return _Test(
        estimate=d,
        p_worse=float((np.count_nonzero(ds <= 0) + 1) / (resamples + 1)),
        p_better=float((np.count_nonzero(ds >= 0) + 1) / (resamples + 1)),
        low=low,
        high=high,
        eq_low=eq_low,
        eq_high=eq_high,
    )


def _judge(primary: _Test, guard: _Test | None, tol: float, a: float, across_runs: bool) -> Verdict:
    """The verdict, on the worse-is-positive scale with tolerance ``tol`` (same scale)."""
    if across_runs:
        # Run-to-run noise is known: significant and beyond the tolerance, and the
        # within-run bootstrap must agree on the direction (a guard against a
        # baseline whose spread was underestimated).
        worse = primary.p_worse < a and primary.estimate > tol
        better = primary.p_better < a and primary.estimate < -tol
        worse = worse and guard is not None and guard.low > 0
        better = better and guard is not None and guard.high < 0
    else:
        # Run-to-run noise is unknown: the whole interval must lie beyond the tolerance.
        worse = primary.p_worse < a and primary.low > tol
        better = primary.p_better < a and primary.high < -tol
    if worse:
        return "regressed"
    if better:
        return "improved"
    if -tol <= primary.eq_low and primary.eq_high <= tol:
        return "unchanged"
    return "inconclusive"


def _comparison(
    metric: str,
    baseline_value: float,
    current: float,
    test: _Test,
    verdict: Verdict,
    sign: float,
    tol: float,
    method: str,
) -> MetricComparison:
    def change(x: float) -> float:
        x = sign * x  # back to "positive = higher"
        return x if metric in _ABSOLUTE else math.expm1(x)

    ends = sorted((change(test.eq_low), change(test.eq_high)))
    return MetricComparison(
        metric=metric,
        verdict=verdict,
        baseline=baseline_value,
        current=current,
        change=change(test.estimate),
        low=ends[0],
        high=ends[1],
        p_value=test.p_worse,
        method=method,
        tolerance=tol,
    )


def compare(
    current: BlockSet,
    baselines: Sequence[BlockSet],
    options: CompareOptions | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> list[MetricComparison]:
    """Compare a run with its baseline runs, metric by metric."""
    options = options or CompareOptions()
    if not baselines:
        raise ValueError("no baseline runs to compare with")
    rng = rng or np.random.default_rng(0)
    a = options.alpha / len(options.metrics)
    # The pooled baseline is regrouped so that resampling it stays cheap.
    pooled = stack(baselines).regrouped(options.max_pooled_blocks)
    cur_r = Resampled(current, resamples=options.resamples, rng=rng)
    pool_r = Resampled(pooled, resamples=options.resamples, rng=rng)
    out = []
    for metric in options.metrics:
        tol = options.tolerance_of(metric)
        sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0
        cur = current.metric(metric)
        runs = [b.metric(metric) for b in baselines]
        absolute = metric in _ABSOLUTE
        positive = absolute or (cur > 0 and min(runs) > 0)
        if not np.isfinite(cur) or not all(np.isfinite(runs)) or not positive:
            out.append(_no_data(metric, cur, tol))
            continue
        scaled_tol = tol if absolute else math.log1p(tol)
        if len(baselines) >= options.min_runs and not absolute:
            pred = _prediction(runs, cur, sign, a)
            # The bootstrap guard is only needed when the runs say "changed".
            suspect = pred.p_worse < a or pred.p_better < a
            guard = _bootstrap(metric, cur_r, pool_r, sign, a) if suspect else None
            verdict = _judge(pred, guard, scaled_tol, a, across_runs=True)
            baseline_value = float(np.exp(np.mean(np.log(runs))))
            method = f"prediction interval over {len(runs)} runs"
            out.append(_comparison(metric, baseline_value, cur, pred, verdict, sign, tol, method))
        else:
            boot = _bootstrap(metric, cur_r, pool_r, sign, a)
            verdict = _judge(boot, None, scaled_tol, a, across_runs=False)
            out.append(
                _comparison(
                    metric, pooled.metric(metric), cur, boot, verdict, sign, tol, "block bootstrap"
                )
            )
    return out


def _no_data(metric: str, current: float, tol: float) -> MetricComparison:
    nan = float("nan")
    return MetricComparison(
        metric=metric,
        verdict="inconclusive",
        baseline=nan,
        current=current,
        change=nan,
        low=nan,
        high=nan,
        p_value=nan,
        method="no data",
        tolerance=tol,
    )
