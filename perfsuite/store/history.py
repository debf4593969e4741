"""History: every run in one SQL database, for trends across commits.

SQLite at ``reports/history.sqlite`` by default; any SQLAlchemy URL
(``mysql+pymysql://...``, ``postgresql+psycopg://...``) when many CI runners
share one history. Three tables, all prefixed ``perfsuite_``:

- ``perfsuite_meta``: ``schema`` = the layout's version (readers refuse newer);
- ``perfsuite_runs``: one row per run (``uid`` unique, so an import is
  idempotent), with the whole run record, zlib-compressed;
- ``perfsuite_points``: the headline numbers of each run per test and
  endpoint (``p50``, ``p95``, ``p99``, ``mean``, ``rps``, ``error_rate``, ...),
  which is what the trend charts read.

Every append is one transaction, so concurrent writers (xdist workers,
parallel CI jobs) lose nothing: SQLite takes its write lock up front
(``BEGIN IMMEDIATE``) and waits for it; the server databases serialise on
their own. Tables are created with ``IF NOT EXISTS`` so two first writers
don't race either.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from perfsuite.errors import StoreError
from perfsuite.secrets import redact

__all__ = ["SCHEMA", "History", "HistoryRun", "Point", "history_target", "history_url", "redact"]

SCHEMA = 1

_meta = sa.MetaData()
_META = sa.Table(
    "perfsuite_meta",
    _meta,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)
_RUNS = sa.Table(
    "perfsuite_runs",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # 191 characters: the longest utf8mb4 key older MySQL versions index.
    sa.Column("uid", sa.String(191), nullable=False, unique=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created", sa.String(32), nullable=False),  # ISO 8601 UTC: sorts as text
    sa.Column("commit", sa.String(64)),
    sa.Column("branch", sa.String(191)),
    sa.Column("profile", sa.String(64)),
    sa.Column("fingerprint", sa.Text),
    # A plain BLOB on MySQL stops at 64 kB; run records are larger.
    sa.Column("record", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")),
)
_POINTS = sa.Table(
    "perfsuite_points",
    _meta,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("perfsuite_runs.id"), nullable=False),
    sa.Column("test", sa.String(512), nullable=False),
    sa.Column("endpoint", sa.String(191), nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("value", sa.Float),
)
_INDEX = sa.Index("perfsuite_points_run", _POINTS.c.run_id)


@dataclass(frozen=True, kw_only=True)
class HistoryRun:
    """One run of the history (without its record)."""

    id: int
    uid: str
    source: str
    created: str
    commit: str | None
    branch: str | None
    profile: str | None
    fingerprint: dict[str, Any]

    @property
    def label(self) -> str:
        """The commit's short hash, else the date: how charts name the run."""
        return self.commit[:8] if self.commit else self.created[:16]


@dataclass(frozen=True, kw_only=True)
class Point:
    """One headline number of one run."""

    run_id: int
    test: str
    endpoint: str
    metric: str
    value: float | None


def history_url(target: str, root: Path) -> str:
    """A SQLAlchemy URL for ``target``: a URL as given, a path (relative to ``root``) as SQLite."""
    if re.match(r"^[a-z][a-z0-9+]*://", target):
        return target
    path = Path(target)
    return f"sqlite:///{(path if path.is_absolute() else root / path).resolve()}"


def history_target(option: str | None, configured: str | None, reports: Path) -> str | None:
    """Where the history goes: the option, else $PERFSUITE_HISTORY, else the config, else
    ``<reports>/history.sqlite``; None when any of them says ``none``."""
    target = option or os.environ.get("PERFSUITE_HISTORY") or configured
    if target is None:
        return str(reports / "history.sqlite")
    return None if target.strip().lower() in ("none", "") else target


