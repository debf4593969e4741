"""Replication lag during a load: heartbeats written on the primary, applied on each replica.

pt-heartbeat writes a timestamp on the primary and reads it on the replica:
the lag is the read time less the newest timestamp there, which is late by up
to one interval whenever the replica keeps up. Here each heartbeat row says
when *it* was applied: the primary logs its insert as a statement (session
``binlog_format = STATEMENT``) whose ``SYSDATE(6)`` each replica evaluates
again when its SQL thread applies it. A heartbeat's lag is then its apply
time less its write time, to the microsecond, for every heartbeat; one not
applied by the end of the load counts with the time it had waited so far (a
lower bound, said as such). Replicas on other hosts are read against their
own clock's offset, measured by round trips as the load agents' are.

A load begins once each replica has applied what the primary logged before it
(an earlier load's writes, an A/B round's): that backlog is not its lag.

What a lag counts: from just before the primary is sent the heartbeat (the
client's clock) to when the replica applied it. The primary's own commit
(well under a millisecond on loopback) is part of it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pymysql

from perfsuite.errors import MySQLError, PerfsuiteWarning
from perfsuite.load.agents.clock import ClockOffset, estimate_offset
from perfsuite.provision.replication import behind, replica_status
from perfsuite.provision.server import MySQLServer
from perfsuite.stats.lag import (
    LagBlocks,
    LagPhase,
    LagSecond,
    ReplicaLag,
    lag_blocks,
    lag_by_phase,
    lag_by_second,
)

__all__ = ["TABLE", "LagSeries", "ReplicaLagWatch"]

TABLE = "perfsuite_heartbeat"
_APPLIED = "CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED)"
_CLOCK_TRIPS = 16
CATCH_UP = 60.0  # s the replicas get to apply what came before a load (past MASTER_DELAY)


@dataclass(frozen=True, kw_only=True)
class LagSeries:
    """One replica's heartbeats of one load, in the order they were written."""

    replica: str  # "replica 1 (127.0.0.1:40123)"
    written_us: npt.NDArray[np.int64]  # when each was sent to the primary (epoch us)
    lag_us: npt.NDArray[np.int64]  # applied - written; for one not applied, end - written
    applied: npt.NDArray[np.bool_]  # False: not applied by the end (its lag a lower bound)
    clock: ClockOffset | None  # the replica's clock against ours (None: taken as ours)
    error: str = ""  # the replica's own words when one of its threads stopped

    @property
    def pending(self) -> int:
        """Heartbeats the replica had not applied when the load ended."""
        return int(np.count_nonzero(~self.applied))


