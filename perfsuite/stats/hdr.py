"""HDR histograms: the ``hdrhistogram`` package, fed in bulk.

The library records one value per Python call (~0.6 µs); the load engine
records up to 100,000 latencies a second, so it buffers them and adds each
buffer with one vectorised bincount into the library's own counts array.
Everything else (percentiles, merging, encoding) is the library's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

__all__ = [
    "BINS",
    "BIN_MIDDLE_US",
    "BIN_TOP_US",
    "HIGHEST_US",
    "LOWEST_US",
    "Percentiles",
    "add_counts",
    "decode",
    "dense_percentiles",
    "encode",
    "hdr_indices",
    "index_values",
    "merge",
    "new_histogram",
    "percentiles",
    "record_many",
]

LOWEST_US = 1
HIGHEST_US = 60_000_000  # 60 s, in microseconds
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    """An empty histogram of microseconds, 1 µs to 60 s, 3 significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def _counts(hist: HdrHistogram) -> npt.NDArray[np.uint64]:
    view: npt.NDArray[np.uint64] = np.ctypeslib.as_array(hist.counts)
    return view


_LAYOUT = new_histogram()  # the one layout of every perfsuite histogram
BINS = _LAYOUT.counts_len  # its counts array's length: dense bin counts are this long


def hdr_indices(values_us: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Counts-array indices of values (µs), clamped to 0..60 s.

    Same arithmetic as ``HdrHistogram._counts_index_for``, vectorised:
    frexp's exponent is the bit length, exact for integers below 2**53.
    """
    h = _LAYOUT
    values = np.clip(np.asarray(values_us, dtype=np.int64), 0, HIGHEST_US)
    _, bits = np.frexp((values | h.sub_bucket_mask).astype(np.float64))
    bucket = bits.astype(np.int64) - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + h.unit_magnitude)
    index: npt.NDArray[np.int64] = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + (
        sub_bucket - h.sub_bucket_half_count
    )
    return index


def index_values(
    index: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(highest, median) equivalent values (µs) of counts-array indices.

    Percentiles report the highest equivalent value and the mean uses the
    median one, as the hdrhistogram library does.
    """
    h = _LAYOUT
    idx = np.asarray(index, dtype=np.int64)
    bucket = (idx >> h.sub_bucket_half_count_magnitude) - 1
    sub_bucket = (idx & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
    first = bucket < 0
    sub_bucket = np.where(first, sub_bucket - h.sub_bucket_half_count, sub_bucket)
    bucket = np.where(first, 0, bucket)
    lowest = sub_bucket << (bucket + h.unit_magnitude)
    size = np.left_shift(1, h.unit_magnitude + bucket + (sub_bucket >= h.sub_bucket_count))
    return lowest + size - 1, lowest + (size >> 1)


# Every bin's highest and median equivalent value (µs), computed once.
BIN_TOP_US, BIN_MIDDLE_US = index_values(np.arange(BINS))


def dense_percentiles(counts: npt.NDArray[np.int64], qs: Iterable[float]) -> list[float]:
    """Percentiles (ms) of dense bin counts, as the histogram would give them."""
    cum = np.cumsum(counts)
    total = int(cum[-1]) if cum.size else 0
    if total == 0:
        return [float("nan") for _ in qs]
    out = []
    for q in qs:
        target = max(1, math.floor(q / 100.0 * total + 0.5))
        position = min(int(np.searchsorted(cum, target)), cum.size - 1)
        out.append(float(BIN_TOP_US[position]) / 1000.0)
    return out


def record_many(hist: HdrHistogram, values_us: npt.ArrayLike) -> int:
    """Record many values (µs) at once; values above 60 s are clamped to it.

    Returns the number of values that had to be clamped.
    """
    values = np.asarray(values_us, dtype=np.int64)
    if values.size == 0:
        return 0
    clamped = int(np.count_nonzero(values > HIGHEST_US))
    add_counts(hist, np.bincount(hdr_indices(values), minlength=hist.counts_len))
    values = np.clip(values, 0, HIGHEST_US)
    hist.min_value = min(hist.min_value, int(values.min()))
    hist.max_value = max(hist.max_value, int(values.max()))
    return clamped


def add_counts(
    hist: HdrHistogram, counts: npt.ArrayLike, index: npt.ArrayLike | None = None
) -> None:
    """Add bin counts (dense, or sparse at ``index``) to a histogram's counts.

    Only ``total_count`` is kept up to date; min and max are the caller's.
    """
    view = _counts(hist)
    add = np.asarray(counts, dtype=np.uint64)
    if index is None:
        view += add
    else:
        np.add.at(view, np.asarray(index, dtype=np.int64), add)
    hist.total_count += int(add.sum())


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """A new histogram holding the exact sum of ``histograms``."""
    total = new_histogram()
    for hist in histograms:
        if hist.get_total_count():
            total.add(hist)
    return total


def encode(hist: HdrHistogram) -> str:
    """The standard compressed, base64 HDR encoding (readable by any HDR tool)."""
    data: bytes = hist.encode()
    return data.decode("ascii")


def decode(text: str) -> HdrHistogram:
    """Inverse of :func:`encode`."""
    return HdrHistogram.decode(text.encode("ascii"))


@dataclass(frozen=True, kw_only=True)
class Percentiles:
    """Summary of a latency distribution, in milliseconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float
    min: float

    def as_dict(self) -> dict[str, float]:
        """The fields as a plain dict (for JSON)."""
        return {k: getattr(self, k) for k in ("p50", "p90", "p95", "p99", "p999", "max", "mean")}


def percentiles(hist: HdrHistogram) -> Percentiles:
    """Percentiles of a histogram of microseconds, reported in milliseconds.

    The same numbers as the library's ``get_percentile_to_value_dict`` and
    ``get_mean_value``, from its counts array with numpy: those walk every bin
    in Python (~0.2 s for one busy histogram, which a report of many, or the
    summary printed after Ctrl-C, pays many times over).
    """
    count = int(hist.get_total_count())
    if count == 0:
        nan = float("nan")
        return Percentiles(
            count=0, mean=nan, p50=nan, p90=nan, p95=nan, p99=nan, p999=nan, max=nan, min=nan
        )
    counts = _counts(hist)[:BINS].astype(np.int64)
    p50, p90, p95, p99, p999 = dense_percentiles(counts, PERCENTILES)
    mean_us = float(np.dot(counts.astype(np.float64), BIN_MIDDLE_US)) / count
    ms = 1000.0
    return Percentiles(
        count=count,
        mean=mean_us / ms,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        p999=p999,
        max=float(hist.get_max_value()) / ms,
        min=float(hist.get_min_value()) / ms,
    )
