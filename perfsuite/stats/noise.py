"""Run-to-run noise: pooled over a baseline folder, and max-T critical values.

A run's p95 differs from the next run's of the same build by far more than
any within-run statistic says (a shared CI machine, placement, the service's
own warm-up). With n baseline runs of one series (one endpoint of one load of
one test) that spread has n - 1 degrees of freedom: from 3 to 5 runs alone a
prediction interval is nearly infinite. Every series of a baseline folder was
measured on the same machine, so their spreads are pooled, metric by metric:
the classical pooled variance, the squared deviations from each series' own
mean summed over all series and divided by the sum of their ``n_j - 1``.

The same residuals give the correlation of the metrics across runs (a slow
run is slow on p50, p95, p99 and the mean together), which the max-T
critical value uses: the metrics of one endpoint are one family, and a
family of correlated metrics needs a smaller correction than Bonferroni's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from perfsuite.stats.dist import norm_isf, norm_sf

__all__ = [
    "ABSOLUTE",
    "ERROR_OFFSET",
    "MaxT",
    "NoisePrior",
    "Spread",
    "max_t",
    "pool_noise",
    "transform",
    "untransform",
]

FloatArray = npt.NDArray[np.float64]

# Tolerances in absolute terms (a rate near 0 has no useful ratio); the rest relative.
ABSOLUTE = frozenset({"error_rate"})
# The error rate's run-to-run noise is skewed and relative (a bad run has three
# times the errors), its tolerance absolute: its noise is measured on
# log(rate + 0.1 %), near-absolute below 0.1 % and relative above.
ERROR_OFFSET = 1e-3
# Shrinks the estimated correlation towards independence, which only raises the
# critical value: an overstated correlation would understate it.
_SHRINK_DF = 10.0
# Draws for the max-T: 100,000 see a tail of 1/2,000 with 50 points.
_DRAWS = 100_000


def transform(metric: str, value: float) -> float:
    """The scale on which a metric's run-to-run noise is additive (nan if none)."""
    if metric in ABSOLUTE:
        value += ERROR_OFFSET
    return math.log(value) if math.isfinite(value) and value > 0 else math.nan


def untransform(metric: str, value: float) -> float:
    """The inverse of :func:`transform`."""
    return math.exp(value) - (ERROR_OFFSET if metric in ABSOLUTE else 0.0)


@dataclass(frozen=True)
class Spread:
    """A run-to-run variance (on the metric's scale) and its degrees of freedom."""

    variance: float
    df: int

    @property
    def sd(self) -> float:
        """The standard deviation."""
        return math.sqrt(self.variance)


@dataclass(frozen=True)
class NoisePrior:
    """The pooled run-to-run noise of a baseline folder, per metric."""

    spreads: Mapping[str, Spread]
    correlation: Mapping[tuple[str, str], float]
    series: int  # how many series contributed

    def spread(self, metric: str) -> Spread | None:
        """The pooled spread of a metric, if any series measured it twice."""
        return self.spreads.get(metric)

    def matrix(self, metrics: Sequence[str]) -> FloatArray:
        """The (shrunk) correlation matrix of ``metrics``; independence where unknown."""
        k = len(metrics)
        r = np.eye(k)
        for i in range(k):
            for j in range(i + 1, k):
                rho = self.correlation.get((metrics[i], metrics[j]), 0.0)
                r[i, j] = r[j, i] = rho
        return r


