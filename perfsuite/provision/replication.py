"""Read replicas: a primary's binary log, replicas that apply it (MariaDB's GTIDs).

The process and container providers start the primary with a binary log and
each replica with a server id of its own, read-only, not replicating until told. Every
server gets the same accounts on its own (not through the binary log), so a
replica can be told to start from the primary's position at that moment;
what the tests load afterwards (schema, seed data) replicates. Set-up waits
until both of a replica's threads run, and stops with the replica's own error
text when one does not.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pymysql

from perfsuite.config import ReplicationConfig
from perfsuite.errors import MySQLError
from perfsuite.provision.server import MySQLServer
from perfsuite.secrets import register

__all__ = [
    "ReplicaStatus",
    "behind",
    "primary_argv",
    "replica_argv",
    "replica_status",
    "start_replication",
]

REPL_USER = "perfsuite_repl"


def primary_argv(workdir: PurePath) -> list[str]:
    """A primary's binary log: row-based (MySQL 8's default and what most run)."""
    return [
        f"--log-bin={workdir / 'binlog'}",
        "--server-id=1",
        "--binlog-format=ROW",
        # As the datadir's own flushing (innodb-flush-log-at-trx-commit=0): test speed.
        "--sync-binlog=0",
    ]


def replica_argv(workdir: PurePath, server_id: int, config: ReplicationConfig) -> list[str]:
    """A replica: its own server id, read-only to the application, started when told."""
    return [
        "--skip-log-bin",
        f"--server-id={server_id}",
        f"--relay-log={workdir / 'relay'}",
        "--skip-slave-start",
        # The app account cannot write here by mistake (the admin still can).
        "--read-only=ON",
        f"--slave-parallel-threads={config.parallel_threads}",
    ]


@dataclass(frozen=True, kw_only=True)
class ReplicaStatus:
    """``SHOW SLAVE STATUS``'s answer, in the columns a DBA reads first."""

    io_running: str  # Yes, No, Connecting
    sql_running: str
    io_error: str
    sql_error: str
    delay: int = 0  # MASTER_DELAY, s

    @property
    def running(self) -> bool:
        """Do both threads run?"""
        return self.io_running == "Yes" and self.sql_running == "Yes"

    def describe(self) -> str:
        """``IO thread No (error ...), SQL thread Yes``."""
        io = f"IO thread {self.io_running}" + (f" ({self.io_error})" if self.io_error else "")
        sql = f"SQL thread {self.sql_running}" + (f" ({self.sql_error})" if self.sql_error else "")
        return f"{io}, {sql}"


def _column(row: dict[str, Any], suffix: str) -> Any:
    # MariaDB names them Slave_*; MySQL 8.0.22+ Replica_*.
    for name, value in row.items():
        if name.endswith(suffix):
            return value
    return None


def replica_status(server: MySQLServer) -> ReplicaStatus | None:
    """The replica's status (None: the server is not a replica)."""
    conn = server.connect(admin=True)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            try:
                cur.execute("SHOW REPLICA STATUS")
            except pymysql.MySQLError:  # before MariaDB 10.5 / MySQL 8.0.22
                cur.execute("SHOW SLAVE STATUS")
            row = cur.fetchone()
    except pymysql.MySQLError as exc:
        raise MySQLError(
            f"cannot read the replica status of {server.host}:{server.port}: {exc} "
            "(the account needs the REPLICATION CLIENT privilege)"
        ) from exc
    finally:
        conn.close()
    if not row:
        return None
    return ReplicaStatus(
        io_running=str(_column(row, "_IO_Running") or ""),
        sql_running=str(_column(row, "_SQL_Running") or ""),
        io_error=str(_column(row, "Last_IO_Error") or ""),
        sql_error=str(_column(row, "Last_SQL_Error") or ""),
        delay=int(_column(row, "SQL_Delay") or 0),
    )


