"""PromQL's functions over a window of samples, and histogram_quantile.

Each follows Prometheus's own code (``promql/functions.go`` and
``promql/quantile.go``, v2.42 to v3): ``rate`` and ``increase`` extrapolate
to the window's edges as ``extrapolatedRate`` does (at most half a sample
interval beyond the first and last sample, never below a counter's zero),
counter resets add the value before the reset, and ``histogram_quantile``
interpolates linearly inside the bucket the rank falls in. Written here
rather than taken from a library because none in Python evaluates PromQL;
the parser is the ``promql-parser`` package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "OVER_TIME",
    "RATES",
    "bucket_quantile",
    "extrapolated_rate",
    "instant_rate",
    "quantile",
]

Floats = npt.NDArray[np.float64]


def extrapolated_rate(
    times: Floats,
    values: Floats,
    range_start: float,
    range_end: float,
    *,
    is_counter: bool,
    is_rate: bool,
) -> float | None:
    """``rate``, ``increase`` (counters) or ``delta`` (gauges) over one window.

    ``None`` when the window holds fewer than two samples (Prometheus drops
    the series at that step).
    """
    if times.size < 2:
        return None
    first, last = float(values[0]), float(values[-1])
    result = last - first
    if is_counter:
        # A drop is a reset: the counter restarted from zero, so what it had
        # counted before the drop is added back.
        drops = values[1:] < values[:-1]
        result += float(values[:-1][drops].sum())
    to_start = float(times[0]) - range_start
    to_end = range_end - float(times[-1])
    sampled = float(times[-1] - times[0])
    average = sampled / (times.size - 1)
    if is_counter and result > 0 and first >= 0:
        # A counter cannot go below zero: extrapolate no further than its zero.
        to_start = min(to_start, sampled * (first / result))
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    result *= interval / sampled
    if is_rate:
        result /= range_end - range_start
    return result


def instant_rate(times: Floats, values: Floats, *, is_rate: bool) -> float | None:
    """``irate`` (per second, resets handled) or ``idelta``: the last two samples."""
    if times.size < 2:
        return None
    previous, last = float(values[-2]), float(values[-1])
    result = last if is_rate and last < previous else last - previous
    interval = float(times[-1] - times[-2])
    if interval == 0:
        return None
    return result / interval if is_rate else result


def quantile(q: float, values: Sequence[float] | Floats) -> float:
    """Prometheus's ``quantile``: linear between the closest ranks (numpy's default)."""
    if len(values) == 0 or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))


def _stdvar(values: Floats) -> float:
    return float(np.var(values))  # population variance, as Prometheus


OVER_TIME: dict[str, Callable[[Floats], float]] = {
    "avg_over_time": lambda v: float(np.mean(v)),
    "min_over_time": lambda v: float(np.min(v)),
    "max_over_time": lambda v: float(np.max(v)),
    "sum_over_time": lambda v: float(np.sum(v)),
    "count_over_time": lambda v: float(v.size),
    "last_over_time": lambda v: float(v[-1]),
    "present_over_time": lambda v: 1.0,
    "stddev_over_time": lambda v: math.sqrt(_stdvar(v)),
    "stdvar_over_time": _stdvar,
}

# name -> (is_counter, is_rate) of extrapolated_rate
RATES: dict[str, tuple[bool, bool]] = {
    "rate": (True, True),
    "increase": (True, False),
    "delta": (False, False),
}


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """``histogram_quantile`` of one histogram: (upper bound, cumulative count) pairs.

    ``nan`` without a ``+Inf`` bucket, with fewer than two buckets or with no
    observations; counts that go down (scrapes not atomic) are raised to the
    highest count below them, buckets with equal bounds summed, as Prometheus does.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    highest = -math.inf
    for bucket in merged:
        highest = max(highest, bucket[1])
        bucket[1] = highest
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # The first bucket (the +Inf one left out) whose count reaches the rank.
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)