def pool_noise(
    series: Iterable[Sequence[Mapping[str, float]]], metrics: Sequence[str]
) -> NoisePrior:
    """Pool the run-to-run noise of several series of runs (each a list of metric values)."""
    squares = dict.fromkeys(metrics, 0.0)
    dfs = dict.fromkeys(metrics, 0)
    cross: dict[tuple[str, str], float] = {}
    cross_df: dict[tuple[str, str], int] = {}
    count = 0
    for runs in series:
        if len(runs) < 2:
            continue
        residuals: dict[str, FloatArray] = {}
        for m in metrics:
            x = np.array([transform(m, r.get(m, math.nan)) for r in runs])
            if np.all(np.isfinite(x)):
                residuals[m] = x - x.mean()
                squares[m] += float(residuals[m] @ residuals[m])
                dfs[m] += len(runs) - 1
        for i, a in enumerate(metrics):
            for b in metrics[i + 1 :]:
                if a in residuals and b in residuals:
                    cross[(a, b)] = cross.get((a, b), 0.0) + float(residuals[a] @ residuals[b])
                    cross_df[(a, b)] = cross_df.get((a, b), 0) + len(runs) - 1
        count += bool(residuals)
    spreads = {m: Spread(squares[m] / dfs[m], dfs[m]) for m in metrics if dfs[m] > 0}
    correlation: dict[tuple[str, str], float] = {}
    for (a, b), s in cross.items():
        va, vb = spreads.get(a), spreads.get(b)
        if va is None or vb is None or va.variance <= 0 or vb.variance <= 0:
            continue
        df = cross_df[(a, b)]
        rho = (s / df) / math.sqrt(va.variance * vb.variance)
        rho = max(-1.0, min(1.0, rho)) * df / (df + _SHRINK_DF)
        correlation[(a, b)] = correlation[(b, a)] = rho
    return NoisePrior(spreads=spreads, correlation=correlation, series=count)


@functools.cache
def _draws(k: int) -> npt.NDArray[np.float32]:
    """Fixed standard normal draws, one row per statistic: the same critical value for
    the same correlation. float32: the tail's shape, not the 7th digit, matters here."""
    return np.random.default_rng(20_240_531).standard_normal((k, _DRAWS), dtype=np.float32)


def max_t(correlation: FloatArray) -> MaxT:
    """The max-T of a correlation (cached: every endpoint of a session shares one)."""
    return _max_t(correlation.shape[0], tuple(np.round(correlation, 9).ravel().tolist()))


@functools.lru_cache(maxsize=64)
def _max_t(k: int, values: tuple[float, ...]) -> MaxT:
    return MaxT(np.array(values).reshape(k, k))


class MaxT:
    """Single-step max-T over correlated one-sided z statistics (Westfall & Young, 1993).

    The null distribution of the largest of ``k`` standard normals correlated as
    ``correlation``, from fixed Monte Carlo draws; beyond what the draws see,
    Bonferroni's bound (exact enough that far out, and never too small).
    """

    def __init__(self, correlation: FloatArray) -> None:
        self.k = int(correlation.shape[0])
        # eigh, not Cholesky: an estimated correlation can be singular.
        values, vectors = np.linalg.eigh(correlation)
        root = vectors * np.sqrt(np.clip(values, 0.0, None))
        self._maxima: npt.NDArray[np.float32] | None = None
        if self.k > 1:
            # Row by row: the element-wise maximum of k long rows is what is fast.
            # (einsum: BLAS's float32 product is slow in this shape.)
            rows = np.einsum("ij,jn->in", root.astype(np.float32), _draws(self.k))
            # Sorted once: every p-value and critical value is then a binary search.
            self._maxima = np.sort(np.maximum.reduce(rows, axis=0))

    def p_value(self, z: float) -> float:
        """The adjusted p: P(max_k Z_k >= z) under the null."""
        bonferroni = min(1.0, self.k * norm_sf(z))
        if self._maxima is None:
            return bonferroni
        n = int(self._maxima.size)
        beyond = n - int(np.searchsorted(self._maxima, np.float32(z), side="left"))
        estimate = (beyond + 1) / (n + 1)
        # Never below one statistic's own p: the max is at least as large.
        return min(bonferroni, max(norm_sf(z), estimate))

    def critical(self, alpha: float) -> float:
        """The z with P(max_k Z_k > z) = alpha."""
        bonferroni = norm_isf(alpha / self.k)
        # Too far in the tail for the draws: Bonferroni (exact enough there, and safe).
        if self._maxima is None or alpha * self._maxima.size < 50:
            return bonferroni
        # The draws' quantile errs either way; two standard errors of its count
        # towards the safe side, and never below one statistic's own critical value.
        n = int(self._maxima.size)
        expected = alpha * n
        count = max(1, int(expected - 2.0 * math.sqrt(expected)))
        z = float(self._maxima[n - count])
        return min(bonferroni, max(norm_isf(alpha), z))
