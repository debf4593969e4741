"""Where samples go: per (phase, endpoint) HDR histograms, and a per-second series.

Every request that was sent and ended has a latency: answered (any status),
timed out (when it was given up), or failed by its connection (when that
happened). The latency histograms hold all of them; the ``ok`` ones hold the
successes alone. Only a request that was never sent (dropped) has none.

The hot path appends a few integers to arrays; once a second the arrays are
summarised (throughput, errors, p50/p95/p99 of that second) and folded into
the histograms in bulk. Memory stays flat: no per-request objects are kept.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

from perfsuite.stats.blocks import Block
from perfsuite.stats.hdr import add_counts, hdr_indices, new_histogram

__all__ = ["ERROR_KINDS", "Recorder", "Second"]

# Why a request failed: a status not accepted, no answer in time, no
# connection, the connection closed before the answer, the check said no, or
# never sent (the generator's queue overflowed, or the run ended first).
ERROR_KINDS = ("status", "timeout", "connect", "closed", "check", "dropped")
STATUS, TIMEOUT, CONNECT, CLOSED, CHECK, DROPPED = range(len(ERROR_KINDS))


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


class Recorder:
    """Collects samples of one run, keyed by ``phase_index * n_endpoints + endpoint``."""

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
        self.requests = [0] * cells  # scheduled, whether sent or not
        self.clamped = 0
        self._lat = [array("q") for _ in range(cells)]  # every request that ended
        self._ok = [array("q") for _ in range(cells)]  # the successes among them
        self._svc = [array("q") for _ in range(cells)]  # those that were sent
        # Per-second buffers, per endpoint: latencies, successes and error counts.
        self._sec_lat = [array("q") for _ in endpoints]
        self._sec_ok = [0] * self.n_endpoints
        self._sec_err = [0] * self.n_endpoints
        self.seconds: list[Second] = []
        # One block per cell and second: the unit of the statistics.
        self.blocks: list[list[Block]] = [[] for _ in range(cells)]
        self._req_mark = [0] * cells
        self._err_mark = [0] * cells

    def answer(self, cell: int, latency_us: int, service_us: int, status: int) -> None:
        """A response arrived and was accepted (status and check): a success."""
        self._lat[cell].append(latency_us)
        self._ok[cell].append(latency_us)
        self._svc[cell].append(service_us)
        ep = cell % self.n_endpoints
        self._sec_lat[ep].append(latency_us)
        self._sec_ok[ep] += 1
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
        ep = cell % self.n_endpoints
        self._sec_lat[ep].append(latency_us)
        self.errors[cell][kind] += 1
        self._sec_err[ep] += 1
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

    def flush_second(self, t: int) -> list[Second]:
        """Close second ``t``: summarise it, fold the buffers into the histograms."""
        summary = []
        for ep, buf in enumerate(self._sec_lat):
            errors = self._sec_err[ep]
            if not buf and not errors:
                continue
            if buf:
                values = np.frombuffer(buf, dtype=np.int64)
                p50, p95, p99 = (float(v) / 1000.0 for v in np.percentile(values, [50, 95, 99]))
            else:
                p50 = p95 = p99 = float("nan")
            summary.append(
                Second(
                    t=t,
                    endpoint=self.endpoints[ep],
                    requests=len(buf),
                    errors=errors,
                    p50=p50,
                    p95=p95,
                    p99=p99,
                    ok=self._sec_ok[ep],
                )
            )
            self._sec_lat[ep] = array("q")
            self._sec_err[ep] = 0
            self._sec_ok[ep] = 0
        self.seconds.extend(summary)
        self.fold(t)
        return summary

    def fold(self, t: int) -> None:
        """Move the buffered samples of second ``t`` into histograms and blocks."""
        for cell, buf in enumerate(self._lat):
            requests = self.requests[cell] - self._req_mark[cell]
            errors = sum(self.errors[cell]) - self._err_mark[cell]
            if not buf and not requests and not errors:
                continue
            self._req_mark[cell] += requests
            self._err_mark[cell] += errors
            values = np.frombuffer(buf, dtype=np.int64)
            index, counts = np.unique(hdr_indices(values), return_counts=True)
            fail_index, fail_counts = _EMPTY, _EMPTY
            if values.size:
                self.clamped += int(np.count_nonzero(values > 60_000_000))
                _add(self.latency[cell], values, index, counts)
                ok = np.frombuffer(self._ok[cell], dtype=np.int64)
                if ok.size:
                    ok_index, ok_counts = np.unique(hdr_indices(ok), return_counts=True)
                    _add(self.latency_ok[cell], ok, ok_index, ok_counts)
                if ok.size < values.size:
                    # The failures' bins: all minus ok (the ok bins are a subset).
                    fails = counts.copy()
                    if ok.size:
                        fails[np.searchsorted(index, ok_index)] -= ok_counts
                    keep = fails > 0
                    fail_index, fail_counts = index[keep], fails[keep].astype(np.int64)
                svc = np.frombuffer(self._svc[cell], dtype=np.int64)
                if svc.size:
                    s_index, s_counts = np.unique(hdr_indices(svc), return_counts=True)
                    _add(self.service[cell], svc, s_index, s_counts)
                self._lat[cell] = array("q")
                self._ok[cell] = array("q")
                self._svc[cell] = array("q")
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
        index: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
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


_EMPTY: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)


def _add(
    hist: HdrHistogram,
    values: npt.NDArray[np.int64],
    index: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
) -> None:
    add_counts(hist, counts, index)
    hist.min_value = min(hist.min_value, int(max(values.min(), 0)))
    hist.max_value = max(hist.max_value, int(min(values.max(), 60_000_000)))