class History:
    """A history database, created on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = self._engine(url)
            self._create()
        except NoSuchModuleError as exc:
            raise StoreError(
                f"history {redact(url)}: SQLAlchemy knows no such database or driver ({exc})"
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"history {redact(url)}: {exc.__class__.__name__}: {exc}") from exc
        except ModuleNotFoundError as exc:  # the URL's driver is not installed
            raise StoreError(
                f"history {redact(url)}: its database driver is not installed ({exc.name}); "
                f"pip install it, e.g. PyMySQL for mysql+pymysql:// or psycopg for "
                f"postgresql+psycopg://"
            ) from exc

    @staticmethod
    def _engine(url: str) -> Engine:
        # NullPool: a history is opened for one append or one report; no
        # connection should outlive it (or a pytest session).
        if url.startswith("sqlite"):
            path = sa.make_url(url).database
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})

            @sa.event.listens_for(engine, "connect")
            def _connect(dbapi: Any, _record: Any) -> None:
                dbapi.isolation_level = None  # we issue BEGIN ourselves
                dbapi.execute("PRAGMA busy_timeout = 60000")
                dbapi.execute("PRAGMA journal_mode = WAL")

            @sa.event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                # Take the write lock at BEGIN: a deferred transaction that
                # upgrades later fails with "database is locked" instead of waiting.
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        return sa.create_engine(url, poolclass=NullPool)

    def _create(self) -> None:
        with self.engine.begin() as conn:
            for table in _meta.sorted_tables:
                conn.execute(CreateTable(table, if_not_exists=True))
        self._create_index()
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(_META.c.value).where(_META.c.key == "schema")
            ).scalar_one_or_none()
        if found is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(_META.insert().values(key="schema", value=str(SCHEMA)))
            except IntegrityError:  # another writer was first
                pass
        elif int(found) > SCHEMA:
            raise StoreError(
                f"history {redact(self.url)} has schema {found}, newer than this perfsuite "
                f"reads ({SCHEMA}); upgrade perfsuite"
            )

    def _create_index(self) -> None:
        if _index_if_not_exists(self.engine.dialect):
            with self.engine.begin() as conn:
                conn.execute(CreateIndex(_INDEX, if_not_exists=True))
            return
        # Oracle MySQL (8.x, 9.x) has no CREATE INDEX IF NOT EXISTS: look first, and
        # take a racing first writer's "duplicate key name" (1061) as done.
        with self.engine.connect() as conn:
            names = {ix["name"] for ix in sa.inspect(conn).get_indexes(_POINTS.name)}
            if _INDEX.name in names:
                return
            try:
                conn.execute(CreateIndex(_INDEX))
                conn.commit()
            except OperationalError as exc:
                if _mysql_code(exc) != 1061:
                    raise

    def close(self) -> None:
        """Release the engine."""
        self.engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------

    def append(
        self,
        *,
        uid: str,
        source: str,
        created: str,
        commit: str | None,
        points: Iterable[tuple[str, str, str, float | None]],
        record: Mapping[str, Any] | None = None,
        branch: str | None = None,
        profile: str | None = None,
        fingerprint: Mapping[str, Any] | None = None,
    ) -> bool:
        """Add one run and its points in one transaction; False if ``uid`` is already there."""
        blob = zlib.compress(json.dumps(record).encode(), 6) if record is not None else None
        rows = list(points)
        try:
            with self.engine.begin() as conn:
                inserted = conn.execute(
                    _RUNS.insert().values(
                        uid=uid,
                        source=source,
                        created=created,
                        commit=commit,
                        branch=branch,
                        profile=profile,
                        fingerprint=json.dumps(dict(fingerprint or {})),
                        record=blob,
                    )
                ).inserted_primary_key
                assert inserted is not None
                run_id = inserted[0]
                if rows:
                    conn.execute(
                        _POINTS.insert(),
                        [
                            {"run_id": run_id, "test": t, "endpoint": e, "metric": m, "value": v}
                            for t, e, m, v in rows
                        ],
                    )
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise StoreError(f"history {redact(self.url)}: cannot append {uid}: {exc}") from exc
        return True

    # -- reading --------------------------------------------------------------

    def runs(self, *, source: str | None = None, limit: int | None = None) -> list[HistoryRun]:
        """Runs, oldest first (the newest ``limit`` of them)."""
        columns = [_RUNS.c[name] for name in _RUN_COLUMNS]
        query = sa.select(*columns).order_by(_RUNS.c.created.desc(), _RUNS.c.id.desc())
        if source is not None:
            query = query.where(_RUNS.c.source == source)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            HistoryRun(
                id=r.id,
                uid=r.uid,
                source=r.source,
                created=r.created,
                commit=r.commit,
                branch=r.branch,
                profile=r.profile,
                fingerprint=json.loads(r.fingerprint or "{}"),
            )
            for r in reversed(rows)
        ]

    def points(self, run_ids: Sequence[int]) -> list[Point]:
        """The points of these runs."""
        if not run_ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_POINTS).where(_POINTS.c.run_id.in_(run_ids))).all()
        return [
            Point(run_id=r.run_id, test=r.test, endpoint=r.endpoint, metric=r.metric, value=r.value)
            for r in rows
        ]

    def record(self, run_id: int) -> dict[str, Any] | None:
        """The whole run record of a run (None for imported benchmark runs)."""
        with self.engine.connect() as conn:
            blob = conn.execute(
                sa.select(_RUNS.c.record).where(_RUNS.c.id == run_id)
            ).scalar_one_or_none()
        if blob is None:
            return None
        data: dict[str, Any] = json.loads(zlib.decompress(blob))
        return data

    def count(self) -> int:
        """Number of runs."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_RUNS)).scalar_one())


_RUN_COLUMNS = ("id", "uid", "source", "created", "commit", "branch", "profile", "fingerprint")


def _index_if_not_exists(dialect: sa.Dialect) -> bool:
    """Whether the database takes CREATE INDEX IF NOT EXISTS (all but Oracle MySQL)."""
    return dialect.name != "mysql" or bool(getattr(dialect, "is_mariadb", False))


def _mysql_code(exc: OperationalError) -> int | None:
    """The MySQL error number of a driver error (PyMySQL: ``args[0]``)."""
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None