class ReplicaLagWatch:
    """Heartbeats every ``interval`` seconds on ``primary``, read on each of ``replicas``."""

    def __init__(
        self, primary: MySQLServer, replicas: Sequence[MySQLServer], *, interval: float = 0.1
    ) -> None:
        self.primary = primary
        self.replicas = list(replicas)
        self.interval = interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # the writer adds to _written while the reader reads
        self._written: dict[int, int] = {}  # heartbeat id -> written (us)
        self._applied: list[dict[int, int]] = [{} for _ in replicas]  # id -> applied (us)
        self._clocks: list[ClockOffset | None] = [None for _ in replicas]
        self.errors: list[str] = []  # heartbeats that could not be written or read
        self._conn: pymysql.Connection | None = None  # the writer's, opened by start()

    def start(self) -> None:
        """The table (replicated before anything is written), the clocks, the threads."""
        table = f"`{self.primary.database}`.`{TABLE}`"
        self.primary.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "written_us BIGINT NOT NULL, applied_us BIGINT NOT NULL) ENGINE=InnoDB",
            admin=True,
        )
        self._conn = self._connect_writer()  # before the load: an account that may not, said
        try:
            for index, replica in enumerate(self.replicas):
                self._wait_for_table(index, replica, table)
                self._clocks[index] = _clock(replica)
            self._caught_up()
        except BaseException:
            self._conn.close()
            raise
        self._threads = [
            threading.Thread(target=self._write, name="perfsuite-heartbeat", daemon=True),
            threading.Thread(target=self._read, name="perfsuite-heartbeat-read", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[LagSeries]:
        """Stop writing; read each replica a last time; each replica's series."""
        ended_us = time.time_ns() // 1000
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        with contextlib.suppress(MySQLError, pymysql.MySQLError):
            self._read_once()
        ids = np.array(sorted(self._written), dtype=np.int64)
        written = np.array([self._written[i] for i in ids], dtype=np.int64)
        out = []
        for index, replica in enumerate(self.replicas):
            got = self._applied[index]
            applied = np.array([i in got for i in ids], dtype=bool)
            at = np.array([got.get(i, ended_us) for i in ids], dtype=np.int64)
            clock = self._clocks[index]
            # Only an offset larger than its own uncertainty is corrected for: on one
            # machine the clocks are one, and the estimate would only add noise.
            shift = 0
            if clock is not None and abs(clock.offset_ns) > clock.uncertainty_ns:
                shift = clock.offset_ns // 1000
            at = np.where(applied, at - shift, at)
            out.append(
                LagSeries(
                    replica=_name(index, replica),
                    written_us=written,
                    lag_us=np.maximum(at - written, 0),
                    applied=applied,
                    clock=clock,
                    error=_stopped(replica),
                )
            )
        return out

    def finish(self, phases: Sequence[tuple[str, str, float, float]], start: float) -> ReplicaLag:
        """:meth:`stop`, summarised per phase ``(name, role, start s, duration s)`` and
        per second of a load that began at ``start`` (``time.time()``)."""
        start_us = int(start * 1e6)
        rows: list[LagPhase] = []
        seconds: list[LagSecond] = []
        blocks: list[LagBlocks] = []
        errors = list(dict.fromkeys(self.errors))  # each said once
        for one in self.stop():
            rows += lag_by_phase(
                one.replica, one.written_us, one.lag_us, one.applied, phases, start_us
            )
            seconds += lag_by_second(one.replica, one.written_us, one.lag_us, start_us)
            blocks += lag_blocks(
                one.replica, one.written_us, one.lag_us, one.applied, phases, start_us
            )
            if one.error:
                errors.append(f"{one.replica}: {one.error}")
        return ReplicaLag(
            phases=tuple(rows), seconds=tuple(seconds), errors=tuple(errors), blocks=tuple(blocks)
        )

    def _connect_writer(self) -> pymysql.Connection:
        """The heartbeats' connection, which logs them as statements (so that each
        replica evaluates their SYSDATE); a clear error when the account may not (a
        server given by URL, an account without the right)."""
        # No default schema: the statement digests of the test's database (the cost
        # per request) do not count the heartbeats.
        conn = self.primary.connect(admin=True, read_timeout=5, database="")
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION binlog_format = 'STATEMENT'")
        except pymysql.MySQLError as exc:
            conn.close()
            raise MySQLError(
                f"the replicas' lag cannot be measured: {self.primary.admin_user} may not log "
                f"the heartbeats as statements ({exc.args[-1] if exc.args else exc}); grant it "
                "BINLOG ADMIN (MariaDB) or SUPER, or set [tool.perfsuite.replication] lag = false"
            ) from exc
        return conn

    def _caught_up(self) -> None:
        """Until each replica has applied the primary's writes of before the load (an
        earlier load's, an A/B round's): their backlog is not this load's lag."""
        try:
            late = behind(self.primary, self.replicas, timeout=CATCH_UP)
        except MySQLError as exc:
            late = [f"cannot tell ({exc})"]
        if late:
            warnings.warn(
                PerfsuiteWarning(
                    "perfsuite: the replicas had not caught up with the primary when the "
                    f"load began, after {CATCH_UP:g} s: its lag includes what was left "
                    f"of before ({'; '.join(late)})"
                ),
                stacklevel=3,
            )

    def _wait_for_table(self, index: int, replica: MySQLServer, table: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                replica.query(f"SELECT 1 FROM {table} LIMIT 1", admin=True)
                return
            except MySQLError as exc:
                if time.monotonic() > deadline:
                    said = _stopped(replica) or str(exc)
                    raise MySQLError(
                        f"{_name(index, replica)} did not receive the heartbeat table "
                        f"within 30 s: {said}"
                    ) from exc
            time.sleep(0.05)

    def _write(self) -> None:
        """A heartbeat at each tick of a fixed schedule (late ticks are not made up)."""
        table = f"`{self.primary.database}`.`{TABLE}`"
        conn: pymysql.Connection | None = self._conn
        began = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect_writer()
                with conn.cursor() as cur:
                    written = time.time_ns() // 1000
                    cur.execute(
                        f"INSERT INTO {table} (written_us, applied_us) VALUES (%s, {_APPLIED})",
                        (written,),
                    )
                    with self._lock:
                        self._written[int(cur.lastrowid)] = written
            except (MySQLError, pymysql.MySQLError) as exc:
                self.errors.append(f"heartbeat on the primary: {exc}")
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
            tick = max(tick + 1, int((time.monotonic() - began) / self.interval))
            self._stop.wait(max(0.0, began + tick * self.interval - time.monotonic()))
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _read(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._read_once()
            except (MySQLError, pymysql.MySQLError) as exc:
                self.errors.append(f"heartbeat read: {exc}")

    def _read_once(self) -> None:
        table = f"`{self.primary.database}`.`{TABLE}`"
        with self._lock:
            written = set(self._written)
        for index, replica in enumerate(self.replicas):
            got = self._applied[index]
            # Heartbeats may be applied out of order (parallel appliers): from the
            # oldest one not seen yet.
            low = min((i for i in written if i not in got), default=None)
            if low is None:
                continue
            rows = replica.query(
                f"SELECT id, applied_us FROM {table} WHERE id >= %s", (low,), admin=True
            )
            for heartbeat, applied in rows:
                if heartbeat in written:
                    got[int(heartbeat)] = int(applied)


def _name(index: int, replica: MySQLServer) -> str:
    return f"replica {index + 1} ({replica.host}:{replica.port})"


def _stopped(replica: MySQLServer) -> str:
    """The replica's error text when a thread has stopped ("" while both run)."""
    try:
        status = replica_status(replica)
    except MySQLError as exc:
        return str(exc)
    if status is None:
        return "not a replica"
    return "" if status.running else status.describe()


def _clock(server: MySQLServer) -> ClockOffset:
    """The server's clock (what SYSDATE reads) against ours, from round trips."""
    trips = []
    with server.connection(admin=True) as conn, conn.cursor() as cur:
        for _ in range(_CLOCK_TRIPS):
            sent = time.time_ns()
            cur.execute(f"SELECT {_APPLIED}")
            received = time.time_ns()
            (read_us,) = cur.fetchone()  # type: ignore[misc]
            trips.append((sent, int(read_us) * 1000, received))
    return estimate_offset(trips)
