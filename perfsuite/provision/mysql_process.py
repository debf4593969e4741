"""The ``process`` provider: a throwaway MariaDB/MySQL from the local binaries.

A fresh datadir under the temp folder, a free port on 127.0.0.1, test-speed
flags; stopped and deleted at the end, also on failure and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql

from perfsuite.config import MySQLConfig
from perfsuite.errors import MySQLError
from perfsuite.provision._proc import (
    free_port,
    owned_tempdir,
    port_is_free,
    start_process,
    stop_and_remove,
    stop_process,
    tail,
)
from perfsuite.provision.server import SERVER_OPTIONS, MySQLServer
from perfsuite.signals import note_interrupt

__all__ = ["DATADIR_PREFIX", "find_mysqld", "mysql_process"]

DATADIR_PREFIX = "perfsuite-mysql-"
APP_USER = "perfsuite"
APP_PASSWORD = "perfsuite"
# Where distributions put the server binary, beyond PATH (often without /usr/sbin).
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin", "/opt/mysql/bin")


@dataclass(frozen=True)
class _Binary:
    mysqld: str
    mariadb: bool
    install_db: str | None


def find_mysqld(name: str | None) -> _Binary:
    """Find the server binary (and, for MariaDB, its install-db script)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    candidates = [name] if name else ["mariadbd", "mysqld"]
    found = next((p for c in candidates if (p := shutil.which(c, path=search))), None)
    if found is None:
        wanted = name or "mariadbd or mysqld"
        raise MySQLError(
            f"no MySQL server binary found ({wanted}, looked on PATH and in "
            f"{', '.join(_EXTRA_DIRS)}); install mariadb-server, set [tool.perfsuite] mysqld, "
            f"or use --perf-mysql=container / a mysql:// URL"
        )
    try:
        version = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise MySQLError(f"cannot run {found} --version: {exc}") from exc
    mariadb = "mariadb" in version.lower()
    install_db = None
    if mariadb:
        install_db = shutil.which("mariadb-install-db", path=search) or shutil.which(
            "mysql_install_db", path=search
        )
        if install_db is None:
            raise MySQLError(f"{found} is MariaDB but mariadb-install-db was not found")
    return _Binary(found, mariadb, install_db)


def _user_args() -> list[str]:
    # mysqld refuses to run as root unless told to; CI runs as root.
    return ["--user=root"] if os.geteuid() == 0 else []


