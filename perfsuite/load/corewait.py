"""How long the generator waited for a core: the part of a late timer that is not its own fault."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["CoreWait"]

_PSI = "/proc/pressure/cpu"


class CoreWait:
    """Nanoseconds the calling thread has spent runnable but not running.

    Linux counts them in ``/proc/self/task/<tid>/schedstat`` (its second
    field, the run-queue delay). A timer that wakes 300 ms late because
    another process had both cores is the machine's delay, not a loop held
    up by the generator's own code; subtracting this wait tells them apart.

    Some kernels keep no schedstats (a Firecracker guest's 6.18 kernel, as on
    our CI: every field reads 0). There the CPU pressure stall information
    stands in: ``/proc/pressure/cpu``'s "some" total, the time at least one
    task of the machine waited for a core. It bounds this thread's own wait
    from above (the thread is one of those tasks), so a late wake-up on a
    contended machine is not blamed on the loop, while on an idle machine
    (no pressure) a held-up loop still shows. Where neither exists, it reads
    0 and every late timer counts as held up.
    """

    def __init__(self, sources: tuple[str, ...] = ("schedstat", "pressure")) -> None:
        # Opened once and read with pread (about 1 us; 3 us for the pressure file):
        # it is read on every open-model tick. ``sources``: in order of preference
        # (a test leaves out "schedstat" to stand for a kernel without it).
        self._fd: int | None = None
        self.source = "none"
        for source in sources:
            if source not in ("schedstat", "pressure"):
                raise ValueError(f"unknown source of the core wait: {source!r}")
            path = _PSI if source == "pressure" else _schedstat()
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            # A kernel without schedstats gives zeros; one booted without PSI refuses the read.
            works = _pressure_ns(fd) is not None if source == "pressure" else _counts(fd)
            if works:
                self._fd, self.source = fd, source
                return
            os.close(fd)

    @property
    def available(self) -> bool:
        """Is any wait accounted (the thread's own, or the machine's CPU pressure)?"""
        return self._fd is not None

    def ns(self) -> int:
        """The wait so far (ns), 0 where unknown."""
        if self._fd is None:
            return 0
        if self.source == "pressure":
            return _pressure_ns(self._fd) or 0
        try:
            return int(os.pread(self._fd, 128, 0).split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def lap(self) -> Callable[[], int]:
        """A stopwatch of the wait: each call gives the wait (ns) since the one before
        (the first, since the lap began). One per timer that is judged for lateness."""
        last = self.ns()

        def since() -> int:
            nonlocal last
            now = self.ns()
            waited, last = now - last, now
            return waited

        return since

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _schedstat() -> str:
    return f"/proc/self/task/{threading.get_native_id()}/schedstat"


def _counts(fd: int) -> bool:
    """Does this kernel account the thread's time (its run time so far above 0)?"""
    try:
        return int(os.pread(fd, 128, 0).split()[0]) > 0
    except (OSError, IndexError, ValueError):
        return False


def _pressure_ns(fd: int) -> int | None:
    """The CPU pressure file's "some" total (ns), None where it cannot be read."""
    try:
        # "some avg10=0.12 avg60=0.19 avg300=0.05 total=9330669\nfull ...": in us
        raw = os.pread(fd, 256, 0)
        start = raw.index(b"total=") + 6
        return int(raw[start : raw.index(b"\n", start)]) * 1000
    except (OSError, ValueError):
        return None
