"""The database's counters as series: SHOW GLOBAL STATUS, read like a scrape.

Every numeric status variable becomes ``mysql_global_status_<name>`` in
lower case, the names mysqld_exporter gives them, so that an expression
written against a real exporter (``rate(mysql_global_status_questions[1m])``,
``mysql_global_status_threads_running``) works on perfsuite's own readings.
``ON``/``OFF`` become 1/0; other text is left out.
"""

from __future__ import annotations

import threading

import pymysql

from perfsuite.probes.dbprobe import PROBE_TIMEOUT
from perfsuite.probes.scrape import Samples
from perfsuite.provision.server import MySQLServer

__all__ = ["GlobalStatus"]

_PREFIX = "mysql_global_status_"
_SWITCHES = {"ON": 1.0, "OFF": 0.0}


class GlobalStatus:
    """A scrape source of the server's global status, over a connection of its own."""

    job = "mysql"

    def __init__(self, server: MySQLServer) -> None:
        self.instance = f"{server.host}:{server.port}"
        self._server = server
        self._conn: pymysql.Connection | None = None
        self._lock = threading.Lock()

    def read(self) -> Samples:
        """One reading of every numeric status variable."""
        with self._lock:
            if self._conn is None:  # connected at the first read, in the scraper's thread
                self._conn = self._server.connect(
                    admin=True, database="", read_timeout=PROBE_TIMEOUT
                )
            with self._conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS")
                rows = cur.fetchall()
        samples: list[tuple[str, dict[str, str], float]] = []
        for name, raw in rows:
            text = str(raw)
            if text in _SWITCHES:
                value = _SWITCHES[text]
            else:
                try:
                    value = float(text)
                except ValueError:
                    continue
            samples.append((_PREFIX + str(name).lower(), {}, value))
        return {}, samples

    def close(self) -> None:
        """Close the connection (if it was opened)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
