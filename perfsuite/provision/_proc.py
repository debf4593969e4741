"""Child processes that never outlive the test run, and loopback ports."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from perfsuite.signals import die_with_parent, stop_grace

__all__ = [
    "free_port",
    "owned_tempdir",
    "port_is_free",
    "start_process",
    "stop_and_remove",
    "stop_process",
    "tail",
]

_OWNER = "owner.pid"


def owned_tempdir(prefix: str, parent: Path | None = None) -> Path:
    """A new temp folder marked with this process's pid.

    A run killed outright (SIGKILL, OOM) cannot delete its folders; its
    children die with it (see die_with_parent). So folders of this prefix
    whose owner is gone are removed here first, by the next run.
    """
    parent = parent or Path(tempfile.gettempdir())
    for stale in parent.glob(f"{prefix}*"):
        try:
            owner = int((stale / _OWNER).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if not psutil.pid_exists(owner):
            shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (path / _OWNER).write_text(str(os.getpid()))
    return path


def start_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout+stderr into ``log_path``.

    The child gets its own session, so the terminal's Ctrl-C reaches only
    pytest, which then stops the child in order (and deletes its files).
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            # Runs in the child between fork and exec (see die_with_parent).
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
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
            shutil.rmtree(folder, ignore_errors=True)


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
