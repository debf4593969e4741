"""Is this run worse than its baseline? Verdicts that do not cry wolf.

The unit is the run: a run's metric differs from the next run's of the same
build by far more than its requests or blocks say, so the only honest
question is whether the new run falls outside where the baseline runs say a
run of the same build lands. That is a **prediction interval across runs**:
on the metric's scale (logs; the error rate as it is), a new run of the same
build falls within ``mean ± t(df) · s · sqrt(1 + 1/n)`` of the ``n``
baseline runs, where ``s`` is the run-to-run spread.

- ``s`` is the spread pooled over every series of the baseline folder
  (:mod:`perfsuite.stats.noise`), or the test's own (with at least
  ``min_runs`` runs) when an F-test says it is larger: one noisy test is not
  judged by the quiet ones' spread. Without either, there is no noise
  estimate and no verdict: ``inconclusive``.
- The metrics of one endpoint are one family, judged with a max-T critical
  value that knows their correlation; ``alpha`` is that family's share of
  the session's false-alarm rate (the caller splits it over tests and
  endpoints).
- A within-run block bootstrap must agree on the direction at 95 % (a
  guard against a baseline whose spread happened to be small).
- Runs of fewer than ``min_blocks`` blocks are too short to judge.

A metric is ``regressed`` only when the change is significant *and* larger
than the practical tolerance; ``improved`` likewise; ``unchanged`` when its
90 % interval lies within the tolerance (an equivalence test);
``inconclusive`` otherwise, with the reason when the data could not speak.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from perfsuite.stats.blocks import BlockSet, Resampled
from perfsuite.stats.dist import f_isf, norm_isf, norm_sf, t_cdf, t_isf, t_sf
from perfsuite.stats.noise import (
    ABSOLUTE,
    ERROR_OFFSET,
    NoisePrior,
    Spread,
    max_t,
    transform,
    untransform,
)

__all__ = [
    "GATED",
    "CompareOptions",
    "MetricComparison",
    "TTest",
    "Verdict",
    "as_comparison",
    "compare",
    "judge_family",
    "run_metrics",
    "stack",
    "unjudged",
]

Verdict = Literal["regressed", "improved", "unchanged", "inconclusive"]
GATED = ("p50", "p95", "p99", "mean", "error_rate", "rps")
_HIGHER_IS_BETTER = {"rps"}
# Each side of the equivalence test ("unchanged") is judged at 5 %: a 90 % interval.
EQUIVALENCE = 0.05
_GUARD_LEVEL = 0.05
_NOISIER = 0.05  # the F-test that keeps a noisy test on its own spread
# No two runs agree to 0.1 % on a latency: a spread below that is an accident of few runs.
_MIN_LOG_SD = 1e-3


@dataclass(frozen=True, kw_only=True)
class CompareOptions:
    """What is compared and how strictly."""

    metrics: tuple[str, ...] = GATED
    alpha: float = 0.01  # false alarms per session (split over tests and endpoints)
    tolerance: float = 0.05  # relative change that matters
    tolerances: Mapping[str, float] = field(default_factory=lambda: {"error_rate": 0.001})
    resamples: int = 2000
    min_runs: int = 3  # own baseline runs for an own noise estimate
    min_pooled_df: int = 4  # degrees of freedom for the folder's pooled estimate
    min_blocks: int = 10  # blocks of time a run needs to be judged
    max_pooled_blocks: int = 60
    # A run whose machine was busier than this is not believed when it regresses
    # (perfsuite.probes.machine): cores used by other processes, the hypervisor's share.
    max_other_cores: float = 0.25
    max_steal: float = 0.05

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
    p_value: float  # one-sided, for "worse", adjusted over the endpoint's metrics
    method: str
    tolerance: float
    reason: str = ""  # why the data could not speak (inconclusive without a test)
    mde: float = math.nan  # A/B: the smallest change these pairs detect 80 % of the time
    pair_correlation: float = math.nan  # A/B: of base and candidate across pairs

    @property
    def relative(self) -> bool:
        """Is ``change`` relative (else absolute, for the error rate)?"""
        return self.metric not in ABSOLUTE

    def describe(self) -> str:
        """``p95 regressed: 120.0 -> 150.0 ms, +25.0 % [+18.2 %, +32.1 %] (...)``."""
        if self.reason:
            return f"{self.metric} {self.verdict}: {self.reason}"
        timed = self.metric.endswith("ms_per_request") or "_" not in self.metric
        unit = " ms" if timed and self.metric != "rps" else ""
        if math.isnan(self.p_value):  # a count (cost per request): no test, a threshold
            change = f"{self.change:+.1%}" if math.isfinite(self.change) else "from 0"
            values = f"{self.baseline:.3f} -> {self.current:.3f}{unit}"
            return f"{self.metric} {self.verdict}: {values}, {change} ({self.method})"
        if self.relative:
            change = f"{self.change:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"
            values = f"{self.baseline:.3f} -> {self.current:.3f}{unit}"
        else:
            change = f"{self.change * 100:+.3f} pp [{self.low * 100:+.3f}, {self.high * 100:+.3f}]"
            values = f"{self.baseline:.4%} -> {self.current:.4%}"
        extra = ""
        if math.isfinite(self.mde):
            mde = f"{self.mde:.1%}" if self.relative else f"{self.mde * 100:.3f} pp"
            extra = f", detects ±{mde}"
            if math.isfinite(self.pair_correlation):
                extra += f", pair correlation {self.pair_correlation:.2f}"
        return (
            f"{self.metric} {self.verdict}: {values}, {change} "
            f"(p={self.p_value:.2g}, {self.method}, tolerance {self._tol()}{extra})"
        )

    def _tol(self) -> str:
        return f"{self.tolerance:.0%}" if self.relative else f"{self.tolerance * 100:g} pp"


def stack(sets: Sequence[BlockSet]) -> BlockSet:
    """All blocks of several block sets as one (e.g. the pooled baseline runs)."""
    index = np.unique(np.concatenate([s.index for s in sets]))
    rows, fails = [], []
    for s in sets:
        dense = np.zeros((s.n, index.size), dtype=np.int64)
        dense[:, np.searchsorted(index, s.index)] = s.counts
        rows.append(dense)
        fail = np.zeros((s.n, index.size), dtype=np.int64)
        if s.fail is not None:
            fail[:, np.searchsorted(index, s.index)] = s.fail
        fails.append(fail)
    any_fail = any(s.fail is not None for s in sets)
    return BlockSet(
        index=index,
        counts=np.vstack(rows),
        requests=np.concatenate([s.requests for s in sets]),
        errors=np.concatenate([s.errors for s in sets]),
        seconds=np.concatenate([s.seconds for s in sets]),
        fail=np.vstack(fails) if any_fail else None,
    )


def run_metrics(blocks: BlockSet, metrics: Sequence[str] = GATED) -> dict[str, float]:
    """A run's value of each metric (what the noise of a folder is pooled from)."""
    return {m: blocks.metric(m) for m in metrics}


