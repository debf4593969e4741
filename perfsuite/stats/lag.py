"""Replication lag per phase and per second, from each heartbeat's lag (pure).

A heartbeat belongs to the phase, and the second, in which it was written.
Its lag is recorded in an HDR histogram of microseconds, like a request's
latency, so that percentiles of several loads (or agents) add up exactly.
Heartbeats not applied by the end are recorded with the time they had
waited: the percentiles are then lower bounds, and ``pending`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

from perfsuite.stats.blocks import Block, BlockSet, merge_blocks
from perfsuite.stats.hdr import (
    decode,
    encode,
    hdr_indices,
    new_histogram,
    percentiles,
    record_many,
)

__all__ = [
    "LagBlocks",
    "LagPhase",
    "LagSecond",
    "ReplicaLag",
    "lag_blocks",
    "lag_blockset",
    "lag_by_phase",
    "lag_by_second",
    "replica_key",
]

_MAX_BLOCKS = 30  # as a load's stored blocks (perfsuite.store.records.MAX_BLOCKS)


@dataclass(frozen=True, kw_only=True)
class LagPhase:
    """One replica's lag over one phase (ms)."""

    replica: str
    phase: str
    role: str
    heartbeats: int  # written in the phase
    pending: int  # of them, not applied when the load ended
    histogram: HdrHistogram  # lag, us

    def value(self, metric: str) -> float:
        """``p50``, ``p95``, ``p99`` or ``max`` of the lag, in ms."""
        got = percentiles(self.histogram)
        return float(getattr(got, metric))

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (run records): the numbers and the encoded histogram."""
        got = percentiles(self.histogram)
        return {
            "replica": self.replica,
            "phase": self.phase,
            "role": self.role,
            "heartbeats": self.heartbeats,
            "pending": self.pending,
            **{k: round(getattr(got, k), 3) for k in ("p50", "p95", "p99", "max")},
            "histogram": encode(self.histogram),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LagPhase:
        """The inverse of :meth:`as_json`."""
        return cls(
            replica=str(data["replica"]),
            phase=str(data["phase"]),
            role=str(data["role"]),
            heartbeats=int(data["heartbeats"]),
            pending=int(data["pending"]),
            histogram=decode(str(data["histogram"])),
        )


@dataclass(frozen=True, kw_only=True)
class LagSecond:
    """One replica's lag over one second of the load (ms)."""

    t: int  # seconds from the load's start
    replica: str
    heartbeats: int
    p99: float
    max: float


def lag_by_phase(
    replica: str,
    written_us: npt.NDArray[np.int64],
    lag_us: npt.NDArray[np.int64],
    applied: npt.NDArray[np.bool_],
    phases: Sequence[tuple[str, str, float, float]],
    start_us: int,
) -> list[LagPhase]:
    """Per phase ``(name, role, start s, duration s)`` of a load that began at ``start_us``."""
    out = []
    at = (written_us - start_us) / 1e6
    for name, role, start, duration in phases:
        inside = (at >= start) & (at < start + duration)
        histogram = new_histogram()
        record_many(histogram, lag_us[inside])
        out.append(
            LagPhase(
                replica=replica,
                phase=name,
                role=role,
                heartbeats=int(np.count_nonzero(inside)),
                pending=int(np.count_nonzero(inside & ~applied)),
                histogram=histogram,
            )
        )
    return out


def lag_by_second(
    replica: str, written_us: npt.NDArray[np.int64], lag_us: npt.NDArray[np.int64], start_us: int
) -> list[LagSecond]:
    """Per second of the load (from ``start_us``), the lag's p99 and max."""
    seconds = np.floor((written_us - start_us) / 1e6).astype(np.int64)
    out = []
    for t in np.unique(seconds[seconds >= 0]):
        lags = lag_us[seconds == t]
        histogram = new_histogram()
        record_many(histogram, lags)
        got = percentiles(histogram)
        out.append(
            LagSecond(
                t=int(t), replica=replica, heartbeats=int(lags.size), p99=got.p99, max=got.max
            )
        )
    return out


@dataclass(frozen=True, kw_only=True)
class LagBlocks:
    """One replica's heartbeats of one phase as blocks of a second, as a load's
    requests are (:mod:`perfsuite.stats.blocks`): a block's requests are the
    heartbeats written in it, its errors those not applied by the end, its bins
    their lag (us). The gate compares them as it compares latency."""

    replica: str
    phase: str
    role: str
    blocks: tuple[Block, ...]


