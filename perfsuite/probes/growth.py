"""Counts of the service's process tree, once a second: what leaks when something leaks.

Threads, open file descriptors, and TCP connections (to the MySQL server,
from clients on the service's port, and any in ``CLOSE_WAIT``: the peer
closed, the service never did), summed over the tree, read with psutil.
Sampled from before the load to a moment after it, so that the level
before and after can be compared (:mod:`perfsuite.stats.growth`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import psutil

__all__ = ["COUNTS", "CountSampler", "CountSeries"]

COUNTS = (
    "threads",
    "open_fds",
    "tcp_to_mysql",
    "tcp_from_clients",
    "tcp_close_wait",
)


@dataclass
class CountSeries:
    """Samples: wall-clock stamps and, per count, its values."""

    stamps: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in COUNTS})
    error: str | None = None


class CountSampler:
    """Samples the tree of ``pid`` from a thread, once an ``interval``, until stopped."""

    def __init__(
        self,
        pid: int,
        *,
        mysql_ports: set[int],
        service_ports: set[int],
        interval: float = 1.0,
    ) -> None:
        self.process = psutil.Process(pid)
        self.mysql_ports = mysql_ports
        self.service_ports = service_ports
        self.interval = interval
        self.series = CountSeries()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tree(self) -> list[psutil.Process]:
        procs = [self.process]
        with contextlib.suppress(psutil.Error):
            procs += self.process.children(recursive=True)
        return procs

    def read(self) -> dict[str, float]:
        """The counts now (a process that exits meanwhile counts as nothing)."""
        counts = dict.fromkeys(COUNTS, 0.0)
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                counts["threads"] += proc.num_threads()
                counts["open_fds"] += proc.num_fds()
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_CLOSE_WAIT:
                        counts["tcp_close_wait"] += 1
                    if conn.status != psutil.CONN_ESTABLISHED:
                        continue
                    if conn.raddr and conn.raddr.port in self.mysql_ports:
                        counts["tcp_to_mysql"] += 1
                    elif conn.laddr and conn.laddr.port in self.service_ports:
                        counts["tcp_from_clients"] += 1
        return counts

    def _sample(self) -> None:
        counts = self.read()
        self.series.stamps.append(time.time())
        for name, value in counts.items():
            self.series.values[name].append(value)

    def start(self) -> None:
        """One sample now (the level before the load), then once an interval."""
        self._sample()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self._sample()
                except psutil.Error as exc:  # the service is gone: keep what we have
                    self.series.error = f"{type(exc).__name__}: {exc}"
                    return

        self._thread = threading.Thread(target=loop, name="perfsuite-counts", daemon=True)
        self._thread.start()

    def stop(self) -> CountSeries:
        """Stop sampling (one last sample first) and return the series."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.series.error is None:
            with contextlib.suppress(psutil.Error):
                self._sample()
        return self.series
