"""How long the generator waited for a core: the part of a late timer that is not its own fault."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["CoreWait"]


class CoreWait:
    """Nanoseconds the calling thread has spent runnable but not running.

    Linux counts them in ``/proc/self/task/<tid>/schedstat`` (its second
    field, the run-queue delay). A timer that wakes 300 ms late because
    another process had both cores is the machine's delay, not a loop held
    up by the generator's own code; subtracting this wait tells them apart.
    Where the file is missing (not Linux, or no schedstats), it reads 0 and
    every late timer counts as held up, as before.
    """

    def __init__(self) -> None:
        # Opened once and read with pread (about 1 us): it is read on every open-model tick.
        try:
            self._fd: int | None = os.open(
                f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY
            )
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        """Does this kernel account the thread's time? Some do not (no schedstats, as
        a Firecracker guest's 6.18 kernel here: every field reads 0); then nothing is
        subtracted and a machine that did not run the generator looks like its lag."""
        if self._fd is None:
            return False
        try:
            return int(os.pread(self._fd, 128, 0).split()[0]) > 0  # its run time so far
        except (OSError, IndexError, ValueError):
            return False

    def ns(self) -> int:
        """The thread's run-queue delay so far (ns), 0 where unknown."""
        if self._fd is None:
            return 0
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
