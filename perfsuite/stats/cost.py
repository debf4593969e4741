"""What requests cost the database: statement digests and server counters, per request.

Pure arithmetic on two readings of MySQL/MariaDB's cumulative counters
(``performance_schema.events_statements_summary_by_digest`` and ``SHOW
GLOBAL STATUS``), taken before and after a load: the differences, then the
differences divided by the requests the service answered in between. The
probe that reads them lives in :mod:`perfsuite.probes.statements`.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "STATUS_COUNTERS",
    "DigestCounters",
    "PhaseCost",
    "RequestCost",
    "StatementCost",
    "ended_by",
    "ended_on_curve",
    "merge_ended",
    "phase_cost",
    "request_cost",
    "split_requests",
    "statement_delta",
    "status_delta",
]

# The server counters read next to the digests (cumulative since start-up).
STATUS_COUNTERS = (
    "Questions",
    "Slow_queries",
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "Created_tmp_disk_tables",
    "Select_scan",
    "Aborted_connects",
    "Connection_errors_max_connections",
)


@dataclass(frozen=True, kw_only=True)
class DigestCounters:
    """One digest's cumulative counters (times in picoseconds, as the server keeps them)."""

    digest: str
    text: str
    calls: int = 0
    total_ps: int = 0
    max_ps: int = 0
    rows_examined: int = 0
    rows_sent: int = 0
    no_index_used: int = 0
    no_good_index_used: int = 0
    tmp_disk_tables: int = 0
    sort_merge_passes: int = 0
    errors: int = 0


@dataclass(frozen=True, kw_only=True)
class StatementCost:
    """One digest over a window: what its calls did in it.

    ``max_ms`` is the slowest call of the window when the server's running
    maximum rose in it (or was reset before it), else ``None``: the counter is
    a maximum since reset, so a window whose calls stayed below an earlier
    peak cannot tell its own.
    """

    digest: str
    text: str
    calls: int
    total_ms: float
    max_ms: float | None
    rows_examined: int
    rows_sent: int
    no_index_used: int
    no_good_index_used: int
    tmp_disk_tables: int
    sort_merge_passes: int
    errors: int

    @property
    def rows_examined_per_call(self) -> float:
        """Rows read to answer one call: the scan detector."""
        return self.rows_examined / self.calls if self.calls else 0.0


_PS_PER_MS = 1e9


def statement_delta(
    before: Mapping[str, DigestCounters], after: Mapping[str, DigestCounters]
) -> list[StatementCost]:
    """What each digest did between two readings, the most time first.

    A digest absent before started at zero (new, or the table was reset);
    a counter that went down means the table was reset in between, so the
    later reading is taken whole.
    """
    out: list[StatementCost] = []
    for key, now in after.items():
        then = before.get(key)
        if then is None or now.calls < then.calls:
            then = DigestCounters(digest=now.digest, text=now.text)  # all zero
        calls = now.calls - then.calls
        if calls <= 0:
            continue
        rose = now.max_ps > then.max_ps or not then.calls
        out.append(
            StatementCost(
                digest=now.digest,
                text=now.text,
                calls=calls,
                total_ms=(now.total_ps - then.total_ps) / _PS_PER_MS,
                max_ms=now.max_ps / _PS_PER_MS if rose else None,
                rows_examined=now.rows_examined - then.rows_examined,
                rows_sent=now.rows_sent - then.rows_sent,
                no_index_used=now.no_index_used - then.no_index_used,
                no_good_index_used=now.no_good_index_used - then.no_good_index_used,
                tmp_disk_tables=now.tmp_disk_tables - then.tmp_disk_tables,
                sort_merge_passes=now.sort_merge_passes - then.sort_merge_passes,
                errors=now.errors - then.errors,
            )
        )
    out.sort(key=lambda s: (-s.total_ms, s.digest))
    return out


def status_delta(
    before: Mapping[str, int], after: Mapping[str, int], *, own_statements: int = 0
) -> dict[str, int]:
    """Server counters' growth between two readings; ``Questions`` less the probe's own."""
    delta = {name: after[name] - before[name] for name in after if name in before}
    if "Questions" in delta:
        delta["Questions"] = max(0, delta["Questions"] - own_statements)
    return delta


@dataclass(frozen=True, kw_only=True)
class PhaseCost:
    """One phase of a load: its statements' totals and the requests answered in it."""

    phase: str
    role: str  # "measure", "warmup" or "cooldown"
    requests: int
    queries: int
    rows_examined: int
    db_ms: float
    no_index_used: int

    def metrics(self) -> dict[str, float]:
        """Per answered request, as :meth:`RequestCost.metrics` names them (no CPU)."""
        n = self.requests
        per = (lambda x: x / n) if n else (lambda x: float("nan"))
        return {
            "queries_per_request": per(self.queries),
            "rows_examined_per_request": per(self.rows_examined),
            "db_ms_per_request": per(self.db_ms),
            "no_index_used": float(self.no_index_used),
        }


def ended_by(per_second: Mapping[int, int], at: float) -> float:
    """Requests ended by ``at`` seconds into the load, from the count that ended in
    each second (second ``t`` covers ``[t, t + 1)``), straight within a second."""
    if at <= 0:
        return 0.0
    whole = int(at)
    done = sum(n for t, n in per_second.items() if t < whole)
    return done + per_second.get(whole, 0) * (at - whole)