def _admin(server: MySQLServer, *statements: tuple[str, Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Statements as admin on one connection, kept out of the binary log (each server
    sets up its own); the rows of the last."""
    conn = server.connect(admin=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            for sql, params in statements:
                cur.execute(sql, params or None)
            return list(cur.fetchall())
    except pymysql.MySQLError as exc:
        raise MySQLError(f"replication set-up on {server.host}:{server.port}: {exc}") from exc
    finally:
        conn.close()


def start_replication(
    primary: MySQLServer,
    replicas: Sequence[MySQLServer],
    config: ReplicationConfig,
    timeout: float,
) -> None:
    """Point each replica at ``primary`` from its position now; wait until they run."""
    password = secrets.token_urlsafe(18)
    register(password)
    # Where the replicas reach the primary: its network alias, for containers.
    host, port = primary.internal_host or primary.host, primary.internal_port or primary.port
    # Containers connect from their network's addresses, which are not known beforehand.
    client = "%" if primary.internal_host else primary.host
    ((position,),) = _admin(
        primary,
        ("CREATE USER %s@%s IDENTIFIED BY %s", (REPL_USER, client, password)),
        ("GRANT REPLICATION SLAVE ON *.* TO %s@%s", (REPL_USER, client)),
        ("SELECT @@gtid_binlog_pos", ()),
    )
    for replica in replicas:
        _admin(
            replica,
            ("SET GLOBAL gtid_slave_pos = %s", (position,)),
            (
                "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
                "MASTER_PASSWORD = %s, MASTER_USE_GTID = slave_pos, MASTER_DELAY = %s, "
                "MASTER_CONNECT_RETRY = 1",
                (host, port, REPL_USER, password, config.delay),
            ),
            ("START SLAVE", ()),
        )
    for index, replica in enumerate(replicas, 1):
        wait_running(replica, index, timeout)


def wait_running(replica: MySQLServer, index: int, timeout: float) -> ReplicaStatus:
    """Until both of the replica's threads run; its own error text when they do not."""
    began = time.monotonic()
    status = replica_status(replica)
    while status is None or not status.running:
        waited = time.monotonic() - began
        # A refused login keeps the IO thread "Connecting", retrying each second:
        # its error stands once a few retries have failed.
        failed = status is None or bool(
            status.sql_error or (status.io_error and (status.io_running == "No" or waited > 3))
        )
        if failed or waited > timeout:
            said = status.describe() if status is not None else "not configured as a replica"
            raise MySQLError(
                f"replica {index} ({replica.host}:{replica.port}) does not replicate from "
                f"the primary: {said}"
            )
        time.sleep(0.05)
        status = replica_status(replica)
    return status


def behind(primary: MySQLServer, replicas: Sequence[MySQLServer], *, timeout: float) -> list[str]:
    """Wait until each replica has applied what the primary logged until now (at
    most ``timeout`` s past its own MASTER_DELAY, a delay of up to ``timeout`` s:
    a replica kept an hour behind on purpose is not waited for); the replicas that
    had not, each with how it stands. A load that begins on a replica still
    applying an earlier one's writes would measure that backlog as its own lag."""
    rows = primary.query("SHOW MASTER STATUS", admin=True)
    if not rows:
        return []  # no binary log: nothing replicates from it
    where, position = str(rows[0][0]), int(rows[0][1])
    late = []
    for index, replica in enumerate(replicas, 1):
        status = replica_status(replica)
        if status is None or not status.running:
            said = status.describe() if status is not None else "not a replica"
            late.append(f"replica {index} ({replica.host}:{replica.port}): {said}")
            continue
        deadline = time.monotonic() + timeout + min(status.delay, timeout)
        # Waits of a second at a time (MASTER_POS_WAIT, in MariaDB and MySQL): a
        # Ctrl-C is not held up by a statement the server would go on waiting in.
        while True:
            ((got,),) = replica.query(
                "SELECT MASTER_POS_WAIT(%s, %s, 1)", (where, position), admin=True
            )
            if got is not None and int(got) >= 0:
                break
            if got is None or time.monotonic() > deadline:
                said = _stopped_or(replica, f"not at the primary's {where}:{position}")
                late.append(f"replica {index} ({replica.host}:{replica.port}): {said}")
                break
    return late


def _stopped_or(replica: MySQLServer, otherwise: str) -> str:
    status = replica_status(replica)
    if status is None:
        return "not a replica"
    return otherwise if status.running else status.describe()
