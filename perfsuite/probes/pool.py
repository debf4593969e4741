"""Did the connection pool go back to idle? The seed story's leak, caught.

The service side, when configured, reads the pool's own gauges: in use must
return to 0. That is the only sure verdict.

The database side works for a service in any language, and knows less: the
service's connections in ``information_schema.PROCESSLIST`` (with any open
InnoDB transaction) and ``Threads_connected``. It sees a connection still
running a query or holding a transaction, and more connections than before
the load and than the pool keeps idle. It cannot see the seed's leak by
looking: a connection borrowed, rolled back and never returned sleeps with
no transaction, exactly like an idle one in the pool. So after the load a
few requests go through the service (its health path) and the probe counts
the statements each connection runs (performance_schema): a connection
that runs one was handed out by the pool, so it was back in it. When every
connection did, the pool is idle; when some did not, they are leaked or
merely not handed out (a pool that hands out its most recent connection,
such as HikariCP's, leaves the others alone), and the database side says
that it cannot judge, unless the pool is declared to hand out every idle
connection in turn (``hands_out = "in-turn"``). Both sides are watched during
the load (once a second) and polled after it until idle or a timeout.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from perfsuite.probes.dbprobe import DbConnection, DbProbe, DbSnapshot
from perfsuite.probes.metrics import PoolGauges

__all__ = ["DbConnection", "DbProbe", "DbSnapshot", "PoolVerdict", "PoolWatch"]


@dataclass(kw_only=True)
class PoolVerdict:
    """What the watch saw, and whether the pool went back to idle.

    ``ok`` is False when a leak was seen (the test fails); ``judged`` is False
    when nothing showed a leak but nothing showed the pool idle either (the
    database side alone, see the module's docstring): the report says so.
    """

    ok: bool
    reasons: list[str]
    before: DbSnapshot
    after: DbSnapshot
    peak_threads: int
    peak_running: int = 0
    waited: float = 0.0
    judged: bool = True
    evidence: str = ""  # what the verdict rests on, in a sentence
    # Once a second during the load, then the last reading: (at, Threads_connected, gauges).
    samples: list[tuple[float, int, PoolGauges | None]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``idle``, ``leak`` or ``unknown`` (the database side could not judge)."""
        return "leak" if not self.ok else ("idle" if self.judged else "unknown")

    @property
    def gauges(self) -> list[tuple[float, PoolGauges]]:
        """The pool gauges over the test (when the service reports them)."""
        return [(t, g) for t, _, g in self.samples if g is not None]

    def series(self) -> dict[str, list[float | None]]:
        """Once-a-second readings, for run records: seconds since the load began."""

        def gauge(g: PoolGauges | None, role: str) -> float | None:
            value = getattr(g, role) if g is not None else math.nan
            return None if math.isnan(value) else float(value)

        return {
            "seconds": [round(t - self.before.at, 3) for t, _, _ in self.samples],
            "threads_connected": [float(n) for _, n, _ in self.samples],
            **{
                role: [gauge(g, role) for _, _, g in self.samples] for role in ("in_use", "waiting")
            },
        }

    def report(self) -> str:
        """The leak report: what is stuck, the threads, the pool gauges over the test."""
        headline = {
            "idle": "pool back to idle",
            "leak": "POOL DID NOT RETURN TO IDLE",
            "unknown": "pool: cannot judge from the database side",
        }[self.status]
        lines = [headline]
        lines += [f"  {r}" for r in self.reasons]
        if self.evidence:
            lines.append(f"  {self.evidence}")
        lines.append(
            f"Threads_connected before {self.before.threads_connected}, peak "
            f"{self.peak_threads}, after {self.after.threads_connected}; Threads_running peak "
            f"{self.peak_running}; the service's connections before "
            f"{len(self.before.connections)}, after {len(self.after.connections)} "
            f"(waited {self.waited:.1f} s)"
        )
        conns = self.after.connections
        if conns and self.status != "idle":
            lines.append(f"connections of {conns[0].user!r} after the load:")
            lines.append(
                f"  {'id':>6} {'user':<12} {'host':<22} {'command':<8} {'time':>5} "
                f"{'trx':<3} state / info"
            )
            for c in conns:
                info = " / ".join(x for x in (c.state, (c.info or "")[:60]) if x)
                lines.append(
                    f"  {c.id:>6} {c.user:<12} {c.host:<22} {c.command:<8} {c.time:>5} "
                    f"{'yes' if c.in_transaction else 'no':<3} {info}"
                )
        if self.gauges:
            lines.append("pool gauges (in use / idle / waiting / max) over the test:")
            t0 = self.gauges[0][0]
            for t, g in self.gauges:
                values = " / ".join(_n(v) for v in (g.in_use, g.idle, g.waiting, g.max))
                lines.append(f"  {t - t0:6.1f} s  {values}")
        return "\n".join(lines)


def _n(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:g}"


# After the load, requests through the service: at least this many, and twice the
# connections, so that a pool handing out every idle connection in turn uses each.
_AFTER_MIN = 10
_AFTER_MAX = 400
_CANNOT_TELL = (
    "the database side alone cannot tell a connection back in the pool from one leaked "
    "idle (both sleep with no transaction)"
)
_GAUGES = "report the pool's gauges ([tool.perfsuite.pool] metrics) for a verdict"


class PoolWatch:
    """Before, during (a sampling thread) and after one load.

    ``after_requests(n)`` sends ``n`` requests through the service once the
    load is over and returns how many were answered (None: none are sent).
    ``waiting_is_total``: the gauge of waiting requests counts waits since
    the service started (Go's database/sql), so only its growth counts.
    """

    def __init__(
        self,
        probe: DbProbe,
        gauges: Callable[[], PoolGauges] | None,
        *,
        max_idle: int,
        timeout: float,
        interval: float = 1.0,
        after_requests: Callable[[int], int] | None = None,
        in_turn: bool = False,
        waiting_is_total: bool = False,
    ) -> None:
        self.probe = probe
        self.gauges = gauges
        self.max_idle = max_idle
        self.timeout = timeout
        self.interval = interval
        self.after_requests = after_requests
        self.in_turn = in_turn
        self.waiting_is_total = waiting_is_total
        self.samples: list[tuple[float, int, PoolGauges | None]] = []
        self.peak_running = 0
        self.seen = 0  # the most connections of the service's user at one reading
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.before: DbSnapshot | None = None
        self._gauges_before: PoolGauges | None = None
        self._statements_before: dict[int, int] | None = None
        self.error: BaseException | None = None

    def _sample(self) -> None:
        snap = self.probe.snapshot()
        self.peak_running = max(self.peak_running, snap.threads_running)
        self.seen = max(self.seen, len(snap.connections))
        self.samples.append((snap.at, snap.threads_connected, self._read()))

    def _read(self) -> PoolGauges | None:
        return self.gauges() if self.gauges is not None else None

    def start(self) -> None:
        """Snapshot before the load, then sample once a second until ``stop``."""
        self.before = self.probe.snapshot()
        self.seen = len(self.before.connections)
        if self.gauges is None and self.after_requests is not None:
            self._statements_before = self.probe.statements()
        # A missing metrics endpoint fails now, before the load.
        self._gauges_before = self._read()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self._sample()
                except Exception as exc:  # kept and re-raised by stop(), never lost
                    self.error = exc
                    return

        self._thread = threading.Thread(target=loop, name="perfsuite-pool-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (the load is over)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.error is not None:
            raise self.error

    def wait_idle(self) -> PoolVerdict:
        """Poll until the pool is idle (or the timeout), then judge."""
        assert self.before is not None
        start = time.monotonic()
        while True:
            snap = self.probe.snapshot()
            self.seen = max(self.seen, len(snap.connections))
            gauges = self._read()
            reasons = self._reasons(snap, gauges)
            waited = time.monotonic() - start
            if not reasons or waited >= self.timeout:
                break
            time.sleep(0.2)
        # The series keeps the once-a-second samples of the load and the last reading.
        self.samples.append((snap.at, snap.threads_connected, gauges))
        peak = max([self.before.threads_connected, *(n for _, n, _ in self.samples)])
        if reasons and self._waited():
            reasons.append("requests waited for a connection during the load (pool exhaustion)")
        judged, evidence = True, ""
        if self.seen == 0:
            reasons.append(
                f"no connection of user {self.probe.user!r} was seen before, during or after "
                "the load: a wrong user ([tool.perfsuite.pool] user), or a probe that "
                "cannot see other accounts' connections (it needs PROCESS)"
            )
        elif not reasons and gauges is not None:
            evidence = f"the pool reports {gauges.in_use:g} connections in use"
            if gauges.in_use > 0:
                evidence += ", as many as before the load (an earlier test's)"
        elif not reasons:
            judged, evidence, leaked = self._handed_out(snap)
            if leaked:
                reasons.append(evidence)
                evidence = ""
        return PoolVerdict(
            ok=not reasons,
            reasons=reasons,
            before=self.before,
            after=snap,
            peak_threads=peak,
            peak_running=self.peak_running,
            waited=waited,
            judged=judged,
            evidence=evidence,
            samples=list(self.samples),
        )

    def _waited(self) -> bool:
        readings = [g.waiting for _, _, g in self.samples if g is not None]
        if not self.waiting_is_total:
            return any(w > 0 for w in readings)
        first = self._gauges_before.waiting if self._gauges_before is not None else math.nan
        base = first if not math.isnan(first) else (readings[0] if readings else 0.0)
        return any(w > base for w in readings)

    def _handed_out(self, snap: DbSnapshot) -> tuple[bool, str, bool]:
        """(judged, evidence, leaked): did each open connection run a statement for
        requests sent after the load, i.e. was each one handed out by the pool?"""
        ids = {c.id for c in snap.connections}
        unsure = f"{_CANNOT_TELL}; {_GAUGES}"
        if not ids:
            return True, "no connection of the service is open after the load", False
        if self.after_requests is None:
            return False, unsure, False
        counts = self.probe.statements()
        if counts is None:
            return False, unsure + " (performance_schema is off: statements not counted)", False
        wanted = min(_AFTER_MAX, max(_AFTER_MIN, 2 * len(ids)))
        sent = self.after_requests(wanted)
        again = self.probe.statements() or {}
        quiet = sorted(i for i in ids if i in again and again[i] == counts.get(i, 0))
        # Quiet all through this test as well (no statement since before the load): an
        # earlier test's leak, or an idle connection the pool keeps; not this test's.
        start = self._statements_before
        earlier = [i for i in quiet if start is not None and counts.get(i) == start.get(i)]
        if sent < wanted:
            return False, f"{unsure} (the service answered {sent} of {wanted} requests)", False
        # Statements on any connection of the service, a new one included: the
        # requests use the database (a pool with none free opens another).
        if not any(n != counts.get(i, 0) for i, n in again.items()):
            return (
                False,
                f"{unsure} (the {sent} requests sent after the load ran no statement: "
                "set [tool.perfsuite.pool] after_path to a path that uses the database)",
                False,
            )
        if len(quiet) == len(earlier):
            note = (
                f" ({len(earlier)} others ran nothing since before the load: an earlier "
                "test's leak, or idle connections the pool keeps)"
                if earlier
                else ""
            )
            used = len(ids) - len(earlier)
            return (
                True,
                f"each of the {used} connections this load used ran a statement for the "
                f"{sent} requests sent after it: each was handed out by the pool, so each "
                f"was back in it{note}",
                False,
            )
        quiet = [i for i in quiet if i not in earlier]
        what = (
            f"{len(quiet)} of {len(ids)} connections ran no statement while {sent} requests "
            f"went through the service after the load (ids {', '.join(map(str, quiet[:10]))})"
        )
        if self.in_turn:
            leaked = what + (
                ": the pool hands every idle connection out in turn, so these were never "
                "returned (leaked)"
            )
            return True, leaked, True
        return (
            False,
            what + ": leaked, or idle and not handed out (a pool that hands out its most "
            "recent connection leaves the others); " + _GAUGES,
            False,
        )

    def _reasons(self, snap: DbSnapshot, gauges: PoolGauges | None) -> list[str]:
        assert self.before is not None
        reasons = []
        # A connection already held before this load is an earlier test's (it said so).
        held_before = {c.id for c in self.before.connections if c.busy}
        busy = [c for c in snap.connections if c.busy and c.id not in held_before]
        if busy:
            reasons.append(
                f"{len(busy)} connection(s) still running a query or holding a transaction"
            )
        allowed = max(self.max_idle, len(self.before.connections))
        if len(snap.connections) > allowed:
            reasons.append(
                f"{len(snap.connections)} connections open, more than before the load "
                f"({len(self.before.connections)}) and than the pool's idle size {self.max_idle}"
            )
        # In use before the load: an earlier test's leak (it said so), not this one's.
        before = self._gauges_before.in_use if self._gauges_before is not None else math.nan
        if gauges is not None and gauges.in_use > (0.0 if math.isnan(before) else before):
            reasons.append(
                f"the pool reports {gauges.in_use:g} connection(s) still in use "
                f"(never released: a leak)"
            )
        return reasons

    def close(self) -> None:
        """Release the probe's connection."""
        self.probe.close()