def ended_on_curve(curve: Sequence[tuple[float, int]], at: float) -> float:
    """Requests ended by ``at`` seconds into the load, from the cumulative counts
    ``curve`` (seconds, ended by then; ascending), straight between two of them
    (and from none at the start: a starved generator's first count can be late)."""
    if at <= 0 or not curve:
        return 0.0
    times = [t for t, _ in curve]
    i = bisect.bisect_right(times, at)
    if i == len(curve):
        return float(curve[-1][1])
    (t0, n0), (t1, n1) = (0.0, 0) if i == 0 else curve[i - 1], curve[i]
    return n0 + (n1 - n0) * (at - t0) / (t1 - t0) if t1 > t0 else float(n1)


def merge_ended(curves: Sequence[Sequence[tuple[float, int]]]) -> tuple[tuple[float, int], ...]:
    """Several processes' ended-request curves (one clock, one start) as one: at
    every time any of them has, the sum of each one's count by then."""
    times = sorted({t for curve in curves for t, _ in curve})
    return tuple(
        (t, round(sum(ended_on_curve(curve, t) for curve in curves if curve))) for t in times
    )


def split_requests(
    per_second: Mapping[int, int],
    cuts: Sequence[float],
    total: int,
    curve: Sequence[tuple[float, int]] = (),
) -> list[int]:
    """``total`` requests split at each of ``cuts`` (seconds into the load) in
    proportion to the requests that had ended by then: one more than there are cuts.

    ``curve``, when the engine kept one (ended requests every 50 ms), places each
    cut; else the seconds do, straight within a second.
    """
    if curve:
        ended = float(curve[-1][1])
        by = [ended_on_curve(curve, at) for at in cuts]
    else:
        ended = float(sum(per_second.values()))
        by = [ended_by(per_second, at) for at in cuts]
    if not ended:
        return [total] + [0] * len(cuts)
    marks = [0, *(round(total * n / ended) for n in by), total]
    return [max(0, b - a) for a, b in itertools.pairwise(marks)]


def phase_cost(phase: str, role: str, cost: RequestCost) -> PhaseCost:
    """A phase's totals, from the cost of its window."""
    return PhaseCost(
        phase=phase,
        role=role,
        requests=cost.requests,
        queries=cost.queries,
        rows_examined=sum(s.rows_examined for s in cost.statements),
        db_ms=sum(s.total_ms for s in cost.statements),
        no_index_used=cost.no_index_used,
    )


@dataclass(frozen=True, kw_only=True)
class RequestCost:
    """The database's and the service's work over a window, and per answered request."""

    requests: int  # responses the service gave in the window (any status)
    endpoints: tuple[str, ...] = ()  # the load's endpoints (its cost is theirs together)
    statements: tuple[StatementCost, ...] = ()
    status: Mapping[str, int] = field(default_factory=dict)
    cpu_seconds: float | None = None  # the service's process tree (or container)
    phases: tuple[PhaseCost, ...] = ()  # each phase's, when its boundaries were read

    @property
    def queries(self) -> int:
        """Statements the service's database ran (digests of its schema)."""
        return sum(s.calls for s in self.statements)

    def _per(self, total: float) -> float:
        return total / self.requests if self.requests else float("nan")

    @property
    def queries_per_request(self) -> float:
        """Statements per answered request."""
        return self._per(self.queries)

    @property
    def no_index_used(self) -> int:
        """Calls that read a table without an index (full scans)."""
        return sum(s.no_index_used for s in self.statements)

    @property
    def cpu_ms_per_request(self) -> float | None:
        """The service's CPU time per answered request, in ms (None when not measured)."""
        if self.cpu_seconds is None:
            return None
        return self._per(self.cpu_seconds * 1000.0)

    def measured(self) -> PhaseCost:
        """The measured phases together when each phase was read (warm-up apart),
        else the whole load."""
        phases = [p for p in self.phases if p.role == "measure"]
        if not phases or not sum(p.requests for p in phases):
            phases = [phase_cost("load", "measure", self)]
        return PhaseCost(
            phase="measured",
            role="measure",
            requests=sum(p.requests for p in phases),
            queries=sum(p.queries for p in phases),
            rows_examined=sum(p.rows_examined for p in phases),
            db_ms=sum(p.db_ms for p in phases),
            no_index_used=sum(p.no_index_used for p in phases),
        )

    def metrics(self) -> dict[str, float]:
        """The per-request numbers by name, as SLOs and the gate know them: over the
        measured phases when each phase was read (warm-up apart), else the whole load;
        CPU over the whole load."""
        out = self.measured().metrics()
        cpu = self.cpu_ms_per_request
        if cpu is not None:
            out["cpu_ms_per_request"] = cpu
        return out

    def gated(self) -> dict[str, float]:
        """The metrics the gate compares (no-index calls per request, not their count)."""
        measured = self.measured()
        out = {k: v for k, v in self.metrics().items() if k != "no_index_used"}
        out["no_index_per_request"] = (
            measured.no_index_used / measured.requests if measured.requests else float("nan")
        )
        return out


def request_cost(
    requests: int,
    before: Mapping[str, DigestCounters],
    after: Mapping[str, DigestCounters],
    status_before: Mapping[str, int] | None = None,
    status_after: Mapping[str, int] | None = None,
    *,
    own_statements: int = 0,
    cpu_seconds: float | None = None,
    endpoints: tuple[str, ...] = (),
) -> RequestCost:
    """The cost of ``requests`` answered requests between two readings."""
    status = (
        status_delta(status_before, status_after, own_statements=own_statements)
        if status_before is not None and status_after is not None
        else {}
    )
    return RequestCost(
        requests=requests,
        statements=tuple(statement_delta(before, after)),
        status=status,
        cpu_seconds=cpu_seconds,
        endpoints=endpoints,
    )
