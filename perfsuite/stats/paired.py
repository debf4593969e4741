"""A/B: two builds measured side by side, judged on their paired differences.

Each pair of rounds (base and candidate, in random order, a few seconds
apart, on fresh processes) shares the machine's state of that minute: a
noisy neighbour, a slow disk, the CPU's clock. The difference of their logs
cancels what they share; what is left is the builds' difference plus each
round's own noise. The pair is the unit: with K pairs, the mean of the K
log-ratios ``d_i = log(candidate_i) - log(base_i)`` and their spread give a
paired t-test with K - 1 degrees of freedom. The metrics of one endpoint
are one family (max-T on the correlation of the ``d_i`` across metrics),
and alpha is the endpoint's share of the session's false-alarm rate.

Why a paired t and not a bootstrap or a signed-rank test: with 10 pairs a
bootstrap of pairs has few distinct resamples and understates the spread,
and Wilcoxon's smallest one-sided p-value (1/1024 at 10 pairs) cannot reach
the per-metric alpha of a 4-test session (about 0.0005). The t on
log-ratios is robust enough to the heavy tails and drift seen on a shared
machine: ``tests/unit/test_ab_simulation.py`` checks it on noise that is
not its model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.compare import (
    CompareOptions,
    MetricComparison,
    TTest,
    as_comparison,
    judge_family,
    unjudged,
)
from perfsuite.stats.dist import t_isf, t_ppf
from perfsuite.stats.noise import transform, untransform

__all__ = ["MIN_PAIRS", "compare_pairs"]

MIN_PAIRS = 3
_HIGHER_IS_BETTER = {"rps"}
_MIN_SD = 1e-3  # no two rounds agree to 0.1 %: less is an accident of few pairs
_POWER = 0.8  # the minimum detectable effect is the change caught this often
_SHRINK = 10.0  # the correlation across metrics, shrunk towards independence


def compare_pairs(
    base: Sequence[BlockSet],
    candidate: Sequence[BlockSet],
    options: CompareOptions | None = None,
    *,
    alpha: float | None = None,
) -> list[MetricComparison]:
    """Judge a candidate against a base over paired rounds (``base[i]`` with ``candidate[i]``)."""
    options = options or CompareOptions()
    if len(base) != len(candidate):
        raise ValueError(f"{len(base)} base rounds but {len(candidate)} candidate rounds")
    alpha = options.alpha if alpha is None else alpha
    k = len(base)
    out: dict[str, MetricComparison] = {}
    tests: dict[str, TTest] = {}
    logs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for metric in options.metrics:
        b = np.array([transform(metric, x.metric(metric)) for x in base])
        c = np.array([transform(metric, x.metric(metric)) for x in candidate])
        current = float(np.mean([x.metric(metric) for x in candidate])) if k else math.nan
        if k < MIN_PAIRS:
            out[metric] = unjudged(metric, current, options, f"{k} pairs; {MIN_PAIRS} are needed")
        elif not (np.all(np.isfinite(b)) and np.all(np.isfinite(c))):
            out[metric] = unjudged(metric, current, options, "no data")
        else:
            tests[metric] = _paired_t(metric, b, c)
            logs[metric] = (b, c)
    if tests:
        names = list(tests)
        judged = judge_family(tests, _correlation(names, logs), alpha, options)
        for m, test in tests.items():
            verdict, p_worse, level = judged[m]
            b, c = logs[m]
            mde = (t_isf(level, test.df) + t_ppf(_POWER, test.df)) * test.se
            out[m] = as_comparison(
                test,
                current=untransform(m, float(c.mean())),
                verdict=verdict,
                p_worse=p_worse,
                tolerance=options.tolerance_of(m),
                method=f"paired t over {k} pairs (df {k - 1})",
                mde=float(mde),
                pair_correlation=_pearson(b, c),
            )
    return [out[m] for m in options.metrics]


def _paired_t(metric: str, b: np.ndarray, c: np.ndarray) -> TTest:
    sign = -1.0 if metric in _HIGHER_IS_BETTER else 1.0
    d = sign * (c - b)
    k = d.size
    se = max(float(d.std(ddof=1)), _MIN_SD) / math.sqrt(k)
    mean = float(d.mean())
    return TTest(metric, float(b.mean()), mean, se, k - 1, mean / se, "paired")


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _correlation(names: list[str], logs: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The correlation of the paired differences across metrics, shrunk."""
    diffs = np.array([logs[m][1] - logs[m][0] for m in names])
    k = len(names)
    r = np.eye(k)
    df = diffs.shape[1] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.corrcoef(diffs) if k > 1 else np.ones((1, 1))
    for i in range(k):
        for j in range(i + 1, k):
            rho = float(full[i, j])
            if math.isfinite(rho):
                r[i, j] = r[j, i] = rho * df / (df + _SHRINK)
    return r
