"""MySQL provisioning against real servers: process, URL, and the auto choice."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import psutil
import pymysql
import pytest

from perfsuite.config import MySQLConfig
from perfsuite.errors import ConfigError, MySQLError
from perfsuite.provision import (
    MySQLServer,
    ProviderChoice,
    choose_provider,
    open_mysql,
    probe_docker,
)
from perfsuite.provision import mysql_process as mysql_process_module
from perfsuite.provision.mysql_binary import account_for, find_mysqld
from perfsuite.provision.mysql_process import DATADIR_PREFIX, mysql_process

from .conftest import SCHEMA, descendants_with

# Each test initialises and starts servers: not next to a load.
pytestmark = pytest.mark.usefixtures("quiet")


def _datadirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{DATADIR_PREFIX}*"))


def test_process_provider_starts_and_removes_everything() -> None:
    before = _datadirs()
    with mysql_process(MySQLConfig(database="shop")) as server:
        (workdir,) = _datadirs() - before
        assert server.provider == "process"
        assert server.host == "127.0.0.1"
        assert server.query("SELECT DATABASE(), CURRENT_USER()") == [
            ("shop", "perfsuite@127.0.0.1")
        ]
        pids = descendants_with(str(workdir))
        assert pids, "the server process should mention its datadir"
        # The test-speed flags are in force: no binary log, relaxed flush.
        flags = dict(server.query("SHOW VARIABLES LIKE 'log_bin'", admin=True))
        assert flags["log_bin"] == "OFF"
        flush = server.query("SELECT @@innodb_flush_log_at_trx_commit", admin=True)
        assert flush == [(0,)]
        # Its temporary files in a folder of its own, not the shared /tmp that
        # others clean: a temporary table on disk lands there.
        ((tmpdir,),) = server.query("SELECT @@tmpdir", admin=True)
        assert Path(tmpdir) == workdir / "tmp"
        with server.connect(admin=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE TEMPORARY TABLE big (x TEXT) ENGINE=Aria")
            cur.execute("INSERT INTO big VALUES (REPEAT('x', 100))")
            assert any((workdir / "tmp").iterdir())
    assert not workdir.exists()
    assert not any(psutil.pid_exists(pid) for pid in pids)


def test_app_user_is_confined_to_its_database(mariadb: MySQLServer) -> None:
    with pytest.raises(MySQLError, match="denied"):
        mariadb.execute("CREATE DATABASE other")


def test_sql_files_are_loaded(tmp_path: Path) -> None:
    extra = tmp_path / "data.sql"
    extra.write_text("INSERT INTO skus (id, name, price_cents, stock) VALUES (1, 'a;b', 5, 9);\n")
    config = MySQLConfig(provider="process", database="orders", sql_files=(SCHEMA, extra))
    choice = ProviderChoice(provider="process", reason="test")
    with open_mysql(config, choice) as server:
        assert server.query("SELECT name FROM skus") == [("a;b",)]
        tables = {row[0] for row in server.query("SHOW TABLES")}
        assert tables == {"users", "skus", "orders", "order_items"}


def test_bad_sql_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE TABLE broken (;\n")
    config = MySQLConfig(provider="process", sql_files=(bad,))
    with (
        pytest.raises(MySQLError, match=r"bad\.sql: SQL failed: .*syntax"),
        open_mysql(config, ProviderChoice(provider="process", reason="test")),
    ):
        pass


def test_url_provider_uses_an_existing_server(mariadb: MySQLServer) -> None:
    user, password = quote(mariadb.admin_user), quote(mariadb.admin_password, safe="")
    admin = f"mysql://{user}:{password}@127.0.0.1:{mariadb.port}/url_provider"
    config = MySQLConfig(provider="url", url=admin, sql_files=(SCHEMA,))
    choice = choose_provider(config, probe_docker)
    assert choice == ProviderChoice(provider="url", reason="a mysql:// URL was given")
    with open_mysql(config, choice) as server:
        assert (server.provider, server.port, server.database) == (
            "url",
            mariadb.port,
            "url_provider",
        )
        assert server.query("SELECT COUNT(*) FROM users") == [(0,)]
    # Nothing is stopped: the server belongs to someone else.
    assert mariadb.query("SELECT 1") == [(1,)]


@pytest.mark.parametrize("name", ["x`; DROP DATABASE mysql; --", "a b", "", "é" * 3])
def test_url_provider_refuses_a_database_name_it_would_not_quote(name: str) -> None:
    with pytest.raises(ConfigError, match=r"not a database or table name|names no database"):
        MySQLServer.from_url(f"mysql://u:p@127.0.0.1:3306/{quote(name)}")


def test_url_passwords_are_masked_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        MySQLServer.from_url("mysql://u:s3cret-pw@127.0.0.1:notaport/db")
    assert "s3cret-pw" not in str(err.value)


def test_process_provider_is_locked_down() -> None:
    with mysql_process(MySQLConfig(database="shop")) as server:
        ((workdir,),) = server.query("SELECT @@datadir", admin=True)
        folder = Path(workdir).parent
        # New random passwords, in no process's arguments (ps shows them to everyone).
        assert len(server.password) >= 20
        assert len(server.admin_password) >= 20
        for proc in psutil.process_iter(["cmdline"]):
            argv = " ".join(proc.info["cmdline"] or [])
            assert server.password not in argv
            assert server.admin_password not in argv
        # No account logs in over TCP without a password: root is left to the socket.
        accounts = set(server.query("SELECT User, Host FROM mysql.user", admin=True))
        assert ("", "localhost") not in accounts
        assert {host for user, host in accounts if user == "root"} <= {"localhost"}
        for user in ("root", "perfsuite", "perfsuite_admin", ""):
            with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
                pymysql.connect(host="127.0.0.1", port=server.port, user=user, password="")
        # The machine's files are out of reach: LOAD DATA only inside the run's folder,
        # and not at all for the app account (it has no FILE privilege).
        ((priv,),) = server.query("SELECT @@secure_file_priv", admin=True)
        assert Path(priv).parent == folder
        server.execute("CREATE TABLE t (line TEXT)", admin=True)
        with pytest.raises(MySQLError, match="secure-file-priv"):
            server.execute("LOAD DATA INFILE '/etc/passwd' INTO TABLE t", admin=True)
        with pytest.raises(MySQLError, match="Access denied"):
            server.execute("LOAD DATA INFILE '/etc/passwd' INTO TABLE t")
        with pytest.raises(MySQLError, match="secure-file-priv"):
            server.execute("SELECT 1 INTO OUTFILE '/tmp/perfsuite-outfile'", admin=True)
        # Under root, the server runs as the `mysql` account where it can.
        flag = f"--datadir={workdir.rstrip('/')}"
        (mysqld,) = [
            p for p in psutil.process_iter(["cmdline"]) if flag in (p.info["cmdline"] or [])
        ]
        if os.geteuid() == 0 and account_for(folder).ids is not None:
            assert mysqld.username() == "mysql"
        else:
            assert mysqld.username() == psutil.Process().username()


def test_a_server_that_took_the_chosen_port_is_never_mistaken_for_ours(
    mariadb: MySQLServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race: a port is chosen free, and another server binds it before ours does.
    ports = iter([mariadb.port])
    real = mysql_process_module.free_port
    monkeypatch.setattr(mysql_process_module, "free_port", lambda: next(ports, None) or real())
    with mysql_process(MySQLConfig(database="mine")) as server:
        assert server.port != mariadb.port
        ((datadir,),) = server.query("SELECT @@datadir", admin=True)
        assert DATADIR_PREFIX in datadir
    # Nothing of this run went to the other server.
    assert ("mine",) not in mariadb.query("SHOW DATABASES", admin=True)


def test_a_port_that_leads_to_another_server_is_refused(mariadb: MySQLServer) -> None:
    with pytest.raises(MySQLError, match=r"another server answers on 127\.0\.0\.1"):
        mysql_process_module._check_ours(mariadb, Path("/nonexistent/datadir"))


def test_url_provider_reports_a_dead_server() -> None:
    port = _closed_port()
    config = MySQLConfig(provider="url", url=f"mysql://u:p@127.0.0.1:{port}/db")
    with (
        pytest.raises(MySQLError, match=f"cannot connect to MySQL at 127.0.0.1:{port}"),
        open_mysql(config, ProviderChoice(provider="url", reason="test")),
    ):
        pass


def test_taken_port_is_one_clear_message() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with (
            pytest.raises(MySQLError, match=f"port 127.0.0.1:{port} is already in use"),
            mysql_process(MySQLConfig(port=port)),
        ):
            pass


def test_missing_binary_is_one_clear_message() -> None:
    with pytest.raises(MySQLError, match=r"no MySQL server binary found \(no-such-mysqld"):
        find_mysqld("no-such-mysqld")


def test_stale_datadir_of_a_dead_run_is_removed() -> None:
    stale = Path(tempfile.mkdtemp(prefix=DATADIR_PREFIX))
    dead = psutil.Popen(["true"])
    dead.wait()
    (stale / "owner.pid").write_text(str(dead.pid))
    with mysql_process(MySQLConfig()):
        assert not stale.exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- auto: a container when a Docker engine answers, else a local process ----


class _FakeEngine(BaseHTTPRequestHandler):
    """Answers the two calls the probe makes, as a Docker engine does."""

    def do_GET(self) -> None:
        if self.path.endswith("/_ping"):
            body, kind = b"OK", "text/plain"
        else:
            body = json.dumps({"Version": "27.0-fake", "ApiVersion": "1.45"}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "docker.sock"
    server = _UnixHTTPServer(str(path), _FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{path}"
    server.shutdown()
    server.server_close()


def test_auto_takes_a_container_when_docker_answers(
    engine_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine_socket)
    choice = choose_provider(MySQLConfig(), probe_docker)
    assert choice.provider == "container"
    assert choice.fallback
    assert choice.reason == f"auto: Docker 27.0-fake answered at {engine_socket}"


def test_auto_takes_a_process_without_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    choice = choose_provider(MySQLConfig(), probe_docker)
    assert choice.provider == "process"
    assert "no Docker engine" in choice.reason


def test_auto_takes_a_process_when_the_socket_is_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # exists, but nobody accepts: connection refused
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    choice = choose_provider(MySQLConfig(), probe_docker)
    assert choice.provider == "process"
    assert choice.reason.startswith(f"auto: no Docker engine answered at unix://{path}")


def test_auto_falls_back_to_a_process_when_the_container_fails(
    engine_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake engine answers pings but cannot create networks or containers,
    # like an engine that cannot pull the image: auto must still give a server.
    monkeypatch.setenv("DOCKER_HOST", engine_socket)
    config = MySQLConfig(database="fallback")
    choice = choose_provider(config, probe_docker)
    with contextlib.ExitStack() as stack:
        with pytest.warns(UserWarning, match="falling back to a local MySQL process"):
            server = stack.enter_context(open_mysql(config, choice, network=object()))
        assert server.provider == "process"
        assert server.query("SELECT DATABASE()") == [("fallback",)]


def test_explicit_container_does_not_fall_back(
    engine_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perfsuite.errors import DockerError

    monkeypatch.setenv("DOCKER_HOST", engine_socket)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    config = MySQLConfig(provider="container")
    choice = choose_provider(config, probe_docker)
    with (
        pytest.raises(DockerError, match=r"cannot start the MySQL container mysql:8\.4"),
        open_mysql(config, choice, network=object()),
    ):
        pass
