"""The samples a PromQL expression is evaluated over: series of (time, value).

A series is a label set (``__name__`` included) and its samples, times in
seconds (any epoch, ascending). A vector is what an instant of evaluation
gives: one value per label set. Labels are a sorted tuple of pairs, so they
can be dict keys and compare as Prometheus compares them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["NAME", "Labels", "Series", "SeriesSet", "Vector", "labels_of", "without_name"]

NAME = "__name__"

Labels = tuple[tuple[str, str], ...]
Vector = dict[Labels, float]


def labels_of(mapping: Mapping[str, str]) -> Labels:
    """A label set from a mapping (empty values dropped, as Prometheus does)."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def without_name(labels: Labels) -> Labels:
    """The labels without the metric name (what functions and arithmetic return)."""
    return tuple(pair for pair in labels if pair[0] != NAME)


@dataclass(frozen=True)
class Series:
    """One series: its labels and its samples, times ascending, in seconds."""

    labels: Labels
    times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.times.shape != self.values.shape or self.times.ndim != 1:
            raise ValueError("a series needs as many times as values, in one dimension")
        if self.times.size > 1 and bool(np.any(np.diff(self.times) <= 0)):
            raise ValueError(f"the times of {self.name} are not strictly ascending")

    @property
    def name(self) -> str:
        return dict(self.labels).get(NAME, "")

    @classmethod
    def of(cls, labels: Mapping[str, str], points: Iterable[tuple[float, float]]) -> Series:
        """A series from a label mapping and (time, value) pairs."""
        pairs = list(points)
        times = np.array([t for t, _ in pairs], dtype=np.float64)
        values = np.array([v for _, v in pairs], dtype=np.float64)
        return cls(labels_of(labels), times, values)


@dataclass(frozen=True)
class SeriesSet:
    """Every series an expression may select, indexed by metric name."""

    series: tuple[Series, ...]
    _by_name: dict[str, list[Series]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, list[Series]] = {}
        seen: set[Labels] = set()
        for one in self.series:
            if one.labels in seen:
                raise ValueError(f"two series have the labels {dict(one.labels)}")
            seen.add(one.labels)
            by_name.setdefault(one.name, []).append(one)
        object.__setattr__(self, "_by_name", by_name)

    def named(self, name: str | None) -> list[Series]:
        """The series of one metric name (every series when ``None``)."""
        if name is None:
            return list(self.series)
        return self._by_name.get(name, [])

    def names(self) -> list[str]:
        """Every metric name seen, sorted."""
        return sorted(self._by_name)
