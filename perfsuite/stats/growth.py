"""Growth of a count during the load: the seed's goroutine leak, judged.

A count (threads, descriptors, connections, goroutines, asyncio tasks) is
sampled once a second before, during and after the load. It *leaks* when
both hold:

- it trends upward during the steady phase: a Mann-Kendall test (Kendall's
  tau of the count against time, with the tie correction, as scipy's
  ``kendalltau`` computes it) below ``alpha``, with a Theil-Sen slope that
  adds at least ``min_rise`` over the phase;
- it stays up after the load: the median of the samples after the
  cool-down exceeds the median before the load by at least ``min_rise``
  (and by ``rel_rise`` of the level before).

Either alone is not enough. Seconds of a count are serially correlated
(a pool grows and shrinks with the traffic), which makes a trend test
alone cry wolf; a count that only fills once (a thread pool created on the
first request) stays up without being a leak of the load. A leak does both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as st

__all__ = ["GrowthRule", "GrowthVerdict", "judge_growth"]


@dataclass(frozen=True, kw_only=True)
class GrowthRule:
    """What counts as a leak (see the module's docstring)."""

    alpha: float = 1e-3
    min_rise: float = 5.0  # counts: less is never a leak (a pool's last few)
    rel_rise: float = 0.1  # of the level before the load
    min_samples: int = 8  # steady seconds needed to test a trend

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.min_rise < 0 or self.rel_rise < 0:
            raise ValueError("min_rise and rel_rise must not be negative")
        if self.min_samples < 3:
            raise ValueError(f"min_samples must be at least 3, got {self.min_samples}")


@dataclass(frozen=True, kw_only=True)
class GrowthVerdict:
    """One count's growth: ``verdict`` is "leak", "ok" or "not judged" (with ``reason``)."""

    name: str
    verdict: str
    before: float | None  # median of the samples before the load
    after: float | None  # median of the samples after the cool-down
    slope: float | None  # Theil-Sen, per second, over the steady phase
    p: float | None  # Mann-Kendall, one-sided (upward)
    steady_samples: int
    reason: str = ""

    @property
    def leaked(self) -> bool:
        """True when the count grew during steady and stayed up."""
        return self.verdict == "leak"

    def text(self) -> str:
        """One line, as the seed's diagnosis reads."""
        grew = (
            f"{self.slope:+.3g}/s during steady (Mann-Kendall p = {self.p:.2g})"
            if self.slope is not None and self.p is not None
            else "no trend tested"
        )
        level = (
            f"{_count(self.after)} after the load (before: {_count(self.before)})"
            if self.after is not None and self.before is not None
            else "no level after the load"
        )
        if self.verdict == "leak":
            return f"{self.name} grew {grew} and stayed at {level}"
        if self.verdict == "ok":
            return f"{self.name}: {grew}; {level}"
        return f"{self.name}: not judged ({self.reason})"


def _count(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _median(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def judge_growth(
    name: str,
    *,
    before: Sequence[float],
    steady: tuple[Sequence[float], Sequence[float]],
    after: Sequence[float],
    rule: GrowthRule = GrowthRule(),
) -> GrowthVerdict:
    """Judge one count: ``before`` and ``after`` are its samples before the load and
    after the cool-down, ``steady`` its (times in s, values) during the steady phase."""
    times, values = (np.asarray(x, dtype=float) for x in steady)
    keep = np.isfinite(times) & np.isfinite(values)
    times, values = times[keep], values[keep]
    level_before, level_after = _median(before), _median(after)
    slope = p = None
    if times.size >= rule.min_samples and np.ptp(times) > 0:
        if np.ptp(values) == 0:
            slope, p = 0.0, 1.0
        else:
            slope = float(st.theilslopes(values, times).slope)
            tau = st.kendalltau(times, values)
            # kendalltau's p is two-sided; the one-sided upward p is half when tau > 0.
            p = float(tau.pvalue) / 2 if tau.statistic > 0 else 1.0 - float(tau.pvalue) / 2
    verdict = GrowthVerdict(
        name=name,
        verdict="not judged",
        before=level_before,
        after=level_after,
        slope=slope,
        p=p,
        steady_samples=int(times.size),
    )
    if slope is None or p is None:
        reason = f"{times.size} steady samples; {rule.min_samples} are needed"
        return replace(verdict, reason=reason)
    if level_before is None or level_after is None:
        missing = "before" if level_before is None else "after"
        return replace(verdict, reason=f"no samples {missing} the load")
    needed = max(rule.min_rise, rule.rel_rise * abs(level_before))
    trend = p < rule.alpha and slope * float(np.ptp(times)) >= needed
    stayed = level_after - level_before >= needed
    return replace(verdict, verdict="leak" if trend and stayed else "ok")
