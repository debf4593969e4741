"""Change points in a history: since which run has a metric been different?

E-divisive means (Matteson & James, 2014) proposes where a series splits:
the split that maximises the energy distance between the two sides. As in
Apache Otava (formerly Hunter), a candidate is kept when a Welch t-test
between its two sides is significant, instead of E-divisive's permutation
test: that is deterministic, and fast enough to run on every report. Each
kept split's sides are searched again (hierarchical bisection).

Written here rather than taken from MongoDB's signal-processing-algorithms
(what Otava builds on): that package pins numpy < 2, Python 3.11 only and
gevent, and a history holds at most a few hundred points, where a dense
O(n^2) distance matrix is instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as st

__all__ = ["ChangePoint", "change_points", "energy_split"]


@dataclass(frozen=True, kw_only=True)
class ChangePoint:
    """The series is different from ``index`` on (the first point of the new level)."""

    index: int
    before: float  # the mean of the segment before (geometric on the log scale)
    after: float
    p_value: float

    @property
    def change(self) -> float:
        """Relative change, after / before - 1."""
        return self.after / self.before - 1.0 if self.before else math.inf


def _block_sums(distances: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # S[i, j] = sum of distances[:i, :j]: any rectangle's sum in O(1).
    s = np.zeros((distances.shape[0] + 1, distances.shape[1] + 1))
    s[1:, 1:] = distances.cumsum(axis=0).cumsum(axis=1)
    return s


def energy_split(
    values: Sequence[float] | npt.NDArray[np.float64], *, min_size: int = 3
) -> int | None:
    """The E-divisive split of ``values`` (the first index of the right side), or None."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 2 * min_size:
        return None
    s = _block_sums(np.abs(x[:, None] - x[None, :]))

    def rect(r0: int, r1: int, c0: int, c1: int) -> float:
        return float(s[r1, c1] - s[r0, c1] - s[r1, c0] + s[r0, c0])

    best, best_q = None, -math.inf
    for tau in range(min_size, n - min_size + 1):
        left, right = tau, n - tau
        cross = rect(0, tau, tau, n) * 2.0 / (left * right)
        within_l = rect(0, tau, 0, tau) / (left * (left - 1))  # each pair counted twice
        within_r = rect(tau, n, tau, n) / (right * (right - 1))
        q = left * right / n * (cross - within_l - within_r)
        if q > best_q:
            best, best_q = tau, q
    return best


def _welch(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    # A side of identical values is a normal case (a metric that did not move
    # for a while): its spread is exactly 0, not a rounding residue that
    # scipy's ttest_ind would warn about ("catastrophic cancellation").
    mean_a, sd_a = _mean_sd(a)
    mean_b, sd_b = _mean_sd(b)
    if sd_a == 0 and sd_b == 0:  # flat on both sides: different or not, no doubt
        return 0.0 if mean_a != mean_b else 1.0
    result = st.ttest_ind_from_stats(mean_a, sd_a, a.size, mean_b, sd_b, b.size, equal_var=False)
    return float(result.pvalue)


def _mean_sd(v: npt.NDArray[np.float64]) -> tuple[float, float]:
    if v.size and np.all(v == v[0]):
        return float(v[0]), 0.0
    return float(v.mean()), float(v.std(ddof=1))


def change_points(
    values: Sequence[float] | npt.NDArray[np.float64],
    *,
    log: bool = True,
    p_value: float = 0.001,
    min_size: int = 3,
) -> list[ChangePoint]:
    """The change points of a series, in order.

    ``log``: judge ratios, not differences (latency and throughput vary by
    a factor; an error rate does not, and may be 0). Non-finite values are
    not allowed; drop them first.
    """
    raw = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(raw)) or (log and np.any(raw <= 0)):
        raise ValueError("change_points needs finite values (and positive ones with log=True)")
    x = np.log(raw) if log else raw
    cuts: list[int] = []

    def search(lo: int, hi: int) -> None:
        tau = energy_split(x[lo:hi], min_size=min_size)
        if tau is None or _welch(x[lo : lo + tau], x[lo + tau : hi]) >= p_value:
            return
        cuts.append(lo + tau)
        search(lo, lo + tau)
        search(lo + tau, hi)

    search(0, x.size)
    # Report each change against its neighbouring segments (found later
    # splits narrow what "before" and "after" are).
    edges = [0, *sorted(cuts), x.size]

    def level(v: npt.NDArray[np.float64]) -> float:
        return float(np.exp(v.mean())) if log else float(v.mean())

    return [
        ChangePoint(
            index=edges[i],
            before=level(x[edges[i - 1] : edges[i]]),
            after=level(x[edges[i] : edges[i + 1]]),
            p_value=_welch(x[edges[i - 1] : edges[i]], x[edges[i] : edges[i + 1]]),
        )
        for i in range(1, len(edges) - 1)
    ]
