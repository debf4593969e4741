"""The ``process`` provider: a throwaway MariaDB/MySQL from the local binaries.

A fresh datadir under the temp folder, a free port on 127.0.0.1, test-speed
flags; stopped and deleted at the end, also on failure and Ctrl-C.

Locked down, because while a run lasts any local user can reach its port:
random passwords for the admin and the app accounts (root is left on the
server's own unix socket, in a folder only its owner can enter, with a
random password too); ``--secure-file-priv`` inside the run's folder, so
``LOAD DATA INFILE`` and ``INTO OUTFILE`` cannot reach the machine's
files; and under root the server runs as the ``mysql`` account where the
machine has one. Readiness and set-up go through that socket, so another
server that took the chosen port in the meantime is never mistaken for ours.

With ``replicas`` (:mod:`perfsuite.provision.replication`) each replica is
one more such server, with the same accounts and passwords, and the primary
keeps a binary log.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
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
from perfsuite.provision.mysql_binary import Account, Binary, account_for, find_mysqld, initialise
from perfsuite.provision.replication import primary_argv, replica_argv, start_replication
from perfsuite.provision.server import SERVER_OPTIONS, MySQLServer, quote_name
from perfsuite.secrets import register
from perfsuite.signals import note_interrupt

__all__ = ["DATADIR_PREFIX", "find_mysqld", "mysql_process"]

DATADIR_PREFIX = "perfsuite-mysql-"
APP_USER = "perfsuite"
ADMIN_USER = "perfsuite_admin"
# The accounts' host: the server listens on 127.0.0.1 only, and with
# --skip-name-resolve a TCP login from there is matched by this address.
_HOST = "127.0.0.1"


def _socket_dir(workdir: Path) -> Path:
    # A unix socket path may not exceed 107 bytes; a deep TMPDIR (pytest's
    # tmp_path) exceeds that, so the socket then goes to a short folder.
    if len(str(workdir / "mysqld.sock")) <= 100:
        return workdir
    return owned_tempdir("psm-", Path("/tmp"))


def _server_argv(
    binary: Binary,
    workdir: Path,
    socket_dir: Path,
    port: int,
    account: Account,
    *,
    cost: bool = True,
    role: Sequence[str] = ("--skip-log-bin",),
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
        # LOAD DATA INFILE / SELECT ... INTO OUTFILE: only this run's own folder.
        f"--secure-file-priv={workdir / 'files'}",
        *account.argv(),
        # Test speed, not durability: the data is thrown away at the end.
        "--innodb-flush-log-at-trx-commit=0",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=128M",
        "--max-connections=500",
        *(SERVER_OPTIONS if cost else ()),
        *role,  # no binary log, a primary's, or a replica's options
    ]
    if binary.mariadb:
        argv += ["--innodb-doublewrite=0"]
    else:
        argv += ["--innodb-doublewrite=OFF", "--mysqlx=OFF"]
    return argv


def _bind_failed(log: str) -> bool:
    return "Address already in use" in log or "Do you already have another" in log


def _socket_connect(socket: Path) -> pymysql.Connection:
    """Root on the server's own socket, before set-up gives it a password."""
    return pymysql.connect(
        unix_socket=str(socket),
        user="root",
        password="",
        autocommit=True,
        connect_timeout=2,
        read_timeout=60,
        write_timeout=60,
    )


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, workdir: Path, socket: Path, timeout: float
) -> None:
    """Until the server answers on its own socket (never another's port), listening
    on ``port`` (its TCP port is checked to lead to it once the accounts exist)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = tail(workdir / "error.log", 30) or tail(workdir / "server.log", 30)
            if _bind_failed(log):
                raise _PortTaken(port)
            raise MySQLError(f"mysqld exited with code {proc.returncode} at start:\n{log}")
        try:
            conn = _socket_connect(socket)
        except pymysql.MySQLError as exc:
            last = exc
            time.sleep(0.05)
            continue
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@port")
                row = cur.fetchone()
        finally:
            conn.close()
        if row is None or int(row[0]) != port:
            raise _PortTaken(port)
        return
    raise MySQLError(
        f"mysqld did not answer on its socket {socket} within {timeout:.0f} s ({last}):\n"
        f"{tail(workdir / 'error.log', 30)}"
    )


class _PortTaken(MySQLError):
    def __init__(self, port: int) -> None:
        super().__init__(
            f"port 127.0.0.1:{port} is already in use; free it, or set "
            f"[tool.perfsuite] mysql_port = 0 to pick a free port"
        )
        self.port = port


def _check_ours(server: MySQLServer, datadir: Path) -> None:
    """The server on the TCP port is the one we started (its datadir is ours)."""
    try:
        (found,) = server.query("SELECT @@datadir", admin=True)[0]
    except MySQLError as exc:
        raise MySQLError(
            f"another server answers on 127.0.0.1:{server.port}, not the one perfsuite "
            f"started ({exc})"
        ) from exc
    if Path(str(found)).resolve() != datadir.resolve():
        raise MySQLError(
            f"another server answers on 127.0.0.1:{server.port} (its datadir is {found}, "
            f"ours {datadir})"
        )


@dataclass(frozen=True)
class _Passwords:
    admin: str
    app: str
    root: str

    @classmethod
    def new(cls) -> _Passwords:
        made = cls(*(secrets.token_urlsafe(18) for _ in range(3)))
        for password in (made.admin, made.app, made.root):
            register(password)
        return made


def _set_up_accounts(socket: Path, database: str, passwords: _Passwords) -> None:
    """The admin and app accounts over TCP, the database; root left to the socket.

    Every account the initialisation made for TCP or without a name (root@::1,
    root@<hostname>, anonymous users) is dropped: with them, anyone on the
    machine could log in without a password while the run lasts.
    """
    db = quote_name(database)
    conn = _socket_connect(socket)
    try:
        with conn.cursor() as cur:
            # Each server of a primary and its replicas sets up its own accounts.
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
            cur.execute(
                "SELECT User, Host FROM mysql.user "
                "WHERE User = '' OR (User = 'root' AND Host <> 'localhost')"
            )
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (ADMIN_USER, _HOST, passwords.admin))
            cur.execute(
                "GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (ADMIN_USER, _HOST)
            )
            for host in (_HOST, "localhost"):
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (APP_USER, host, passwords.app))
                cur.execute(f"GRANT ALL PRIVILEGES ON {db}.* TO %s@%s", (APP_USER, host))
            cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (passwords.root,))
    except pymysql.MySQLError as exc:
        raise MySQLError(
            f"cannot set up the accounts and the database {database!r}: {exc}"
        ) from exc
    finally:
        conn.close()


@contextlib.contextmanager
def mysql_process(config: MySQLConfig) -> Iterator[MySQLServer]:
    """Start a throwaway server (and its replicas); yield its handle; stop them all
    and delete their files."""
    binary = find_mysqld(config.mysqld)
    quote_name(config.database)  # a bad name fails before a server is started
    if config.port and not port_is_free(config.port):
        raise _PortTaken(config.port)
    replication = config.replication
    if replication.replicas and not binary.mariadb:
        raise MySQLError(
            f"[tool.perfsuite] replicas: the process provider starts replicas with MariaDB "
            f"(its GTIDs); {binary.mysqld} is MySQL"
        )
    passwords = _Passwords.new()
    try:
        with contextlib.ExitStack() as stack:
            role = primary_argv if replication.replicas else (lambda _: ["--skip-log-bin"])
            primary = stack.enter_context(_one_server(binary, config, passwords, role))
            replicas = []
            for index in range(1, replication.replicas + 1):

                def replica(workdir: Path, server_id: int = index + 1) -> list[str]:
                    return replica_argv(workdir, server_id, replication)

                unpinned = replace(config, port=0)  # the given port is the primary's
                replicas.append(
                    stack.enter_context(_one_server(binary, unpinned, passwords, replica))
                )
            if replicas:
                start_replication(primary, replicas, replication, config.startup_timeout)
            yield replace(primary, replicas=tuple(replicas))
    except KeyboardInterrupt:
        note_interrupt()  # the user wants out: a short grace for the servers to stop
        raise


@contextlib.contextmanager
def _one_server(
    binary: Binary,
    config: MySQLConfig,
    passwords: _Passwords,
    role: Callable[[Path], list[str]],
) -> Iterator[MySQLServer]:
    """One server in a datadir of its own, with ``role``'s options (of its folder)."""
    workdir = owned_tempdir(DATADIR_PREFIX)
    socket_dir = _socket_dir(workdir)
    socket = socket_dir / "mysqld.sock"
    proc: subprocess.Popen[bytes] | None = None
    try:
        account = account_for(workdir)
        subs = [workdir / sub for sub in ("tmp", "files", "data")]
        for sub in subs:
            sub.mkdir()
        account.own(workdir, socket_dir, *subs)
        initialise(binary, workdir / "data", workdir / "init.log", account)
        for attempt in range(3):
            port = config.port or free_port()
            argv = _server_argv(
                binary, workdir, socket_dir, port, account, cost=config.cost, role=role(workdir)
            )
            proc = start_process(argv, log_path=workdir / "server.log", run_as=account.ids)
            try:
                _wait_ready(proc, port, workdir, socket, config.startup_timeout)
                break
            except _PortTaken:
                stop_process(proc)
                proc = None
                # A port we picked ourselves was taken in between: pick another.
                if config.port or attempt == 2:
                    raise
        _set_up_accounts(socket, config.database, passwords)
        server = MySQLServer(
            provider="process",
            host=_HOST,
            port=port,
            user=APP_USER,
            password=passwords.app,
            database=config.database,
            admin_user=ADMIN_USER,
            admin_password=passwords.admin,
        )
        _check_ours(server, workdir / "data")
        yield server
    finally:
        stop_and_remove(proc, *{workdir, socket_dir}, timeout=30)
