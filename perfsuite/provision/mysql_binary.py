"""The local server binary: finding it, the account it runs as, a fresh datadir."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from perfsuite.errors import MySQLError
from perfsuite.provision._proc import tail

__all__ = ["Account", "Binary", "account_for", "find_mysqld", "initialise"]

# Where distributions put the server binary, beyond PATH (often without /usr/sbin).
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin", "/opt/mysql/bin")


@dataclass(frozen=True)
class Binary:
    """The server binary, whether it is MariaDB, and MariaDB's install-db script."""

    mysqld: str
    mariadb: bool
    install_db: str | None


def find_mysqld(name: str | None) -> Binary:
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
    return Binary(found, mariadb, install_db)


@dataclass(frozen=True)
class Account:
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


def account_for(workdir: Path) -> Account:
    """The ``mysql`` account when we are root, it exists and it can reach ``workdir``."""
    if os.geteuid() != 0:
        return Account(None)
    try:
        entry = pwd.getpwnam("mysql")
    except KeyError:
        return Account(None)
    for parent in workdir.parents:
        try:
            mode = parent.stat()
        except OSError:
            return Account(None)
        # Every folder above must let others through (a pytest tmp_path does not).
        if not mode.st_mode & stat.S_IXOTH and mode.st_uid != entry.pw_uid:
            return Account(None)
    return Account((entry.pw_uid, entry.pw_gid))


def initialise(binary: Binary, datadir: Path, log: Path, account: Account) -> None:
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
