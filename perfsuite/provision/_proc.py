"""Child processes that never outlive the test run, and loopback ports.

Each child carries its run's owner token (:mod:`perfsuite.provision.ownership`),
so that a run killed outright has its processes stopped by the next one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from perfsuite.provision.ownership import (
    OWNER_ENV,
    owned_tempdir,
    owner_token,
    remove_owned,
    sweep_leftovers,
)
from perfsuite.signals import die_with_parent, stop_grace

__all__ = [
    "free_port",
    "owned_tempdir",
    "port_is_free",
    "remove_owned",
    "start_process",
    "stop_and_remove",
    "stop_process",
    "sweep_leftovers",
    "tail",
]


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
