"""The history store: SQLite and a real MariaDB, concurrent writers, imports."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from perfsuite.errors import StoreError
from perfsuite.provision.server import MySQLServer
from perfsuite.store.history import SCHEMA, History, history_url
from perfsuite.store.ingest import TREND_METRICS, append_record, import_paths, run_uid
from perfsuite.store.records import decode_load

from .conftest import quiet_machine

pytest_plugins = ["pytester"]

TESTS = """
import os
import httpx
import pytest
from perfsuite import Request, Scenario

@pytest.mark.perf
def test_query(perf_run, perf_phases):
    query = Request(name="query", build=httpx.Request("GET", os.environ["TARGET"] + "/ok"))
    perf_run(Scenario(query), perf_phases.constant(500, "10m"), target=os.environ["TARGET"])
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory, server: Any) -> tuple[Path, dict[str, Any]]:
    """One real perf session (a subprocess pytest against the local server)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("run")
    (root / "pyproject.toml").write_text("[tool.perfsuite]\n")
    (root / "test_user.py").write_text(TESTS)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "perf",
            "--perf-profile=smoke",
            "-p",
            "no:cacheprovider",
        ],
        cwd=root,
        env={
            **__import__("os").environ,
            "TARGET": server.url,
            "DOCKER_HOST": "unix:///nonexistent",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "(history)" in out.stdout
    (path,) = (root / "reports" / "runs").glob("*.json")
    return root, json.loads(path.read_text())


def test_a_session_appends_its_run_with_the_gates_metrics(
    real_run: tuple[Path, dict[str, Any]],
) -> None:
    root, record = real_run
    with History(history_url("reports/history.sqlite", root)) as history:
        (run,) = history.runs()
        assert run.uid == f"run:{record['id']}"
        assert (run.created, run.profile, run.source) == (record["created"], "smoke", "perfsuite")
        assert history.record(run.id) == record
        points = {(p.endpoint, p.metric): p.value for p in history.points([run.id])}
    blocks = decode_load(record["tests"][0]["loads"][0]).blockset("query")
    for metric in TREND_METRICS:
        assert points[("query", metric)] == pytest.approx(blocks.metric(metric))
    assert points[("query", "rps")] == pytest.approx(50, rel=0.02)  # smoke: 500/s scaled 0.1
    assert points[("query", "error_rate")] == 0.0


def test_import_is_idempotent_and_refuses_foreign_files(
    real_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, _ = real_run
    with History(history_url(str(tmp_path / "h.sqlite"), tmp_path)) as history:
        assert import_paths(history, [root / "reports" / "runs"]) == (1, 0)
        assert import_paths(history, [root / "reports" / "runs"]) == (0, 1)
        (tmp_path / "other.json").write_text('{"hello": 1}')
        with pytest.raises(StoreError, match="neither a perfsuite run record"):
            import_paths(history, [tmp_path / "other.json"])
        with pytest.raises(StoreError, match="no such file"):
            import_paths(history, [tmp_path / "missing"])
        assert history.count() == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = history_url(str(tmp_path / "h.sqlite"), tmp_path)
    History(url).close()
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        db.execute("UPDATE perfsuite_meta SET value = ? WHERE key = 'schema'", (str(SCHEMA + 1),))
    with pytest.raises(StoreError, match="newer than this perfsuite reads"):
        History(url)


def test_missing_driver_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="no such database or driver"):
        History("postgresql+nosuchdriver://u@127.0.0.1/x")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        with pytest.raises(StoreError, match=r"driver is not installed \(psycopg") as err:
            History("postgresql+psycopg://u:secret@127.0.0.1/x")
        assert "secret" not in str(err.value)


def _writer(url: str, record: dict[str, Any], worker: int, count: int) -> None:
    with History(url) as history:
        for i in range(count):
            copy = {**record, "id": f"w{worker}-{i}"}
            assert append_record(history, copy, uid=run_uid(copy, ""))


def _hammer(url: str, record: dict[str, Any], workers: int = 4, count: int = 15) -> None:
    # spawn: each writer is a fresh interpreter, as parallel CI jobs are.
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, record, w, count)) for w in range(workers)]
    with quiet_machine():  # four fresh interpreters would starve a perf test next door
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0] * workers
    with History(url) as history:
        runs = history.runs()
        assert sorted(r.uid for r in runs) == sorted(
            f"run:w{w}-{i}" for w in range(workers) for i in range(count)
        )
        points = history.points([r.id for r in runs])
        per_run = len(points) // len(runs)
        assert per_run >= len(TREND_METRICS)
        assert len(points) == per_run * workers * count  # every run has all its points


def test_concurrent_writers_lose_nothing_sqlite(
    real_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    _hammer(history_url(str(tmp_path / "shared.sqlite"), tmp_path), real_run[1])


def test_concurrent_writers_lose_nothing_mariadb(
    real_run: tuple[Path, dict[str, Any]], mariadb: MySQLServer
) -> None:
    mariadb.execute("DROP DATABASE IF EXISTS perf_history", admin=True)
    mariadb.execute("CREATE DATABASE perf_history", admin=True)
    url = (
        f"mysql+pymysql://{mariadb.admin_user}:{mariadb.admin_password}"
        f"@{mariadb.host}:{mariadb.port}/perf_history"
    )
    _hammer(url, real_run[1])
    with History(url) as history:  # the record survives the round trip through LONGBLOB
        first = history.runs(limit=1)[0]
        assert history.record(first.id)["tests"] == real_run[1]["tests"]


def test_a_load_with_no_answer_at_all_is_recorded(tmp_path: Path) -> None:
    # Every request refused: each has the latency of its failed connect, and
    # none succeeded. The record says so (no ok latency), not crash.
    import socket

    import httpx

    from perfsuite import Request, Scenario, run_load
    from perfsuite.load import OpenPhase
    from perfsuite.store.runs import entry_for_test, write_run

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        request = Request(name="x", build=httpx.Request("GET", url + "/"))
        result = run_load(
            url,
            Scenario(request),
            [OpenPhase(name="steady", duration=1.0, start_rate=50, end_rate=50)],
        )
    entry = entry_for_test(test_id="t", outcome="failed", results=[result])
    (cell,) = entry["loads"][0]["cells"]
    assert all(p99 is not None for p99 in cell["series"]["p99"])  # the failures' latencies
    assert cell["series"]["errors"] == cell["series"]["requests"]
    assert cell["summary"]["ok"] == 0
    assert cell["summary"]["p99_ok"] is None
    path, record = write_run(tmp_path, commit=None, fingerprint={}, profile="ci", tests=[entry])
    with History(history_url(str(tmp_path / "h.sqlite"), tmp_path)) as history:
        assert append_record(history, record, uid=run_uid(record, path.stem))
        points = {p.metric: p.value for p in history.points([history.runs()[0].id])}
    assert points["error_rate"] == 1.0
    assert points["rps"] == 0.0  # successful requests per second


def test_on_oracle_mysql_the_index_is_made_without_if_not_exists(
    mariadb: MySQLServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No MySQL 8 can be had on these machines: its path runs here on MariaDB, which
    # takes the same statements. MySQL has no CREATE INDEX IF NOT EXISTS.
    import sqlalchemy as sa

    from perfsuite.store import history as history_module

    mariadb.execute("DROP DATABASE IF EXISTS perf_history_mysql", admin=True)
    mariadb.execute("CREATE DATABASE perf_history_mysql", admin=True)
    url = (
        f"mysql+pymysql://{mariadb.admin_user}:{mariadb.admin_password}"
        f"@{mariadb.host}:{mariadb.port}/perf_history_mysql"
    )
    seen: list[str] = []

    def creates() -> list[str]:
        return [sql for sql in seen if "CREATE INDEX" in sql]

    real_engine = History._engine

    def listened(url: str) -> sa.engine.Engine:
        engine = real_engine(url)
        sa.event.listen(engine, "before_cursor_execute", lambda c, cur, sql, *a: seen.append(sql))
        return engine

    monkeypatch.setattr(History, "_engine", staticmethod(listened))
    # What the history does when SQLAlchemy says the server is Oracle MySQL.
    monkeypatch.setattr(history_module, "_index_if_not_exists", lambda dialect: False)
    with History(url) as history:  # a new history: its tables, then the index
        (create,) = creates()
        assert "IF NOT EXISTS" not in create
    with History(url) as history:  # the index is there: looked up, not made again
        assert len(creates()) == 1

        # A first writer made it between our look and our CREATE: its "duplicate
        # key name" (1061) means done.
        class Blind:
            def get_indexes(self, table: str) -> list[dict[str, str]]:
                return []

        monkeypatch.setattr(history_module.sa, "inspect", lambda conn: Blind())
        history._create_index()
        assert len(creates()) == 2
    monkeypatch.undo()
    rows = mariadb.query(
        "SELECT COUNT(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = 'perf_history_mysql' AND INDEX_NAME = 'perfsuite_points_run'",
        admin=True,
    )
    assert rows == [(1,)]


def test_which_databases_take_create_index_if_not_exists() -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    from perfsuite.store.history import _index_if_not_exists

    assert not _index_if_not_exists(mysql.dialect())  # Oracle MySQL 5.7 to 9.x
    assert _index_if_not_exists(mysql.dialect(is_mariadb=True))
    assert _index_if_not_exists(sqlite.dialect())
    assert _index_if_not_exists(postgresql.dialect())
