"""Blocks: the unit of statistics over a run.

Requests inside a run are autocorrelated (a GC pause slows a whole stretch),
so intervals are not computed over requests but over blocks of time: each
block holds the HDR bin counts of its latencies and its request and error
counts, and the bins of its failed requests (timed out, refused, errored:
they have latencies too, kept apart so that ``*_ok`` metrics can leave them
out). A ``BlockSet`` is the matrix of one selection (an endpoint over the
measured phases); metrics of any resample of blocks are then a matrix
product and a cumulative sum, which is what makes the bootstrap fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from perfsuite.stats.hdr import index_values

__all__ = [
    "METRICS",
    "Block",
    "BlockSet",
    "Latencies",
    "Resampled",
    "bootstrap_metric",
    "merge_blocks",
    "metric_of_rows",
]

# The metrics a run is judged by; latency ones in milliseconds. Latency covers
# every request that ended (answered, timed out, failed); "_ok" ones the
# successes alone. "rps" is successful requests per second.
LATENCY = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
OK_LATENCY = tuple(f"{m}_ok" for m in LATENCY)
METRICS = (*LATENCY, *OK_LATENCY, "error_rate", "rps")
_LATENCY_NAMES = frozenset((*LATENCY, *OK_LATENCY))
_PERCENTILE = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_EMPTY = np.zeros(0, dtype=np.int64)
_NO_ROWS = np.zeros((1, 0))  # metric_of_rows's counts, when its latency sums are given


def _empty() -> IntArray:
    return _EMPTY


IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Block:
    """One stretch of time of one cell: sparse HDR bin counts, requests, errors."""

    t: int  # second since the run start
    seconds: float
    requests: int
    errors: int
    index: IntArray  # HDR counts-array indices with a count
    counts: IntArray  # their counts (every request that ended)
    fail_index: IntArray = field(default_factory=_empty)  # bins of the failed ones
    fail_counts: IntArray = field(default_factory=_empty)


def merge_blocks(blocks: Sequence[Block], *, same_span: bool) -> list[Block]:
    """Merge blocks of the same second into one, in time order.

    ``same_span``: the blocks cover the same stretch (endpoints of one phase),
    so their durations are not added up; otherwise (phases that share a
    second) they are.
    """
    by_t: dict[int, list[Block]] = {}
    for block in blocks:
        by_t.setdefault(block.t, []).append(block)
    merged = []
    for t in sorted(by_t):
        group = by_t[t]
        if len(group) == 1:
            merged.append(group[0])
            continue
        index = np.unique(np.concatenate([b.index for b in group]))
        counts = np.zeros(index.size, dtype=np.int64)
        for b in group:
            counts[np.searchsorted(index, b.index)] += b.counts
        fail_index, fail_counts = _sparse_sum([(b.fail_index, b.fail_counts) for b in group])
        secs = [b.seconds for b in group]
        merged.append(
            Block(
                t=t,
                seconds=max(secs) if same_span else sum(secs),
                requests=sum(b.requests for b in group),
                errors=sum(b.errors for b in group),
                index=index,
                counts=counts,
                fail_index=fail_index,
                fail_counts=fail_counts,
            )
        )
    return merged


def _sparse_sum(parts: Sequence[tuple[IntArray, IntArray]]) -> tuple[IntArray, IntArray]:
    """The sum of sparse (index, counts) pairs."""
    parts = [p for p in parts if p[0].size]
    if not parts:
        return _EMPTY, _EMPTY
    if len(parts) == 1:
        return parts[0]
    index = np.unique(np.concatenate([i for i, _ in parts]))
    counts = np.zeros(index.size, dtype=np.int64)
    for i, c in parts:
        counts[np.searchsorted(index, i)] += c
    return index, counts


@dataclass(frozen=True, eq=False)
class BlockSet:
    """Blocks of one selection as dense arrays over the union of their bins."""

    index: IntArray  # (K,) sorted HDR indices
    counts: IntArray  # (n, K)
    requests: IntArray  # (n,)
    errors: IntArray  # (n,)
    seconds: FloatArray  # (n,)
    fail: IntArray | None = None  # (n, K): the failed requests' part of counts; None: none
    # Metrics already computed (a set is never changed after it is made).
    _metrics: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _latencies: dict[bool, Latencies] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_blocks(cls, blocks: Sequence[Block], *, max_blocks: int = 30) -> BlockSet:
        """Merge consecutive blocks into at most ``max_blocks`` groups (~equal time)."""
        if not blocks:
            raise ValueError("no blocks")
        blocks = sorted(blocks, key=lambda b: b.t)
        index = np.unique(np.concatenate([b.index for b in blocks]))
        n = len(blocks)
        groups = min(max_blocks, n)
        # Group g takes blocks [edges[g], edges[g+1]): consecutive, nearly equal.
        edges = np.linspace(0, n, groups + 1).round().astype(np.int64)
        counts = np.zeros((groups, index.size), dtype=np.int64)
        requests = np.zeros(groups, dtype=np.int64)
        errors = np.zeros(groups, dtype=np.int64)
        seconds = np.zeros(groups, dtype=np.float64)
        any_fail = any(b.fail_index.size for b in blocks)
        fail = np.zeros((groups, index.size), dtype=np.int64) if any_fail else None
        for g in range(groups):
            for b in blocks[edges[g] : edges[g + 1]]:
                counts[g, np.searchsorted(index, b.index)] += b.counts
                if fail is not None and b.fail_index.size:
                    fail[g, np.searchsorted(index, b.fail_index)] += b.fail_counts
                requests[g] += b.requests
                errors[g] += b.errors
                seconds[g] += b.seconds
        return cls(
            index=index,
            counts=counts,
            requests=requests,
            errors=errors,
            seconds=seconds,
            fail=fail,
        )

    def regrouped(self, max_blocks: int) -> BlockSet:
        """Neighbouring blocks summed into at most ``max_blocks`` blocks."""
        if self.n <= max_blocks:
            return self
        edges = np.linspace(0, self.n, max_blocks + 1).round().astype(np.int64)
        return BlockSet(
            index=self.index,
            counts=np.add.reduceat(self.counts, edges[:-1], axis=0),
            requests=np.add.reduceat(self.requests, edges[:-1]),
            errors=np.add.reduceat(self.errors, edges[:-1]),
            seconds=np.add.reduceat(self.seconds, edges[:-1]),
            fail=None if self.fail is None else np.add.reduceat(self.fail, edges[:-1], axis=0),
        )

    def ok_counts(self) -> IntArray:
        """The bin counts of the successful requests alone."""
        if self.fail is None:
            return self.counts
        ok: IntArray = self.counts - self.fail
        return ok

    @property
    def n(self) -> int:
        """Number of blocks."""
        return int(self.counts.shape[0])

    def metric(self, name: str) -> float:
        """A metric over all blocks together."""
        if name in self._metrics:
            return self._metrics[name]
        latencies = None
        if name in _LATENCY_NAMES:
            ok = name in OK_LATENCY
            if ok not in self._latencies:
                counts = self.ok_counts() if ok else self.counts
                rows = counts.sum(axis=0, keepdims=True).astype(np.float64)
                self._latencies[ok] = Latencies.of_rows(rows, self.index)
            latencies = self._latencies[ok]
        value = float(
            metric_of_rows(
                name,
                _NO_ROWS,
                self.requests.sum(keepdims=True),
                self.errors.sum(keepdims=True),
                self.seconds.sum(keepdims=True),
                self.index,
                latencies,
            )[0]
        )
        self._metrics[name] = value
        return value


def metric_of_rows(
    name: str,
    counts: npt.NDArray[np.integer] | FloatArray,
    requests: npt.NDArray[np.integer] | FloatArray,
    errors: npt.NDArray[np.integer] | FloatArray,
    seconds: FloatArray,
    index: IntArray,
    latencies: Latencies | None = None,
) -> FloatArray:
    """A metric for each row of (resampled) block sums.

    Percentiles follow the HDR convention (the highest equivalent value of
    the bin where the cumulative count reaches ``round(q/100 * total)``);
    the mean uses median-equivalent values, as the hdrhistogram library does.
    ``*_ok`` names read ``counts`` as given: the caller passes the successes'.
    ``rps`` is successful requests (requests - errors) per second.
    ``latencies``: the rows' latency sums when already made (``counts`` is then unused).
    """
    if name == "error_rate":
        req = np.asarray(requests, dtype=np.float64)
        return np.divide(errors, req, out=np.zeros_like(req), where=req > 0)
    if name == "rps":
        sec = np.asarray(seconds, dtype=np.float64)
        # Errors count when they end, requests when scheduled: a block may go below 0.
        ok = np.maximum(
            0.0, np.asarray(requests, dtype=np.float64) - np.asarray(errors, dtype=np.float64)
        )
        return np.divide(ok, sec, out=np.zeros_like(sec), where=sec > 0)
    name = name.removesuffix("_ok")
    if latencies is None:
        latencies = Latencies.of_rows(np.asarray(counts, dtype=np.float64), index)
    if index.size == 0:  # no answered request (all errors): no latency to speak of
        return np.full(latencies.total.shape[0], np.nan)
    total = latencies.total
    if name == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            means: FloatArray = latencies.weighted / total / 1000.0
        return means
    if name == "max":
        # The last bin with a count is the first whose cumulative count is the total.
        target = total
    else:
        q = _PERCENTILE[name]
        target = np.maximum(1.0, np.floor(q / 100.0 * total + 0.5))
    position = np.minimum(latencies.count_below(target), index.size - 1)
    values: FloatArray = latencies.highest[position].astype(np.float64) / 1000.0
    values[total == 0] = np.nan
    return values


class Latencies:
    """Rows of latency bin counts, summed for the metrics: each row's total, its
    median-weighted sum (the mean) and its cumulative counts, searched in all rows
    at once (the percentiles and the max)."""

    def __init__(self, cum: FloatArray, weighted: FloatArray, highest: IntArray) -> None:
        rows, self.bins = cum.shape
        self.highest = highest  # of each bin (µs): what a percentile reports
        self.total: FloatArray = cum[:, -1].copy() if self.bins else np.zeros(rows)
        self.weighted = weighted
        # Rows never decrease: shifted each past the end of the one before, they
        # are one sorted array, and one binary search finds a position in every
        # row (comparing the whole matrix, per percentile, was the bootstrap's
        # main cost). Integer counts stay exact in float64 far beyond any run.
        step = float(self.total.max()) + 1.0 if rows and self.bins else 1.0
        self._offsets = np.arange(rows, dtype=np.float64) * step
        cum += self._offsets[:, None]  # in place: the caller's matrix is made for this
        self._flat = cum.ravel()

    @classmethod
    def of_rows(cls, rows: FloatArray, index: IntArray) -> Latencies:
        """From the rows' bin counts themselves."""
        highest, median = index_values(index)
        return cls(np.cumsum(rows, axis=1), rows @ median.astype(np.float64), highest)

    @classmethod
    def resampled(cls, weights: FloatArray, counts: FloatArray, index: IntArray) -> Latencies:
        """Of the resamples ``weights @ counts``, without making that matrix: every sum
        is linear in the blocks (a cumulative sum of the blocks' few rows, then one
        product, instead of a cumulative sum of thousands of resampled rows)."""
        highest, median = index_values(index)
        return cls(
            weights @ np.cumsum(counts, axis=1),
            weights @ (counts @ median.astype(np.float64)),
            highest,
        )

    def count_below(self, target: FloatArray) -> IntArray:
        """Per row, how many of its cumulative counts are below its ``target``."""
        found = np.searchsorted(self._flat, target + self._offsets, side="left")
        counts: IntArray = found - np.arange(target.size, dtype=np.int64) * self.bins
        return counts


