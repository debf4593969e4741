"""The machine-wide lock of perf work: loads and provisioning never overlap.

Two loads at once on one machine would steal each other's CPU, and so would
a server being initialised or a container being created next to a load:
pytest-xdist workers, parallel sessions and other projects all take this one
lock (``/tmp/perfsuite.lock``) around what is heavy or what measures.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["lock_path", "perf_lock"]

# flock() is per open file: a second open in this process would wait for the
# first. So the process opens the file once and counts nested holders.
_guard = threading.Lock()
_held: dict[str, list[int]] = {}  # path -> [fd, depth]


def lock_path() -> Path:
    """The lock file: one for the machine, whatever the project or its $TMPDIR."""
    shared = Path("/tmp")
    return (shared if shared.is_dir() else Path(tempfile.gettempdir())) / "perfsuite.lock"


@contextlib.contextmanager
def perf_lock() -> Iterator[None]:
    """Hold the machine-wide lock while the block runs.

    Re-entrant within a process (a load inside a test that holds it), not a
    lock between its threads: perfsuite takes it from the main thread only.
    The file stays when released: removing a lock file races with its next
    holder.
    """
    key = str(lock_path())
    with _guard:
        held = _held.get(key)
        if held is not None:
            held[1] += 1
    if held is None:
        # Read-only is enough for flock, and works on a file another user created.
        fd = os.open(key, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts the wait
        except BaseException:
            os.close(fd)
            raise
        with _guard:
            _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _guard:
            held = _held[key]
            held[1] -= 1
            if held[1] == 0:
                del _held[key]
                os.close(held[0])
