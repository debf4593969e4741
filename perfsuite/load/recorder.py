"""Where samples go: per (phase, endpoint) HDR histograms, and a per-second series.

Every request that was sent and ended has a latency: answered (any status),
timed out (when it was given up), or failed by its connection (when that
happened). The latency histograms hold all of them; the ``ok`` ones hold the
successes alone. Only a request that was never sent (dropped) has none.

The hot path appends a few integers to arrays; every 50 ms they become bin
counts, and once a second the counts are summarised (throughput, errors,
p50/p95/p99 of that second) and folded into the histograms. Memory stays
flat: no per-request objects are kept.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

from perfsuite.stats.blocks import Block
from perfsuite.stats.hdr import (
    BINS,
    HIGHEST_US,
    add_counts,
    dense_percentiles,
    hdr_indices,
    new_histogram,
)

__all__ = ["ERROR_KINDS", "Recorder", "Second", "SecondBins"]

# Why a request failed: a status not accepted, no answer in time, no
# connection, the connection closed before the answer, the check said no, or
# never sent (the generator's queue overflowed, or the run ended first).
ERROR_KINDS = ("status", "timeout", "connect", "closed", "check", "dropped")
STATUS, TIMEOUT, CONNECT, CLOSED, CHECK, DROPPED = range(len(ERROR_KINDS))


IntArray = npt.NDArray[np.int64]
# (second, endpoint index, HDR bin indices, their counts): one second's latencies.
SecondBins = tuple[int, int, IntArray, IntArray]


@dataclass(frozen=True, kw_only=True)
class Second:
    """One second of the run, per endpoint: requests that ended in it, and their latency (ms).

    ``requests`` ended with a latency (answered, timed out or failed),
    ``ok`` of them succeeded, ``errors`` failed (dropped ones included).
    """

    t: int
    endpoint: str
    requests: int
    errors: int
    p50: float
    p95: float
    p99: float
    ok: int = 0


@dataclass(frozen=True, kw_only=True)
class SecondReport:
    """A second just closed, for a live exporter: its phase (the one running when it
    closed), and per endpoint what ended in it and the latency bins of those."""

    phase: str
    seconds: tuple[Second, ...]
    bins: tuple[SecondBins, ...]
    endpoints: tuple[str, ...]  # by endpoint index (the bins' second field)
    # So far in the run: sent later than scheduled (by the generator's fault of
    # them), never sent, and the generator's CPU seconds.
    late: int = 0
    late_generator: int = 0
    dropped: int = 0
    cpu_seconds: float = 0.0
    worker: int = 0  # which load worker (process) it comes from


class Recorder:
    """Collects samples of one run, keyed by ``phase_index * n_endpoints + endpoint``.

    The hot path appends to arrays. ``absorb()`` (every 50 ms, from the
    engine's sweep) turns them into dense bin counts per cell: a few
    thousand values at a time, well under a millisecond of the event loop.
    ``flush_second()`` then closes the second from the counts alone, so no
    step ever sorts or scans a whole second's samples at once.
    """

    def __init__(
        self,
        n_phases: int,
        endpoints: list[str],
        spans: list[tuple[float, float]] | None = None,
    ) -> None:
        self.endpoints = endpoints
        # Each phase's [start, end) in seconds from the run start, for its blocks.
        self.spans = spans or [(0.0, float("inf"))] * n_phases
        self.n_endpoints = len(endpoints)
        cells = n_phases * self.n_endpoints
        self.latency: list[HdrHistogram] = [new_histogram() for _ in range(cells)]
        self.latency_ok: list[HdrHistogram] = [new_histogram() for _ in range(cells)]
        self.service: list[HdrHistogram] = [new_histogram() for _ in range(cells)]
        self.errors = [[0] * len(ERROR_KINDS) for _ in range(cells)]
        self.statuses: list[dict[int, int]] = [{} for _ in range(cells)]
        self.stale = [0] * cells  # successes whose ``stale`` predicate said so
        self.requests = [0] * cells  # scheduled, whether sent or not
        self.clamped = 0
        self._lat = [array("q") for _ in range(cells)]  # every request that ended
        self.ended = [0] * cells  # requests ended so far, per cell (as of the last absorb)
        self._ok = [array("q") for _ in range(cells)]  # the successes among them
        self._svc = [array("q") for _ in range(cells)]  # those that were sent
        # The current second's bin counts per cell, made when a cell first has samples.
        self._acc: dict[int, _Counts] = {}
        self._sec_err = [0] * self.n_endpoints
        self.seconds: list[Second] = []
        # Per second and endpoint, its latency bins (sparse): what exact
        # per-second percentiles over several processes are merged from.
        self.second_bins: list[SecondBins] = []
        # One block per cell and second: the unit of the statistics.
        self.blocks: list[list[Block]] = [[] for _ in range(cells)]
        self._req_mark = [0] * cells
        self._err_mark = [0] * cells

    def answer(self, cell: int, latency_us: int, service_us: int, status: int) -> None:
        """A response arrived and was accepted (status and check): a success."""
        self._lat[cell].append(latency_us)
        self._ok[cell].append(latency_us)
        self._svc[cell].append(service_us)
        statuses = self.statuses[cell]
        statuses[status] = statuses.get(status, 0) + 1

    def failed(
        self, cell: int, kind: int, latency_us: int, service_us: int = -1, status: int = 0
    ) -> None:
        """A request ended in failure after ``latency_us``: ``kind`` indexes :data:`ERROR_KINDS`.

        ``service_us`` < 0: it was never sent (it waited in the queue);
        ``status`` 0: no response arrived.
        """
        self._lat[cell].append(latency_us)
        if service_us >= 0:
            self._svc[cell].append(service_us)
        self.errors[cell][kind] += 1
        self._sec_err[cell % self.n_endpoints] += 1
        if status:
            statuses = self.statuses[cell]
            statuses[status] = statuses.get(status, 0) + 1

    def dropped(self, cell: int) -> None:
        """A scheduled request was never sent: an error without a latency."""
        self.errors[cell][DROPPED] += 1
        self._sec_err[cell % self.n_endpoints] += 1

    def withdraw(self, cell: int) -> None:
        """Take back a scheduled request that will never end (the run was interrupted)."""
        self.requests[cell] -= 1
        # It may be counted in a block already folded: the cell's total stays exact.
        self._req_mark[cell] = min(self._req_mark[cell], self.requests[cell])

    def absorb(self) -> None:
        """Turn the buffered samples into the current second's bin counts."""
        for cell, buf in enumerate(self._lat):
            if not buf:
                continue
            acc = self._acc.get(cell)
            if acc is None:
                acc = self._acc[cell] = _Counts()
            values = np.frombuffer(buf, dtype=np.int64)
            self.ended[cell] += len(buf)
            self.clamped += acc.lat.add(values)
            acc.ok.add(np.frombuffer(self._ok[cell], dtype=np.int64))
            acc.svc.add(np.frombuffer(self._svc[cell], dtype=np.int64))
            self._lat[cell] = array("q")
            self._ok[cell] = array("q")
            self._svc[cell] = array("q")

    def flush_second(self, t: int) -> list[Second]:
        """Close second ``t``: summarise it, fold its counts into the histograms."""
        self.absorb()
        summary = []
        for ep in range(self.n_endpoints):
            parts = [a for c, a in self._acc.items() if c % self.n_endpoints == ep]
            errors = self._sec_err[ep]
            if not parts and not errors:
                continue
            lat = parts[0].lat.counts.copy() if parts else np.zeros(1, dtype=np.int64)
            for extra in parts[1:]:
                lat += extra.lat.counts
            p50, p95, p99 = dense_percentiles(lat, (50, 95, 99))
            index = np.flatnonzero(lat)
            if index.size:
                self.second_bins.append((t, ep, index, lat[index]))
            summary.append(
                Second(
                    t=t,
                    endpoint=self.endpoints[ep],
                    requests=sum(a.lat.total for a in parts),
                    errors=errors,
                    p50=p50,
                    p95=p95,
                    p99=p99,
                    ok=sum(a.ok.total for a in parts),
                )
            )
            self._sec_err[ep] = 0
        self.seconds.extend(summary)
        self.fold(t)
        return summary

    def fold(self, t: int) -> None:
        """Move the counts of second ``t`` into histograms and blocks."""
        self.absorb()
        for cell in range(len(self._lat)):
            requests = self.requests[cell] - self._req_mark[cell]
            errors = sum(self.errors[cell]) - self._err_mark[cell]
            acc = self._acc.pop(cell, None)
            if acc is None and not requests and not errors:
                continue
            self._req_mark[cell] += requests
            self._err_mark[cell] += errors
            index, counts = _EMPTY, _EMPTY
            fail_index, fail_counts = _EMPTY, _EMPTY
            if acc is not None:
                acc.lat.into(self.latency[cell])
                acc.ok.into(self.latency_ok[cell])
                acc.svc.into(self.service[cell])
                index = np.flatnonzero(acc.lat.counts)
                counts = acc.lat.counts[index]
                if acc.ok.total < acc.lat.total:
                    # The failures' bins: all minus ok (the ok bins are a subset).
                    fails = acc.lat.counts - acc.ok.counts
                    fail_index = np.flatnonzero(fails)
                    fail_counts = fails[fail_index]
            block = self._block(cell, t, requests, errors, index, counts)
            if fail_index.size:
                block = replace(block, fail_index=fail_index, fail_counts=fail_counts)
            self.blocks[cell].append(block)

    def _block(
        self,
        cell: int,
        t: int,
        requests: int,
        errors: int,
        index: IntArray,
        counts: IntArray,
    ) -> Block:
        start, end = self.spans[cell // self.n_endpoints]
        # Late answers of a phase that has ended belong to its last second
        # (a phase without an end, as in a recorder made without spans, has none).
        t = max(t, math.floor(start))
        if math.isfinite(end):
            t = min(t, max(math.ceil(end) - 1, math.floor(start)))
        seconds = max(0.0, min(t + 1.0, end) - max(float(t), start))
        return Block(
            t=t,
            seconds=seconds,
            requests=requests,
            errors=errors,
            index=index,
            counts=counts.astype(np.int64),
        )


_EMPTY: IntArray = np.zeros(0, dtype=np.int64)


class _Dense:
    """Dense bin counts of some latencies (µs), with their count, min and max."""

    __slots__ = ("counts", "high", "low", "total")

    def __init__(self) -> None:
        self.counts: IntArray = np.zeros(BINS, dtype=np.int64)
        self.total = 0
        self.low = HIGHEST_US
        self.high = 0

    def add(self, values: IntArray) -> int:
        """Count ``values``; returns how many were above the histograms' 60 s."""
        if not values.size:
            return 0
        self.counts += np.bincount(hdr_indices(values), minlength=BINS)
        self.total += int(values.size)
        self.low = min(self.low, max(0, int(values.min())))
        high = int(values.max())
        self.high = max(self.high, min(high, HIGHEST_US))
        return int(np.count_nonzero(values > HIGHEST_US)) if high > HIGHEST_US else 0

    def into(self, hist: HdrHistogram) -> None:
        """Add these counts to a histogram."""
        if self.total:
            add_counts(hist, self.counts)
            hist.min_value = min(hist.min_value, self.low)
            hist.max_value = max(hist.max_value, self.high)


class _Counts:
    """A cell's bin counts for the current second: all, successes, service times."""

    __slots__ = ("lat", "ok", "svc")

    def __init__(self) -> None:
        self.lat = _Dense()
        self.ok = _Dense()
        self.svc = _Dense()
