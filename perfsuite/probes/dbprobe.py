"""The database's view of a service's connections: its processlist, its thread
counters, and the statements each connection ran (see :mod:`perfsuite.probes.pool`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pymysql

from perfsuite.errors import ConfigError
from perfsuite.provision.server import MySQLServer

__all__ = ["PROBE_TIMEOUT", "DbConnection", "DbProbe", "DbSnapshot"]


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


# Statements run so far by each connection of a user (performance_schema).
_STATEMENTS = """
SELECT t.PROCESSLIST_ID, SUM(s.COUNT_STAR)
FROM performance_schema.threads t
JOIN performance_schema.events_statements_summary_by_thread_by_event_name s
  ON s.THREAD_ID = t.THREAD_ID
WHERE t.PROCESSLIST_USER = %s AND t.PROCESSLIST_ID <> CONNECTION_ID()
GROUP BY t.PROCESSLIST_ID
"""
# The current account's global PROCESS privilege (ALL PRIVILEGES shows as each).
_HAS_PROCESS = """
SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES
WHERE PRIVILEGE_TYPE = 'PROCESS' AND GRANTEE = CONCAT(
  "'", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), "'@'",
  SUBSTRING_INDEX(CURRENT_USER(), '@', -1), "'")
"""
# A probe query that hangs (a locked server) fails the check instead of blocking it.
PROBE_TIMEOUT = 10.0

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
        self._conn = server.connect(admin=True, database="", read_timeout=PROBE_TIMEOUT)
        if server.admin_user != user and not self._can_see_others():
            self._conn.close()
            raise ConfigError(
                f"the probe user {server.admin_user!r} has no PROCESS privilege, so it cannot "
                f"see the connections of {user!r}; GRANT PROCESS ON *.* TO it, or set "
                f"[tool.perfsuite.pool] check = false"
            )

    def _can_see_others(self) -> bool:
        # The privilege table, not the text of SHOW GRANTS (a grant on a database
        # named `processing` says PROCESS too).
        with self._conn.cursor() as cur:
            cur.execute(_HAS_PROCESS)
            row = cur.fetchone()
        return bool(row and row[0])

    def statements(self) -> dict[int, int] | None:
        """Statements run so far by each of the user's connections (None: no
        performance_schema to count them)."""
        with self._lock, self._conn.cursor() as cur:
            try:
                cur.execute(_STATEMENTS, (self.user,))
                rows = cur.fetchall()
            except pymysql.MySQLError:
                return None
        counts = {int(r[0]): int(r[1] or 0) for r in rows if r[0] is not None}
        return counts or None

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