@dataclass(frozen=True)
class TTest:
    """One metric's t-test of a change, on the transformed, worse-is-positive scale."""

    metric: str
    level: float  # the baseline runs' mean, transformed
    estimate: float
    se: float
    df: int
    t: float
    spread: str  # where the spread came from, for the method text

    @property
    def sign(self) -> float:
        """-1 where higher is better (the test's scale is worse-is-positive)."""
        return -1.0 if self.metric in _HIGHER_IS_BETTER else 1.0

    def change(self, e: float) -> float:
        """A worse-is-positive estimate as a change (relative; the error rate's absolute)."""
        moved = self.level + self.sign * e
        return untransform(self.metric, moved) - untransform(self.metric, self.level)

    def practical(self, e: float, tol: float) -> int:
        """+1 if ``e`` is worse by more than the tolerance, -1 if better, else 0."""
        if self.metric in ABSOLUTE:
            worse = self.change(e)  # the error rate: higher is worse
            return 1 if worse > tol else -1 if worse < -tol else 0
        return 1 if e > math.log1p(tol) else -1 if e < -math.log1p(tol) else 0

    def z(self, worse: bool) -> float:
        """The one-sided p as a normal quantile (the max-T works on one scale)."""
        p = t_sf(self.t, self.df) if worse else t_cdf(self.t, self.df)
        return norm_isf(p)

    def interval(self, level: float) -> tuple[float, float]:
        """The change's interval at one-sided ``level`` on each end."""
        half = t_isf(level, self.df) * self.se
        return self.estimate - half, self.estimate + half