class Resampled:
    """``resamples`` bootstrap resamples of a block set (blocks drawn with replacement).

    The weights are drawn once and every metric is read from the same
    resamples: one matrix product per sum, shared by all latency metrics.
    """

    def __init__(self, blocks: BlockSet, *, resamples: int, rng: np.random.Generator) -> None:
        n = blocks.n
        picks = rng.integers(0, n, size=(resamples, n)) + (np.arange(resamples) * n)[:, None]
        self.weights = np.bincount(picks.ravel(), minlength=resamples * n).reshape(resamples, n)
        self.blocks = blocks
        self._w = self.weights.astype(np.float64)
        # Per kind (all requests, successes alone): the resamples' latency sums.
        self._latencies: dict[bool, Latencies] = {}

    def metric(self, name: str) -> FloatArray:
        """The metric of each resample."""
        w = self._w
        latencies = None
        if name in _LATENCY_NAMES:
            ok = name in OK_LATENCY
            if ok not in self._latencies:
                source = self.blocks.ok_counts() if ok else self.blocks.counts
                self._latencies[ok] = Latencies.resampled(
                    w, source.astype(np.float64), self.blocks.index
                )
            latencies = self._latencies[ok]
        return metric_of_rows(
            name,
            _NO_ROWS,
            w @ self.blocks.requests.astype(np.float64),
            w @ self.blocks.errors.astype(np.float64),
            w @ self.blocks.seconds,
            self.blocks.index,
            latencies,
        )


def bootstrap_metric(
    blocks: BlockSet, name: str, *, resamples: int, rng: np.random.Generator
) -> FloatArray:
    """The metric over ``resamples`` bootstrap resamples of the blocks (with replacement)."""
    return Resampled(blocks, resamples=resamples, rng=rng).metric(name)
