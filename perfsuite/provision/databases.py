"""A second database on the same server, a copy of the first (A/B runs).

Each build of an A/B run gets its own database, so that the rows one build
writes never slow the other's queries. The copy is made after the seed,
table by table (``CREATE TABLE ... LIKE`` and ``INSERT ... SELECT``): the
same rows, the same indexes. Views, triggers and routines are not copied.
The copy goes through the binary log, so the server's replicas hold it too
(the base build reads its own copy there); it is handed over once they do.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import pymysql

from perfsuite.errors import MySQLError
from perfsuite.provision.replication import behind
from perfsuite.provision.server import MySQLServer
from perfsuite.provision.server import quote_name as _quoted

__all__ = ["copied_database"]

_REPLICAS_TIMEOUT = 60.0  # s for the replicas to apply the copy (past their MASTER_DELAY)


@contextlib.contextmanager
def copied_database(server: MySQLServer, name: str) -> Iterator[MySQLServer]:
    """``server`` with a database ``name`` copied from its own; dropped when the block ends."""
    source, target = _quoted(server.database), _quoted(name)
    conn = server.connect(admin=True, database="")
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(f"DROP DATABASE IF EXISTS {target}")  # a killed run's
                cur.execute(f"CREATE DATABASE {target}")
                cur.execute(f"SHOW FULL TABLES FROM {source} WHERE Table_type = 'BASE TABLE'")
                tables = [row[0] for row in cur.fetchall()]
                cur.execute("SET SESSION foreign_key_checks = 0")
                for table in tables:
                    t = _quoted(table)
                    cur.execute(f"CREATE TABLE {target}.{t} LIKE {source}.{t}")
                    cur.execute(f"INSERT INTO {target}.{t} SELECT * FROM {source}.{t}")
                if server.user != server.admin_user:
                    cur.execute("SELECT Host FROM mysql.user WHERE User = %s", (server.user,))
                    for (host,) in cur.fetchall():
                        cur.execute(
                            f"GRANT ALL PRIVILEGES ON {target}.* TO %s@%s", (server.user, host)
                        )
            except pymysql.MySQLError as exc:
                raise MySQLError(f"cannot copy database {source} into {target}: {exc}") from exc
    finally:
        conn.close()
    try:
        late = behind(server, server.replicas, timeout=_REPLICAS_TIMEOUT)
        if late:
            raise MySQLError(f"the copy {target} did not reach the replicas: {'; '.join(late)}")
        replicas = tuple(dataclasses.replace(r, database=name) for r in server.replicas)
        yield dataclasses.replace(server, database=name, replicas=replicas)
    finally:
        with contextlib.suppress(MySQLError, pymysql.MySQLError):
            server.execute(f"DROP DATABASE IF EXISTS {target}", admin=True)
