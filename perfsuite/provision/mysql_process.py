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
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import stat
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


@dataclass(frozen=True)
class _Account:
    """Who the server runs as: a (uid, gid) to drop to, or None to stay."""

    ids: tuple[int, int] | None

    def argv(self) -> list[str]:
        # mysqld refuses to run as root unless told to; a root CI with no
        # `mysql` account keeps it as root (still behind passwords and
        # --secure-file-priv).
        return ["--user=root"] if self.ids is None and os.geteuid() == 0 else []

    @property
    def uid(self) -> int | None:
        """The uid to switch to (None: stay)."""
        return self.ids[0] if self.ids else None

    @property
    def gid(self) -> int | None:
        """The gid to switch to (None: stay)."""
        return self.ids[1] if self.ids else None

    def own(self, *paths: Path) -> None:
        """Give ``paths`` to the server's account."""
        if self.ids is not None:
            for path in paths:
                os.chown(path, *self.ids)


def _account(workdir: Path) -> _Account:
    """The ``mysql`` account when we are root, it exists and it can reach ``workdir``."""
    if os.geteuid() != 0:
        return _Account(None)
    try:
        entry = pwd.getpwnam("mysql")
    except KeyError:
        return _Account(None)
    for parent in workdir.parents:
        try:
            mode = parent.stat()
        except OSError:
            return _Account(None)
        # Every folder above must let others through (a pytest tmp_path does not).
        if not mode.st_mode & stat.S_IXOTH and mode.st_uid != entry.pw_uid:
            return _Account(None)
    return _Account((entry.pw_uid, entry.pw_gid))


def _initialise(binary: _Binary, datadir: Path, log: Path, account: _Account) -> None:
    if binary.mariadb:
        assert binary.install_db is not None
        argv = [
            binary.install_db,
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *account.argv(),
        ]
    else:
        argv = [
            binary.mysqld,
            "--no-defaults",
            "--initialize-insecure",
            f"--datadir={datadir}",
            *account.argv(),
        ]
    with log.open("ab") as fh:
        try:
            result = subprocess.run(
                argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
                user=account.uid,
                group=account.gid,
                extra_groups=None if account.ids is None else [],
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
    binary: _Binary,
    workdir: Path,
    socket_dir: Path,
    port: int,
    account: _Account,
    *,
    cost: bool = True,
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
    """Start a throwaway server; yield its handle; stop it and delete its files."""
    binary = find_mysqld(config.mysqld)
    quote_name(config.database)  # a bad name fails before a server is started
    if config.port and not port_is_free(config.port):
        raise _PortTaken(config.port)
    workdir = owned_tempdir(DATADIR_PREFIX)
    socket_dir = _socket_dir(workdir)
    socket = socket_dir / "mysqld.sock"
    proc: subprocess.Popen[bytes] | None = None
    try:
        account = _account(workdir)
        subs = [workdir / sub for sub in ("tmp", "files", "data")]
        for sub in subs:
            sub.mkdir()
        account.own(workdir, socket_dir, *subs)
        _initialise(binary, workdir / "data", workdir / "init.log", account)
        for attempt in range(3):
            port = config.port or free_port()
            proc = start_process(
                _server_argv(binary, workdir, socket_dir, port, account, cost=config.cost),
                log_path=workdir / "server.log",
                run_as=account.ids,
            )
            try:
                _wait_ready(proc, port, workdir, socket, config.startup_timeout)
                break
            except _PortTaken:
                stop_process(proc)
                proc = None
                # A port we picked ourselves was taken in between: pick another.
                if config.port or attempt == 2:
                    raise
        passwords = _Passwords.new()
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
    except KeyboardInterrupt:
        note_interrupt()  # the user wants out: a short grace for the server to stop
        raise
    finally:
        stop_and_remove(proc, *{workdir, socket_dir}, timeout=30)
