"""Where samples go: per (phase, endpoint) HDR histograms, and a per-second series.

The hot path appends two integers to arrays; once a second the arrays are
summarised (throughput, errors, p50/p95/p99 of that second) and folded into
the histograms in bulk. Memory stays flat: no per-request objects are kept.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from perfsuite.stats.hdr import new_histogram, record_many

__all__ = ["ERROR_KINDS", "Recorder", "Second"]

# Why a request failed: a status not accepted, no answer in time, no
# connection, the connection closed before the answer, the check said no, or
# never sent (the generator's queue overflowed, or the run ended first).
ERROR_KINDS = ("status", "timeout", "connect", "closed", "check", "dropped")
STATUS, TIMEOUT, CONNECT, CLOSED, CHECK, DROPPED = range(len(ERROR_KINDS))


@dataclass(frozen=True, kw_only=True)
class Second:
    """One second of the run, per endpoint: answers, errors and latency (ms)."""

    t: int
    endpoint: str
    requests: int
    errors: int
    p50: float
    p95: float
    p99: float


class Recorder:
    """Collects samples of one run, keyed by ``phase_index * n_endpoints + endpoint``."""

    def __init__(self, n_phases: int, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.n_endpoints = len(endpoints)
        cells = n_phases * self.n_endpoints
        self.latency: list[HdrHistogram] = [new_histogram() for _ in range(cells)]
        self.service: list[HdrHistogram] = [new_histogram() for _ in range(cells)]
        self.errors = [[0] * len(ERROR_KINDS) for _ in range(cells)]
        self.statuses: list[dict[int, int]] = [{} for _ in range(cells)]
        self.requests = [0] * cells  # scheduled, whether sent or not
        self.clamped = 0
        self._lat = [array("q") for _ in range(cells)]
        self._svc = [array("q") for _ in range(cells)]
        # Per-second buffers, per endpoint: latencies and error counts.
        self._sec_lat = [array("q") for _ in endpoints]
        self._sec_err = [0] * self.n_endpoints
        self.seconds: list[Second] = []

    def answer(self, cell: int, latency_us: int, service_us: int, status: int) -> None:
        """A response arrived (whether or not it counts as an error)."""
        self._lat[cell].append(latency_us)
        self._svc[cell].append(service_us)
        self._sec_lat[cell % self.n_endpoints].append(latency_us)
        statuses = self.statuses[cell]
        statuses[status] = statuses.get(status, 0) + 1

    def error(self, cell: int, kind: int) -> None:
        """A request failed; ``kind`` indexes :data:`ERROR_KINDS`."""
        self.errors[cell][kind] += 1
        self._sec_err[cell % self.n_endpoints] += 1

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
                )
            )
            self._sec_lat[ep] = array("q")
            self._sec_err[ep] = 0
        self.seconds.extend(summary)
        self.fold()
        return summary

    def fold(self) -> None:
        """Move buffered samples into the histograms."""
        for cell, buf in enumerate(self._lat):
            if buf:
                self.clamped += record_many(self.latency[cell], np.frombuffer(buf, dtype=np.int64))
                svc = self._svc[cell]
                record_many(self.service[cell], np.frombuffer(svc, dtype=np.int64))
                self._lat[cell] = array("q")
                self._svc[cell] = array("q")
