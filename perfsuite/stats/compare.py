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
practical tolerance; ``improved`` likewise; ``unchanged`` when it is not
significant and within the tolerance, or significant but within it;
``inconclusive`` otherwise. The error rate is compared in absolute terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats as st

from perfsuite.stats.blocks import BlockSet, bootstrap_metric

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
    low: float
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


def _verdict(worse_p: float, better_p: float, change_worse: float, tol: float, a: float) -> Verdict:
    if worse_p < a and change_worse > tol:
        return "regressed"
    if better_p < a and -change_worse > tol:
        return "improved"
    if abs(change_worse) <= tol:
        return "unchanged"
    return "inconclusive"


def _prediction(
    metric: str, current: float, runs: list[float], a: float, tol: float
) -> MetricComparison:
    logs = np.log(runs)
    n = len(logs)
    mean, sd = float(logs.mean()), float(logs.std(ddof=1))
    # Identical runs (sd 0) would make any difference infinitely significant.
    sd = max(sd, 1e-4)
    se = sd * math.sqrt(1.0 + 1.0 / n)
    diff = math.log(current) - mean
    sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0
    t = sign * diff / se
    worse_p = float(st.t.sf(t, df=n - 1))
    better_p = float(st.t.cdf(t, df=n - 1))
    half = float(st.t.ppf(1.0 - a, df=n - 1)) * se
    change_worse = math.expm1(sign * diff)
    verdict = _verdict(worse_p, better_p, change_worse, tol, a)
    return MetricComparison(
        metric=metric,
        verdict=verdict,
        baseline=math.exp(mean),
        current=current,
        change=math.expm1(diff),
        low=math.expm1(diff - half),
        high=math.expm1(diff + half),
        p_value=worse_p,
        method=f"prediction interval over {n} runs",
        tolerance=tol,
    )


def _bootstrap(
    metric: str,
    current: BlockSet,
    baseline: BlockSet,
    a: float,
    tol: float,
    resamples: int,
    rng: np.random.Generator,
) -> MetricComparison:
    cur, base = current.metric(metric), baseline.metric(metric)
    cur_b = bootstrap_metric(current, metric, resamples=resamples, rng=rng)
    base_b = bootstrap_metric(baseline, metric, resamples=resamples, rng=rng)
    sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0
    to_change: Callable[[float], float]
    if metric in _ABSOLUTE:
        diff, diffs = cur - base, cur_b - base_b
        to_change = float
    else:
        diff = math.log(cur) - math.log(base)
        diffs = np.log(cur_b) - np.log(base_b)
        to_change = math.expm1
    worse = sign * diffs
    worse_p = float((np.count_nonzero(worse <= 0) + 1) / (resamples + 1))
    better_p = float((np.count_nonzero(worse >= 0) + 1) / (resamples + 1))
    low, high = (float(x) for x in np.quantile(diffs, [a, 1.0 - a]))
    change_worse = to_change(sign * diff)
    worse_low = to_change(min(sign * low, sign * high))
    worse_high = to_change(max(sign * low, sign * high))
    # No run-to-run noise is known here: only an interval wholly beyond the
    # tolerance is a regression (or an improvement).
    if worse_p < a and worse_low > tol:
        verdict: Verdict = "regressed"
    elif better_p < a and -worse_high > tol:
        verdict = "improved"
    elif abs(change_worse) <= tol and worse_high <= tol and -worse_low <= tol:
        verdict = "unchanged"
    else:
        verdict = "inconclusive"
    return MetricComparison(
        metric=metric,
        verdict=verdict,
        baseline=base,
        current=cur,
        change=to_change(diff),
        low=to_change(low),
        high=to_change(high),
        p_value=worse_p,
        method="block bootstrap",
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
    pooled = stack(baselines)
    out = []
    for metric in options.metrics:
        tol = options.tolerance_of(metric)
        cur = current.metric(metric)
        runs = [b.metric(metric) for b in baselines]
        if not np.isfinite(cur) or not all(np.isfinite(runs)):
            out.append(_no_data(metric, cur, tol))
        elif (
            len(baselines) >= options.min_runs
            and metric not in _ABSOLUTE
            and cur > 0
            and min(runs) > 0
        ):
            out.append(_prediction(metric, cur, runs, a, tol))
        else:
            out.append(_bootstrap(metric, current, pooled, a, tol, options.resamples, rng))
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
