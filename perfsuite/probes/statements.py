"""Statement digests and server counters of the service's database (performance_schema).

Read before and after a load through an admin connection of its own (no
default schema, so its own statements are not counted with the service's);
:mod:`perfsuite.stats.cost` turns two readings into per-request cost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pymysql

from perfsuite.errors import MySQLError
from perfsuite.provision.server import MySQLServer
from perfsuite.stats.cost import STATUS_COUNTERS, DigestCounters, RequestCost, request_cost

__all__ = ["StatementProbe", "StatementSnapshot", "unavailable_reason"]

_DIGESTS = """
SELECT DIGEST, DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT, MAX_TIMER_WAIT,
       SUM_ROWS_EXAMINED, SUM_ROWS_SENT, SUM_NO_INDEX_USED, SUM_NO_GOOD_INDEX_USED,
       SUM_CREATED_TMP_DISK_TABLES, SUM_SORT_MERGE_PASSES, SUM_ERRORS
FROM performance_schema.events_statements_summary_by_digest
WHERE SCHEMA_NAME = %s
"""

_STATUS = "SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(
    ", ".join(f"'{name}'" for name in STATUS_COUNTERS)
)

# What the summary needs (MySQL 5.6+ and MariaDB 10.0+ name them alike).
_CONSUMERS = ("global_instrumentation", "thread_instrumentation", "statements_digest")

HOW_TO_ENABLE = (
    "start the server with --performance-schema=ON (my.cnf: performance_schema=ON under "
    "[mysqld]; it cannot be switched on while the server runs), then "
    "UPDATE performance_schema.setup_consumers SET ENABLED='YES' WHERE NAME IN "
    "('global_instrumentation', 'thread_instrumentation', 'statements_digest')"
)


@dataclass(frozen=True, kw_only=True)
class StatementSnapshot:
    """The digests of one schema and the server's counters at one moment."""

    at: int  # when the digests were read (time.perf_counter_ns(), their query's middle)
    digests: dict[str, DigestCounters]
    status: dict[str, int]
    own_statements: int = 0  # the probe's statements up to and including the status read


def unavailable_reason(conn: pymysql.Connection) -> str | None:
    """Why per-request cost cannot be read on this server, or None when it can."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@performance_schema")
            row = cur.fetchone()
            if not row or not int(row[0]):
                return f"performance_schema is off on this server: {HOW_TO_ENABLE}"
            cur.execute(
                "SELECT NAME, ENABLED FROM performance_schema.setup_consumers WHERE NAME IN "
                "(%s, %s, %s)",
                _CONSUMERS,
            )
            off = sorted(str(n) for n, enabled in cur.fetchall() if str(enabled) != "YES")
            if off:
                return f"the performance_schema consumers {', '.join(off)} are off: {HOW_TO_ENABLE}"
            cur.execute(
                "SELECT COUNT(*) FROM performance_schema.setup_instruments "
                "WHERE NAME LIKE 'statement/sql/%%' AND ENABLED = 'YES' AND TIMED = 'YES'"
            )
            row = cur.fetchone()
            if not row or not int(row[0]):
                return (
                    "the statement/sql/% instruments are off or untimed: UPDATE "
                    "performance_schema.setup_instruments SET ENABLED='YES', TIMED='YES' "
                    "WHERE NAME LIKE 'statement/sql/%'"
                )
    except pymysql.MySQLError as exc:
        return (
            f"performance_schema cannot be read ({exc.args[-1] if exc.args else exc}): "
            f"GRANT SELECT ON performance_schema.* to the admin account"
        )
    return None


class StatementProbe:
    """Reads the service's statement digests and the server's counters.

    ``owned``: the server is perfsuite's own (a throwaway process or
    container), so :meth:`reset` may empty the digest table before a load,
    which makes each load's slowest call known exactly. A server given by URL
    is shared with others: nothing is reset, differences only.
    """

    def __init__(self, server: MySQLServer, database: str, *, owned: bool) -> None:
        self.database = database
        self.owned = owned
        self._lock = threading.Lock()
        self._conn = server.connect(admin=True, database="")
        self._issued = 0

    def available(self) -> str | None:
        """None when the digests can be read; else why not, and how to turn them on."""
        with self._lock:
            return unavailable_reason(self._conn)

    def _execute(self, cur: pymysql.cursors.Cursor, sql: str, args: object = None) -> None:
        cur.execute(sql, args)
        self._issued += 1

    def reset(self) -> None:
        """Empty the digest table (only on a server of our own)."""
        if not self.owned:
            return
        with self._lock, self._conn.cursor() as cur:
            try:
                self._execute(
                    cur, "TRUNCATE TABLE performance_schema.events_statements_summary_by_digest"
                )
            except pymysql.MySQLError as exc:
                raise MySQLError(f"cannot empty the statement digests: {exc}") from exc

    def snapshot(self) -> StatementSnapshot:
        """Read the digests of the service's schema, then the server's counters."""
        with self._lock, self._conn.cursor() as cur:
            try:
                # The digests first: at a phase boundary they are what must be on time.
                sent = time.perf_counter_ns()
                self._execute(cur, _DIGESTS, (self.database,))
                rows = cur.fetchall()
                at = (sent + time.perf_counter_ns()) // 2
                self._execute(cur, _STATUS)
                status = {str(k): int(v) for k, v in cur.fetchall()}
                own = self._issued
            except pymysql.MySQLError as exc:
                raise MySQLError(f"cannot read the statement digests: {exc}") from exc
        digests: dict[str, DigestCounters] = {}
        for row in rows:
            key = str(row[0]) if row[0] is not None else "(other)"
            digests[key] = DigestCounters(
                digest=key,
                text=str(row[1] or ""),
                calls=int(row[2]),
                total_ps=int(row[3]),
                max_ps=int(row[4]),
                rows_examined=int(row[5]),
                rows_sent=int(row[6]),
                no_index_used=int(row[7]),
                no_good_index_used=int(row[8]),
                tmp_disk_tables=int(row[9]),
                sort_merge_passes=int(row[10]),
                errors=int(row[11]),
            )
        return StatementSnapshot(at=at, digests=digests, status=status, own_statements=own)

    def cost(
        self,
        before: StatementSnapshot,
        after: StatementSnapshot,
        requests: int,
        *,
        cpu_seconds: float | None = None,
        endpoints: tuple[str, ...] = (),
    ) -> RequestCost:
        """The cost of ``requests`` answered requests between two snapshots."""
        return request_cost(
            requests,
            before.digests,
            after.digests,
            before.status,
            after.status,
            own_statements=after.own_statements - before.own_statements,
            cpu_seconds=cpu_seconds,
            endpoints=endpoints,
        )

    def close(self) -> None:
        """Close the probe's connection."""
        self._conn.close()
