"""Owned folders, and the processes and containers of runs killed outright.

Every folder perfsuite makes is *owned*: an ``owner.lock`` in it stays
locked (``flock``) while the process that made it lives, and names that
process's owner token. Every process perfsuite starts carries the token in
its environment (``PERFSUITE_OWNER``), its children too. A run killed
outright (SIGKILL, OOM) runs no finaliser; the next run finds its folders
unlocked, stops every process that still carries their token, and removes
them. A lock, unlike a pid file, cannot be fooled by a reused pid. What a
folder cannot hold (a container, a Docker network) carries the token as a
label, and is a dead run's when no folder with that token is locked
(:func:`owner_alive`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

__all__ = [
    "KNOWN_PREFIXES",
    "OWNER_ENV",
    "owned_tempdir",
    "owner_alive",
    "owner_mark",
    "owner_token",
    "remove_owned",
    "sweep_leftovers",
]

OWNER_ENV = "PERFSUITE_OWNER"
_LOCK = "owner.lock"
_LEGACY_PID = "owner.pid"  # perfsuite before the lock: a pid, fooled by pid reuse
# A folder with no lock file yet is being made, unless it is this old (its maker died).
_UNLOCKED_GRACE = 60.0
# Every prefix of folder perfsuite makes, and where (None: the temp folder): swept
# at a run's first folder. (The constants live with their makers; a test checks.)
KNOWN_PREFIXES: tuple[tuple[str, Path | None], ...] = (
    ("perfsuite-mysql-", None),
    ("perfsuite-service-", None),
    ("perfsuite-ab-", None),
    ("perfsuite-cli-", None),
    # Fixed, not the temp folder: runs with different TMPDIRs share one Docker engine.
    ("perfsuite-docker-", Path("/tmp")),
    ("psm-", Path("/tmp")),
)
_PREFIXES: dict[str, set[Path]] = {}
_swept = False
_held: dict[Path, int] = {}  # our folders -> their locked file descriptor
_token = ""
_token_pid = 0


def owner_token() -> str:
    """This process's owner token (a new one in a forked child)."""
    global _token, _token_pid
    if _token_pid != os.getpid():
        _token, _token_pid = f"{os.getpid()}-{secrets.token_hex(8)}", os.getpid()
    return _token


def _lock(path: Path) -> None:
    fd = os.open(path / _LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, owner_token().encode())
    _held[path] = fd


def _release(path: Path) -> None:
    fd = _held.pop(path, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _stale_token(folder: Path) -> str | None:
    """The owner token of ``folder`` if its owner is gone ('' when it had none), else None.

    On success the caller holds the folder's lock until it is removed, so two
    sweepers never remove one folder while a third reuses it.
    """
    if folder in _held:
        return None
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return _legacy_stale(folder)
    except OSError:
        return None  # not ours to judge (another user's)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # its owner is alive (it holds the lock)
        os.close(fd)
        return None
    _held[folder] = fd
    try:
        return os.read(fd, 200).decode(errors="replace").strip()
    except OSError:
        return ""


def _legacy_stale(folder: Path) -> str | None:
    try:
        owner = int((folder / _LEGACY_PID).read_text())
    except (OSError, ValueError):
        try:  # no mark at all: being made, or its maker died before marking it
            age = time.time() - folder.stat().st_mtime
        except OSError:
            return None
        return "" if age > _UNLOCKED_GRACE else None
    return None if psutil.pid_exists(owner) else ""


def _kill_token(token: str) -> None:
    """SIGKILL every process whose environment carries ``token`` (a dead run's)."""
    if not token or token == owner_token():
        return
    mark = f"{OWNER_ENV}={token}".encode()
    for proc in psutil.process_iter(["pid"]):
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                found = mark in fh.read().split(b"\0")
        except OSError:
            continue
        if found:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)


def _sweep(prefix: str, parent: Path) -> None:
    for folder in parent.glob(f"{prefix}*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        token = _stale_token(folder)
        if token is None:
            continue
        _kill_token(token)
        shutil.rmtree(folder, ignore_errors=True)
        _release(folder)


def sweep_leftovers() -> None:
    """Stop and remove what runs killed outright left (every kind of folder, and
    every process of theirs)."""
    global _swept
    _swept = True
    for prefix, parent in _places():
        _sweep(prefix, parent)


def _places() -> list[tuple[str, Path]]:
    """Every (prefix, parent folder) where owned folders may be: the known kinds, and
    wherever this run made some."""
    tmp = Path(tempfile.gettempdir())
    places = {(prefix, parent or tmp) for prefix, parent in KNOWN_PREFIXES}
    places |= {(prefix, parent) for prefix, parents in _PREFIXES.items() for parent in parents}
    return sorted(places)


def owned_tempdir(prefix: str, parent: Path | None = None) -> Path:
    """A new temp folder, locked by this process for as long as it lives.

    Folders of this prefix whose owner is gone are removed first, and the
    processes of that owner stopped (see the module's docstring).
    """
    parent = parent or Path(tempfile.gettempdir())
    _PREFIXES.setdefault(prefix, set()).add(parent)
    if not _swept:
        sweep_leftovers()  # once a run: every kind of leftover, not just this prefix's
    _sweep(prefix, parent)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    _lock(path)
    return path


def owner_alive(token: str) -> bool:
    """Whether the run that carries ``token`` lives: one of its folders is locked.

    For what a folder cannot hold (a container, a network): they carry the
    token as a label, and are the leftovers of a dead run when this is False.
    """
    if token == owner_token():
        return True
    for prefix, parent in _places():
        for folder in parent.glob(f"{prefix}*"):
            try:
                fd = os.open(folder / _LOCK, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if os.read(fd, 200).decode(errors="replace").strip() != token:
                    continue
                try:  # a shared lock is refused while the owner holds its own
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    return True
            finally:
                os.close(fd)  # lets go of a shared lock we got
    return False


_marks: list[Path] = []
_mark_users = 0


@contextlib.contextmanager
def owner_mark() -> Iterator[str]:
    """While the block runs, this run is known to live (a locked folder of its own);
    yields its token, for what carries it as a label."""
    global _mark_users
    if not _marks:
        _marks.append(owned_tempdir("perfsuite-docker-", Path("/tmp")))
    _mark_users += 1
    try:
        yield owner_token()
    finally:
        _mark_users -= 1
        if _mark_users == 0 and _marks:
            remove_owned(_marks.pop())


def remove_owned(path: Path) -> None:
    """Remove an owned folder and let go of its lock."""
    shutil.rmtree(path, ignore_errors=True)
    _release(path)
