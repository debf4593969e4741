"""The baseline's current level: which stored runs describe today's build.

Every ``--perf-save-baseline`` run is kept, with what the gate said of it,
but a comparison only uses the runs of the current level:

- the level starts at the last change point of the stored runs (E-divisive
  with a Welch test, as in the trend report), or at a confirmed step: a run
  saved as ``regressed`` (or ``improved``) that its rerun confirmed, or two
  runs in a row saved with the same direction;
- a run saved as ``regressed`` or ``improved`` that did not start the level
  is left out of it: one slow run (a noisy neighbour, or a step not yet
  confirmed) is not mixed into the level it left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perfsuite.stats.changepoint import change_points

__all__ = ["DIRECTIONS", "Mark", "current_level"]

DIRECTIONS = ("regressed", "improved")
# Change points in a baseline window are judged as strictly as in the trend report.
_P_VALUE = 0.001


@dataclass(frozen=True)
class Mark:
    """What the gate said of a run when it was saved."""

    judged: str | None = None  # "regressed", "improved", "same", or None (not compared)
    confirmed: bool = False  # a rerun agreed with the regression or improvement


def current_level(marks: Sequence[Mark], series: Sequence[Sequence[float]] = ()) -> list[int]:
    """The indices (oldest first) of the stored runs that make up the current level.

    ``series``: per endpoint, a metric of every run (p50, say), for the change points.
    """
    n = len(marks)
    start = 0
    for values in series:
        x = np.asarray(values, dtype=np.float64)
        if x.size == n and np.all(np.isfinite(x)) and np.all(x > 0):
            points = change_points(x, log=True, p_value=_P_VALUE)
            if points:
                start = max(start, points[-1].index)
    for i, mark in enumerate(marks):
        if mark.judged not in DIRECTIONS:
            continue
        if mark.confirmed:
            start = max(start, i)
        elif i >= 1 and marks[i - 1].judged == mark.judged:
            start = max(start, i - 1)
    # The runs that opened the level were judged against the one they left: they
    # belong to the new one. Any later run judged a step is left out of it.
    opened = start
    while opened < n and marks[opened].judged in DIRECTIONS:
        if marks[opened].judged != marks[start].judged:
            break
        opened += 1
    return [i for i in range(start, n) if i < opened or marks[i].judged not in DIRECTIONS]
