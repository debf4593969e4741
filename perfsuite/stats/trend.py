"""Is memory growing? The Theil-Sen slope of a series, with its interval.

Theil-Sen (the median of pairwise slopes) shrugs off GC spikes and one-off
allocations that would tilt a least-squares line.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from perfsuite.stats.dist import t_ppf

__all__ = ["Band", "Slope", "prediction_band", "theil_sen"]


@dataclass(frozen=True, kw_only=True)
class Slope:
    """Units per minute, with a 95 % interval."""

    per_minute: float
    low: float
    high: float
    points: int


def theil_sen(seconds: list[float], values: list[float], *, max_points: int = 120) -> Slope | None:
    """The slope of ``values`` over ``seconds`` (None with fewer than 5 points)."""
    if len(seconds) < 5:
        return None
    t = np.asarray(seconds, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.size > max_points:  # downsample: the median of each stretch
        edges = np.linspace(0, t.size, max_points + 1).astype(int)
        t = np.array([t[a:b].mean() for a, b in itertools.pairwise(edges)])
        v = np.array([np.median(v[a:b]) for a, b in itertools.pairwise(edges)])
    slope, _, low, high = st.theilslopes(v, t, alpha=0.95)
    return Slope(
        per_minute=float(slope) * 60.0,
        low=float(low) * 60.0,
        high=float(high) * 60.0,
        points=int(t.size),
    )


@dataclass(frozen=True, kw_only=True)
class Band:
    """Where the next run is expected (a prediction interval from the runs before it)."""

    low: float
    high: float


def prediction_band(runs: list[float], *, level: float = 0.98, log: bool = True) -> Band | None:
    """The ``level`` prediction interval of one more run, from ``runs`` (None below 3 runs).

    The same log-normal model the baseline gate judges by (at level 0.98 each
    side holds 1 %, the gate's alpha).
    """
    values = np.asarray([v for v in runs if v == v], dtype=np.float64)
    if values.size < 3 or (log and np.any(values <= 0)):
        return None
    x = np.log(values) if log else values
    n = x.size
    # A report computes a band for every run of every series (dist: without
    # scipy.stats' machinery).
    quantile = t_ppf(0.5 + level / 2.0, n - 1)
    half = quantile * float(x.std(ddof=1)) * (1 + 1 / n) ** 0.5
    mean = float(x.mean())
    if log:
        return Band(low=float(np.exp(mean - half)), high=float(np.exp(mean + half)))
    return Band(low=mean - half, high=mean + half)
