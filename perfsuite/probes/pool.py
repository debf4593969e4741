"""Did the connection pool go back to idle? The seed story's leak, caught.

The database side works for a service in any language: the service's
connections in ``information_schema.PROCESSLIST`` (with any open InnoDB
transaction) and ``Threads_connected``. The service side, when configured,
reads its own pool gauges: in use must return to 0. Both are watched during
the load (once a second) and polled after it until idle or a timeout.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from perfsuite.errors import ConfigError
from perfsuite.probes.metrics import PoolGauges
from perfsuite.provision.server import MySQLServer

__all__ = ["DbConnection", "DbProbe", "DbSnapshot", "PoolVerdict", "PoolWatch"]


@dataclass(frozen=True, kw_only=True)
class DbConnection:
    """One row of the processlist (of the service's user)."""

    id: int
    user: str
    host: str
    db: str | None
    command: str
    time: int
    state: str | None
    info: str | None
    in_transaction: bool

    @property
    def busy(self) -> bool:
        """Running a query, or idle inside an open transaction."""
        return self.command != "Sleep" or self.in_transaction


@dataclass(frozen=True, kw_only=True)
class DbSnapshot:
    """The server's threads and the service's connections at one moment."""

    at: float
    threads_connected: int
    threads_running: int
    connections: tuple[DbConnection, ...]


_PROCESSLIST = """
SELECT p.ID, p.USER, p.HOST, p.DB, p.COMMAND, p.TIME, p.STATE, p.INFO,
       t.trx_id IS NOT NULL
FROM information_schema.PROCESSLIST p
LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
WHERE p.USER = %s AND p.ID <> CONNECTION_ID()
ORDER BY p.TIME DESC, p.ID
"""


class DbProbe:
    """A connection of its own to watch the service's connections."""

    def __init__(self, server: MySQLServer, user: str) -> None:
        self.user = user
        self._lock = threading.Lock()
        self._conn = server.connect(admin=True, database="")
        if server.admin_user != user and not self._can_see_others():
            self._conn.close()
            raise ConfigError(
                f"the probe user {server.admin_user!r} has no PROCESS privilege, so it cannot "
                f"see the connections of {user!r}; GRANT PROCESS ON *.* TO it, or set "
                f"[tool.perfsuite.pool] check = false"
            )

    def _can_see_others(self) -> bool:
        with self._conn.cursor() as cur:
            cur.execute("SHOW GRANTS FOR CURRENT_USER()")
            grants = " ".join(str(row[0]).upper() for row in cur.fetchall())
        return "PROCESS" in grants or "ALL PRIVILEGES ON *.*" in grants

    def snapshot(self) -> DbSnapshot:
        """Read the processlist and the thread counters."""
        with self._lock, self._conn.cursor() as cur:
            try:
                cur.execute(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN "
                    "('Threads_connected', 'Threads_running')"
                )
                status = {str(k): int(v) for k, v in cur.fetchall()}
                cur.execute(_PROCESSLIST, (self.user,))
                rows = cur.fetchall()
            except pymysql.MySQLError as exc:
                raise ConfigError(f"the pool probe cannot read the processlist: {exc}") from exc
        return DbSnapshot(
            at=time.monotonic(),
            threads_connected=status.get("Threads_connected", 0),
            threads_running=status.get("Threads_running", 0),
            connections=tuple(
                DbConnection(
                    id=int(r[0]),
                    user=str(r[1]),
                    host=str(r[2]),
                    db=r[3],
                    command=str(r[4]),
                    time=int(r[5] or 0),
                    state=r[6] or None,
                    info=r[7],
                    in_transaction=bool(r[8]),
                )
                for r in rows
            ),
        )

    def close(self) -> None:
        """Close the probe's connection."""
        self._conn.close()


@dataclass(kw_only=True)
class PoolVerdict:
    """What the watch saw, and whether the pool went back to idle."""

    ok: bool
    reasons: list[str]
    before: DbSnapshot
    after: DbSnapshot
    peak_threads: int
    peak_running: int = 0
    waited: float = 0.0
    # Once a second during the load, then the last reading: (at, Threads_connected, gauges).
    samples: list[tuple[float, int, PoolGauges | None]] = field(default_factory=list)

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
        lines = [("pool back to idle" if self.ok else "POOL DID NOT RETURN TO IDLE")]
        lines += [f"  {r}" for r in self.reasons]
        lines.append(
            f"Threads_connected before {self.before.threads_connected}, peak "
            f"{self.peak_threads}, after {self.after.threads_connected}; Threads_running peak "
            f"{self.peak_running} (waited {self.waited:.1f} s)"
        )
        conns = self.after.connections
        if conns and not self.ok:
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


class PoolWatch:
    """Before, during (a sampling thread) and after one load."""

    def __init__(
        self,
        probe: DbProbe,
        gauges: Callable[[], PoolGauges] | None,
        *,
        max_idle: int,
        timeout: float,
        interval: float = 1.0,
    ) -> None:
        self.probe = probe
        self.gauges = gauges
        self.max_idle = max_idle
        self.timeout = timeout
        self.interval = interval
        self.samples: list[tuple[float, int, PoolGauges | None]] = []
        self.peak_running = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.before: DbSnapshot | None = None
        self.error: BaseException | None = None

    def _sample(self) -> None:
        snap = self.probe.snapshot()
        self.peak_running = max(self.peak_running, snap.threads_running)
        self.samples.append((snap.at, snap.threads_connected, self._read()))

    def _read(self) -> PoolGauges | None:
        return self.gauges() if self.gauges is not None else None

    def start(self) -> None:
        """Snapshot before the load, then sample once a second until ``stop``."""
        self.before = self.probe.snapshot()
        self._read()  # a missing metrics endpoint fails now, before the load

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
            gauges = self._read()
            reasons = self._reasons(snap, gauges)
            waited = time.monotonic() - start
            if not reasons or waited >= self.timeout:
                break
            time.sleep(0.2)
        # The series keeps the once-a-second samples of the load and the last reading.
        self.samples.append((snap.at, snap.threads_connected, gauges))
        peak = max([self.before.threads_connected, *(n for _, n, _ in self.samples)])
        if reasons and any(g is not None and g.waiting > 0 for _, _, g in self.samples):
            reasons.append("requests waited for a connection during the load (pool exhaustion)")
        return PoolVerdict(
            ok=not reasons,
            reasons=reasons,
            before=self.before,
            after=snap,
            peak_threads=peak,
            peak_running=self.peak_running,
            waited=waited,
            samples=list(self.samples),
        )

    def _reasons(self, snap: DbSnapshot, gauges: PoolGauges | None) -> list[str]:
        reasons = []
        busy = [c for c in snap.connections if c.busy]
        if busy:
            reasons.append(
                f"{len(busy)} connection(s) still running a query or holding a transaction"
            )
        if len(snap.connections) > self.max_idle:
            reasons.append(
                f"{len(snap.connections)} connections open, more than the pool's idle size "
                f"{self.max_idle}"
            )
        if gauges is not None and gauges.in_use > 0:
            reasons.append(
                f"the pool reports {gauges.in_use:g} connection(s) still in use "
                f"(never released: a leak)"
            )
        return reasons

    def close(self) -> None:
        """Release the probe's connection."""
        self.probe.close()