def lag_blocks(
    replica: str,
    written_us: npt.NDArray[np.int64],
    lag_us: npt.NDArray[np.int64],
    applied: npt.NDArray[np.bool_],
    phases: Sequence[tuple[str, str, float, float]],
    start_us: int,
) -> list[LagBlocks]:
    """Per phase ``(name, role, start s, duration s)``, a block per second of the load."""
    out = []
    at = (written_us - start_us) / 1e6
    for name, role, start, duration in phases:
        inside = (at >= start) & (at < start + duration)
        seconds = np.floor(at[inside]).astype(np.int64)
        lags, pending = lag_us[inside], ~applied[inside]
        blocks = []
        for t in np.unique(seconds):
            here = seconds == t
            index, counts = np.unique(hdr_indices(lags[here]), return_counts=True)
            # The part of second t inside the phase (a phase need not start on a second).
            span = min(t + 1.0, start + duration) - max(float(t), start)
            blocks.append(
                Block(
                    t=int(t),
                    seconds=float(span),
                    requests=int(np.count_nonzero(here)),
                    errors=int(np.count_nonzero(pending[here])),
                    index=index.astype(np.int64),
                    counts=counts.astype(np.int64),
                )
            )
        out.append(LagBlocks(replica=replica, phase=name, role=role, blocks=tuple(blocks)))
    return out


def replica_key(name: str) -> str:
    """What names a replica from run to run: ``replica 1`` of ``replica 1 (127.0.0.1:PORT)``
    (a throwaway replica's port is new each run)."""
    return name.split(" (")[0]


def lag_blockset(blocks: Sequence[Block]) -> BlockSet | None:
    """Blocks of heartbeats grouped as a load's are for the gate (None: none)."""
    return BlockSet.from_blocks(blocks, max_blocks=_MAX_BLOCKS) if blocks else None


@dataclass(frozen=True, kw_only=True)
class ReplicaLag:
    """The replicas' lag over one load: per replica and phase, per second, and
    what stopped a replica (its own error text) or a heartbeat."""

    phases: tuple[LagPhase, ...]
    seconds: tuple[LagSecond, ...]
    errors: tuple[str, ...] = ()
    blocks: tuple[LagBlocks, ...] = ()

    def replicas(self) -> list[str]:
        """The replicas watched, in order."""
        return list(dict.fromkeys(row.replica for row in self.phases))

    def measured_blocks(self, replica: str) -> list[Block]:
        """A replica's heartbeats of the measured phases, a block per second."""
        chosen = [b for row in self.blocks if row.replica == replica and row.role == "measure"
                  for b in row.blocks]  # fmt: skip
        return merge_blocks(chosen, same_span=False)

    def blockset(self, replica: str) -> BlockSet | None:
        """A replica's lag over the measured phases as the gate's blocks (None: no
        heartbeat there)."""
        return lag_blockset(self.measured_blocks(replica))

    def measured(self, phase: str | None = None) -> list[LagPhase]:
        """Each replica's lag over the measured phases (or over ``phase``), merged."""
        by_replica: dict[str, list[LagPhase]] = {}
        for row in self.phases:
            if (row.phase == phase) if phase is not None else row.role == "measure":
                by_replica.setdefault(row.replica, []).append(row)
        out = []
        for replica, rows in by_replica.items():
            histogram = new_histogram()
            for row in rows:
                histogram.add(row.histogram)
            out.append(
                LagPhase(
                    replica=replica,
                    phase=phase or "measured",
                    role="measure",
                    heartbeats=sum(r.heartbeats for r in rows),
                    pending=sum(r.pending for r in rows),
                    histogram=histogram,
                )
            )
        return out

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (run records)."""
        return {
            "phases": [p.as_json() for p in self.phases],
            "seconds": [
                {
                    "t": s.t,
                    "replica": s.replica,
                    "heartbeats": s.heartbeats,
                    "p99": round(s.p99, 3),
                    "max": round(s.max, 3),
                }
                for s in self.seconds
            ],
            "errors": list(self.errors),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplicaLag:
        """The inverse of :meth:`as_json`."""
        return cls(
            phases=tuple(LagPhase.from_json(p) for p in data["phases"]),
            seconds=tuple(LagSecond(**s) for s in data["seconds"]),
            errors=tuple(data.get("errors", ())),
        )
