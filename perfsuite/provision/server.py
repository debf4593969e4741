"""The handle of a provisioned MySQL server, whatever provider started it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pymysql
import pymysql.connections
from pymysql.constants import CLIENT

from perfsuite.errors import ConfigError, MySQLError
from perfsuite.secrets import redact, register

__all__ = ["SERVER_OPTIONS", "MySQLServer", "parse_mysql_url", "quote_name"]

# The names perfsuite puts into SQL text (databases, tables): MySQL's unquoted
# identifier characters only, so that quoting cannot be escaped.
_NAME = re.compile(r"^[A-Za-z0-9_$]{1,64}$")

# Options of every server perfsuite starts (process or container): statement
# digests, for the cost per request (queries, rows examined, database time).
# MariaDB starts with performance_schema off; MySQL on, but said all the same.
SERVER_OPTIONS = (
    "--performance-schema=ON",
    "--performance-schema-consumer-statements-digest=ON",
)


@dataclass(frozen=True, kw_only=True)
class MySQLServer:
    """A MySQL server the tests may use: where it is and who may log in.

    ``user`` is the application's account (the service connects with it);
    ``admin_user`` is an account with full rights, for schema set-up and probes.
    ``internal_host``/``internal_port`` are where *other containers* reach it
    (the Docker network alias); for local servers they equal host/port.
    ``replicas`` replicate from it (``[tool.perfsuite] replicas``).
    """

    provider: str
    host: str
    port: int
    user: str
    password: str
    database: str
    admin_user: str
    admin_password: str
    internal_host: str = ""
    internal_port: int = 0
    # Read replicas of this server (the same accounts), in order: replica 1 first.
    replicas: tuple[MySQLServer, ...] = ()

    @classmethod
    def from_url(cls, url: str, *, provider: str = "url") -> MySQLServer:
        """An existing server given as ``mysql://user:pass@host:port/db``.

        The URL's account serves both as the app user and as the admin.
        """
        host, port, user, password, database = parse_mysql_url(url)
        register(password)
        return cls(
            provider=provider,
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            admin_user=user,
            admin_password=password,
        )

    def __repr__(self) -> str:
        return f"<MySQLServer {self.provider} {self.user}@{self.host}:{self.port}/{self.database}>"

    @property
    def url(self) -> str:
        """``mysql://user:pass@host:port/db`` for the application account."""
        return _url(self.user, self.password, self.host, self.port, self.database)

    @property
    def internal_url(self) -> str:
        """The same URL as seen from the service's container network."""
        return _url(
            self.user,
            self.password,
            self.internal_host or self.host,
            self.internal_port or self.port,
            self.database,
        )

    def connect(
        self,
        *,
        admin: bool = False,
        database: str | None = None,
        read_timeout: float | None = None,
    ) -> pymysql.Connection:
        """A new PyMySQL connection (autocommit) as the app user, or as admin."""
        try:
            return pymysql.connect(
                read_timeout=read_timeout,
                host=self.host,
                port=self.port,
                user=self.admin_user if admin else self.user,
                password=self.admin_password if admin else self.password,
                database=self.database if database is None else (database or None),
                autocommit=True,
                connect_timeout=5,
                client_flag=CLIENT.MULTI_STATEMENTS,
            )
        except pymysql.MySQLError as exc:
            raise MySQLError(f"cannot connect to MySQL at {self.host}:{self.port}: {exc}") from exc

    @contextmanager
    def connection(self, *, admin: bool = False) -> Iterator[pymysql.Connection]:
        """A connection that is closed when the block ends."""
        conn = self.connect(admin=admin)
        try:
            yield conn
        finally:
            conn.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None, *, admin: bool = False) -> int:
        """Run one statement (or several, separated by ';'); return rows affected."""
        with self.connection(admin=admin) as conn, conn.cursor() as cur:
            try:
                affected = cur.execute(sql, params)
                while cur.nextset():
                    pass
            except pymysql.MySQLError as exc:
                raise MySQLError(f"SQL failed: {exc}\n  in: {sql[:200]}") from exc
            return affected

    def query(
        self, sql: str, params: Sequence[Any] | None = None, *, admin: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""
        with self.connection(admin=admin) as conn, conn.cursor() as cur:
            try:
                cur.execute(sql, params)
            except pymysql.MySQLError as exc:
                raise MySQLError(f"SQL failed: {exc}\n  in: {sql[:200]}") from exc
            return list(cur.fetchall())

    def run_sql_file(self, path: Path) -> None:
        """Load a SQL file (schema, seed data) into the database, as admin."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MySQLError(f"cannot read SQL file {path}: {exc}") from exc
        try:
            self.execute(text, admin=True)
        except MySQLError as exc:
            raise MySQLError(f"{path}: {exc}") from exc


def quote_name(name: str) -> str:
    """```name``` for SQL text, or a ConfigError for a name perfsuite will not quote."""
    if not _NAME.match(name):
        raise ConfigError(
            f"mysql: {name!r} is not a database or table name perfsuite uses "
            "(letters, digits, _ and $, at most 64)"
        )
    return f"`{name}`"


def _url(user: str, password: str, host: str, port: int, database: str) -> str:
    return f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{database}"


def parse_mysql_url(url: str) -> tuple[str, int, str, str, str]:
    """``mysql://user:pass@host:port/db`` -> (host, port, user, password, database)."""
    parts = urlsplit(url)
    if parts.scheme != "mysql" or not parts.hostname:
        raise ConfigError(f"mysql: expected mysql://user:pass@host:port/db, got {redact(url)!r}")
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigError(f"mysql: the URL names no database: {redact(url)!r}")
    quote_name(database)
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise ConfigError(f"mysql: bad port in {redact(url)!r}") from exc
    return (
        parts.hostname,
        port,
        unquote(parts.username or "root"),
        unquote(parts.password or ""),
        database,
    )