def _spread(
    metric: str, x: np.ndarray, options: CompareOptions, prior: NoisePrior | None
) -> tuple[Spread, str] | None:
    """The run-to-run spread to judge with: the folder's pooled one, unless the test's own
    is significantly larger (an F-test at 5 %: a noisy test is not judged by the quiet
    ones' spread, and a quiet one does not trade the pool's degrees of freedom for its own
    few on a chance fluctuation)."""
    n = x.size
    own = Spread(float(x.var(ddof=1)), n - 1) if n >= options.min_runs else None
    pooled = prior.spread(metric) if prior else None
    if pooled is not None and pooled.df < options.min_pooled_df:
        pooled = None
    own_text = f"own spread over {n} runs"
    if pooled is None:
        return (own, own_text) if own is not None else None
    pooled_text = f"spread pooled over {prior.series if prior else 0} series"
    if own is not None:
        ratio = own.variance / pooled.variance if pooled.variance > 0 else math.inf
        if ratio > f_isf(_NOISIER, own.df, pooled.df):
            return own, own_text + ", noisier than the pooled"
    return pooled, pooled_text


def _prediction(
    metric: str,
    runs: list[float],
    current: float,
    current_requests: int,
    options: CompareOptions,
    prior: NoisePrior | None,
) -> TTest | None:
    x = np.array([transform(metric, r) for r in runs])
    y = transform(metric, current)
    chosen = _spread(metric, x, options, prior)
    if chosen is None:
        return None
    spread, source = chosen
    floor = _MIN_LOG_SD
    if metric in ABSOLUTE:
        # Errors are at least binomial: the spread never claims less (delta method).
        requests = max(current_requests, 1)
        p = max(float(np.mean(runs)), 1.0 / requests)
        floor = math.sqrt(p * (1.0 - p) / requests) / (p + ERROR_OFFSET)
    sd = max(spread.sd, floor)
    se = sd * math.sqrt(1.0 + 1.0 / x.size)
    sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0
    d = sign * (y - float(x.mean()))
    return TTest(metric, float(x.mean()), d, se, spread.df, d / se, source)


def _guard(
    metric: str, current: Resampled, baseline: Resampled, level: float
) -> tuple[float, float]:
    """The within-run block bootstrap's interval of the change (worse-is-positive)."""
    cur_b, base_b = current.metric(metric), baseline.metric(metric)
    if metric in ABSOLUTE:
        ds = cur_b - base_b
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            ds = np.log(cur_b) - np.log(base_b)
    if metric in _HIGHER_IS_BETTER:
        ds = -ds
    low, high = np.nanquantile(ds, [level, 1.0 - level])
    return float(low), float(high)


def compare(
    current: BlockSet,
    baselines: Sequence[BlockSet],
    options: CompareOptions | None = None,
    *,
    prior: NoisePrior | None = None,
    alpha: float | None = None,
    rng: np.random.Generator | None = None,
) -> list[MetricComparison]:
    """Compare a run with its baseline runs, metric by metric.

    ``prior``: the folder's pooled noise; ``alpha``: this endpoint's share of
    the session's false-alarm rate (``options.alpha`` when not given).
    """
    options = options or CompareOptions()
    if not baselines:
        raise ValueError("no baseline runs to compare with")
    alpha = options.alpha if alpha is None else alpha
    short = min([current.n] + [b.n for b in baselines])
    if short < options.min_blocks:
        why = (
            f"too short to judge ({short} blocks of time; {options.min_blocks} are needed: "
            "a longer profile, or a lower [tool.perfsuite.baseline] min_blocks)"
        )
        return [unjudged(m, current.metric(m), options, why) for m in options.metrics]

    tests: dict[str, TTest] = {}
    out: dict[str, MetricComparison] = {}
    for metric in options.metrics:
        cur = current.metric(metric)
        runs = [b.metric(metric) for b in baselines]
        positive = metric in ABSOLUTE or (cur > 0 and min(runs) > 0)
        answered = current.requests.sum() > 0 and all(b.requests.sum() > 0 for b in baselines)
        if not np.isfinite(cur) or not all(np.isfinite(runs)) or not positive or not answered:
            out[metric] = unjudged(metric, cur, options, "no data")
            continue
        test = _prediction(metric, runs, cur, int(current.requests.sum()), options, prior)
        if test is None:
            why = (
                f"{len(runs)} baseline run{'s' * (len(runs) != 1)}; {options.min_runs} are needed "
                "to know the run-to-run noise (or other tests' runs in the baseline folder)"
            )
            out[metric] = unjudged(metric, cur, options, why)
            continue
        tests[metric] = test
    if tests:
        out.update(_judge_runs(current, baselines, tests, options, prior, alpha, rng))
    return [out[m] for m in options.metrics]