def _initialise(binary: _Binary, datadir: Path, log: Path) -> None:
    if binary.mariadb:
        assert binary.install_db is not None
        argv = [
            binary.install_db,
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *_user_args(),
        ]
    else:
        argv = [
            binary.mysqld,
            "--no-defaults",
            "--initialize-insecure",
            f"--datadir={datadir}",
            *_user_args(),
        ]
    with log.open("ab") as fh:
        try:
            result = subprocess.run(
                argv, stdout=fh, stderr=subprocess.STDOUT, timeout=120, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise MySQLError(f"cannot initialise a datadir with {argv[0]}: {exc}") from exc
    if result.returncode != 0:
        raise MySQLError(
            f"{Path(argv[0]).name} failed with exit code {result.returncode}:\n{tail(log)}"
        )


def _socket_dir(workdir: Path) -> Path:
    # A unix socket path may not exceed 107 bytes; a deep TMPDIR (pytest's
    # tmp_path) exceeds that, so the socket then goes to a short folder.
    if len(str(workdir / "mysqld.sock")) <= 100:
        return workdir
    return owned_tempdir("psm-", Path("/tmp"))


def _server_argv(
    binary: _Binary, workdir: Path, socket_dir: Path, port: int, *, cost: bool = True
) -> list[str]:
    argv = [
        binary.mysqld,
        "--no-defaults",
        f"--datadir={workdir / 'data'}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={socket_dir / 'mysqld.sock'}",
        f"--pid-file={workdir / 'mysqld.pid'}",
        f"--log-error={workdir / 'error.log'}",
        # Temporary tables and sort files in a folder of its own: the shared
        # /tmp is cleaned by others (a file removed under a running server
        # fails its queries with "Error on delete of '/tmp/#sql-temptable...'").
        f"--tmpdir={workdir / 'tmp'}",
        *_user_args(),
        # Test speed, not durability: the data is thrown away at the end.
        "--skip-log-bin",
        "--innodb-flush-log-at-trx-commit=0",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=128M",
        "--max-connections=500",
        *(SERVER_OPTIONS if cost else ()),
    ]
    if binary.mariadb:
        argv += ["--innodb-doublewrite=0"]
    else:
        argv += ["--innodb-doublewrite=OFF", "--mysqlx=OFF"]
    return argv


def _bind_failed(log: str) -> bool:
    return "Address already in use" in log or "Do you already have another" in log


def _wait_ready(proc: subprocess.Popen[bytes], port: int, workdir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = tail(workdir / "error.log", 30) or tail(workdir / "server.log", 30)
            if _bind_failed(log):
                raise _PortTaken(port)
            raise MySQLError(f"mysqld exited with code {proc.returncode} at start:\n{log}")
        try:
            pymysql.connect(
                host="127.0.0.1", port=port, user="root", password="", connect_timeout=1
            ).close()
            return
        except pymysql.MySQLError as exc:
            last = exc
            time.sleep(0.05)
    raise MySQLError(
        f"mysqld did not answer on 127.0.0.1:{port} within {timeout:.0f} s ({last}):\n"
        f"{tail(workdir / 'error.log', 30)}"
    )


class _PortTaken(MySQLError):
    def __init__(self, port: int) -> None:
        super().__init__(
            f"port 127.0.0.1:{port} is already in use; free it, or set "
            f"[tool.perfsuite] mysql_port = 0 to pick a free port"
        )
        self.port = port


def _create_app_account(port: int, database: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            for host in ("%", "localhost", "127.0.0.1"):
                cur.execute(
                    f"CREATE USER IF NOT EXISTS '{APP_USER}'@'{host}' "
                    f"IDENTIFIED BY '{APP_PASSWORD}'"
                )
                cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{APP_USER}'@'{host}'")
    except pymysql.MySQLError as exc:
        raise MySQLError(f"cannot create the database {database!r}: {exc}") from exc
    finally:
        conn.close()


@contextlib.contextmanager
def mysql_process(config: MySQLConfig) -> Iterator[MySQLServer]:
    """Start a throwaway server; yield its handle; stop it and delete its files."""
    binary = find_mysqld(config.mysqld)
    if config.port and not port_is_free(config.port):
        raise _PortTaken(config.port)
    workdir = owned_tempdir(DATADIR_PREFIX)
    socket_dir = _socket_dir(workdir)
    proc: subprocess.Popen[bytes] | None = None
    try:
        (workdir / "tmp").mkdir()
        _initialise(binary, workdir / "data", workdir / "init.log")
        for attempt in range(3):
            port = config.port or free_port()
            proc = start_process(
                _server_argv(binary, workdir, socket_dir, port, cost=config.cost),
                log_path=workdir / "server.log",
            )
            try:
                _wait_ready(proc, port, workdir, config.startup_timeout)
                break
            except _PortTaken:
                stop_process(proc)
                proc = None
                # A port we picked ourselves was taken in between: pick another.
                if config.port or attempt == 2:
                    raise
        _create_app_account(port, config.database)
        yield MySQLServer(
            provider="process",
            host="127.0.0.1",
            port=port,
            user=APP_USER,
            password=APP_PASSWORD,
            database=config.database,
            admin_user="root",
            admin_password="",
        )
    except KeyboardInterrupt:
        note_interrupt()  # the user wants out: a short grace for the server to stop
        raise
    finally:
        stop_and_remove(proc, *{workdir, socket_dir}, timeout=30)
