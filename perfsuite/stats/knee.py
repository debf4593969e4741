"""The knee of a ramp: the rate at which latency starts to climb.

A hinge is fitted to log latency against the rate, flat up to the knee and
rising after it: ``log y = a + b * max(0, x - c)``, with ``c`` tried at each
observed rate and the least-squares fit kept. A knee is reported only when
the climb after it is real: latency at the highest rate at least
``min_rise`` times the flat level. Per-second points are noisy; the fit on
logs keeps one slow second from deciding it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Knee", "find_knee"]


@dataclass(frozen=True, kw_only=True)
class Knee:
    """Latency is flat at ``flat`` up to ``rate``, then climbs ``rise`` times by the top rate."""

    rate: float
    flat: float
    rise: float


def find_knee(
    rates: Sequence[float],
    latencies: Sequence[float],
    *,
    min_rise: float = 1.5,
    min_spread: float = 0.3,
) -> Knee | None:
    """The knee of (rate, latency) points, or None when latency does not climb.

    ``min_spread``: the rates must span at least this fraction of the top
    rate (a constant-rate phase has no knee to find).
    """
    x = np.asarray(rates, dtype=np.float64)
    y = np.asarray(latencies, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
    x, y = x[keep], np.log(y[keep])
    if x.size < 4 or x.max() <= 0 or (x.max() - x.min()) / x.max() < min_spread:
        return None
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    best: tuple[float, float, float, float] | None = None  # sse, a, b, c
    for c in np.unique(x[1:-2]):  # at least two points on each side of the hinge
        h = np.maximum(0.0, x - c)
        design = np.column_stack([np.ones_like(x), h])
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((design @ np.array([a, b]) - y) ** 2).sum())
        if b > 0 and (best is None or sse < best[0]):
            best = (sse, float(a), float(b), float(c))
    if best is None:
        return None
    _, a, b, c = best
    rise = math.exp(b * (float(x.max()) - c))
    if rise < min_rise:
        return None
    return Knee(rate=c, flat=math.exp(a), rise=rise)