Guard = Callable[[str, float], tuple[float, float]]


def judge_family(
    tests: Mapping[str, TTest],
    correlation: np.ndarray,
    alpha: float,
    options: CompareOptions,
    guard: Guard | None = None,
) -> dict[str, tuple[Verdict, float, float]]:
    """One endpoint's metrics as one family: (verdict, adjusted p, per-metric level) each.

    ``guard(metric, level)``: a second interval of the change (worse-is-positive)
    that must agree on the direction before a change is reported.
    """
    family = max_t(correlation)
    level = norm_sf(family.critical(alpha))  # each metric's share, one-sided
    out: dict[str, tuple[Verdict, float, float]] = {}
    for metric, test in tests.items():
        tol = options.tolerance_of(metric)
        p_worse = family.p_value(test.z(worse=True))
        p_better = family.p_value(test.z(worse=False))
        beyond = test.practical(test.estimate, tol)
        worse = p_worse < alpha and beyond > 0
        better = p_better < alpha and beyond < 0
        if (worse or better) and guard is not None:
            g_low, g_high = guard(metric, level)
            worse, better = worse and g_low > 0, better and g_high < 0
        eq_low, eq_high = test.interval(EQUIVALENCE)
        verdict: Verdict
        if worse:
            verdict = "regressed"
        elif better:
            verdict = "improved"
        elif test.practical(eq_low, tol) == 0 and test.practical(eq_high, tol) == 0:
            verdict = "unchanged"
        else:
            verdict = "inconclusive"
        out[metric] = (verdict, p_worse, level)
    return out


def _judge_runs(
    current: BlockSet,
    baselines: Sequence[BlockSet],
    tests: dict[str, TTest],
    options: CompareOptions,
    prior: NoisePrior | None,
    alpha: float,
    rng: np.random.Generator | None,
) -> dict[str, MetricComparison]:
    names = list(tests)
    corr = prior.matrix(names) if prior else np.eye(len(names))
    resampled: list[Resampled] = []

    def guard(metric: str, level: float) -> tuple[float, float]:
        # The within-run bootstrap, made only when a change is suspected. It checks
        # the direction, at 95 % one-sided: the significance is the runs' to say
        # (at the family's level, a bootstrap of 10-30 blocks is too coarse to agree).
        del level
        if not resampled:
            gen = rng or np.random.default_rng(0)
            pooled = stack(baselines).regrouped(options.max_pooled_blocks)
            resampled.extend(
                Resampled(b, resamples=options.resamples, rng=gen) for b in (current, pooled)
            )
        return _guard(metric, resampled[0], resampled[1], _GUARD_LEVEL)

    judged = judge_family(tests, corr, alpha, options, guard)
    return {
        m: as_comparison(
            tests[m],
            current=current.metric(m),
            verdict=judged[m][0],
            p_worse=judged[m][1],
            tolerance=options.tolerance_of(m),
            method=f"prediction interval over {len(baselines)} runs, {tests[m].spread} "
            f"(df {tests[m].df})",
        )
        for m in tests
    }


def as_comparison(
    test: TTest,
    *,
    current: float,
    verdict: Verdict,
    p_worse: float,
    tolerance: float,
    method: str,
    mde: float = math.nan,
    pair_correlation: float = math.nan,
) -> MetricComparison:
    """A test's verdict as the gate reports it: values, change and its 90 % interval."""
    metric = test.metric
    baseline = untransform(metric, test.level)

    def change(e: float) -> float:
        moved = test.change(e)  # the error rate's stays absolute; the rest relative
        return moved if metric in ABSOLUTE else moved / baseline

    ends = sorted(change(x) for x in test.interval(EQUIVALENCE))
    return MetricComparison(
        metric=metric,
        verdict=verdict,
        baseline=baseline,
        current=current,
        change=change(test.estimate),
        low=ends[0],
        high=ends[1],
        p_value=p_worse,
        method=method,
        tolerance=tolerance,
        mde=abs(change(mde)) if math.isfinite(mde) else math.nan,
        pair_correlation=pair_correlation,
    )


def unjudged(metric: str, current: float, options: CompareOptions, reason: str) -> MetricComparison:
    """``inconclusive`` without a test, and why (too few runs, too short, no data)."""
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
        method="none",
        tolerance=options.tolerance_of(metric),
        reason=reason,
    )
