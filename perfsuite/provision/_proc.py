"""Child processes that never outlive the test run, and loopback ports.

Every folder perfsuite makes is *owned*: an ``owner.lock`` in it stays
locked (``flock``) while the process that made it lives, and names that
process's owner token. Every process perfsuite starts carries the token in
its environment (``PERFSUITE_OWNER``), its children too. A run killed
outright (SIGKILL, OOM) runs no finaliser; the next run finds its folders
unlocked, stops every process that still carries their token, and removes
them. A lock, unlike a pid file, cannot be fooled by a reused pid.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from perfsuite.signals import die_with_parent, stop_grace

__all__ = [
    "OWNER_ENV",
    "free_port",
    "owned_tempdir",
    "port_is_free",
    "start_process",
    "stop_and_remove",
    "stop_process",
    "sweep_leftovers",
    "tail",
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
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None  # its owner is alive
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
    tmp = Path(tempfile.gettempdir())
    for prefix, parent in KNOWN_PREFIXES:
        _PREFIXES.setdefault(prefix, set()).add(parent or tmp)
    for prefix, parents in list(_PREFIXES.items()):
        for folder in list(parents):
            _sweep(prefix, folder)


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


def remove_owned(path: Path) -> None:
    """Remove an owned folder and let go of its lock."""
    shutil.rmtree(path, ignore_errors=True)
    _release(path)


def start_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    run_as: tuple[int, int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout+stderr into ``log_path`` (as ``run_as`` (uid, gid) if given).

    The child gets its own session (and process group), so the terminal's
    Ctrl-C reaches only pytest, which then stops the child's whole group in
    order (and deletes its files). It carries this run's owner token.
    """
    # user/group are set before preexec_fn runs: the death signal is asked for
    # after the switch (a change of user clears it).
    uid, gid = run_as if run_as is not None else (None, None)
    child_env = {**(os.environ if env is None else env), OWNER_ENV: owner_token()}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            # Runs in the child between fork and exec (see die_with_parent).
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
            user=uid,
            group=gid,
            extra_groups=None if run_as is None else [],
        )


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> int | None:
    """SIGTERM, wait, then SIGKILL; also kill what the child left in its session.

    After Ctrl-C the wait is short (:func:`~perfsuite.signals.stop_grace`): a
    service whose shutdown waits for leaked connections would hold the
    terminal for the whole ``timeout``.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=stop_grace(timeout))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=timeout)
    # Grandchildren (a shell's children, uvicorn workers) share the session id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def stop_and_remove(
    proc: subprocess.Popen[bytes] | None, *folders: Path, timeout: float = 10.0
) -> None:
    """Stop ``proc`` (if started), then remove ``folders``, even if a Ctrl-C cuts the stop short.

    (The process itself cannot outlive pytest: it dies with it.)
    """
    try:
        if proc is not None:
            stop_process(proc, timeout=timeout)
    finally:
        for folder in folders:
            remove_owned(folder)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port in TIME_WAIT is free for a server; only a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
