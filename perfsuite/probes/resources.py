"""The service's CPU and memory during the load, sampled once a second (psutil).

CPU is in percent of one core (as ``top`` shows it), summed over the process
and its children; memory is the resident set size in MiB.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import psutil

__all__ = ["ResourceSampler", "ResourceSeries"]


@dataclass(kw_only=True)
class ResourceSeries:
    """Samples: seconds since the start, CPU % of one core, RSS MiB."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, list[float]]:
        """JSON-ready data (for run records)."""
        return {
            "seconds": [round(x, 3) for x in self.seconds],
            "cpu_percent": [round(x, 2) for x in self.cpu],
            "rss_mib": [round(x, 3) for x in self.rss_mib],
        }


class ResourceSampler:
    """Samples a local process tree from a thread until stopped."""

    def __init__(self, pid: int, *, interval: float = 1.0) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.series = ResourceSeries()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, psutil.Process] = {}

    def _tree(self) -> list[psutil.Process]:
        procs = [self.process]
        with contextlib.suppress(psutil.Error):
            procs += self.process.children(recursive=True)
        # cpu_percent needs the same Process object across calls.
        return [self._procs.setdefault(p.pid, p) for p in procs]

    def _sample(self, t0: float) -> None:
        cpu = rss = 0.0
        for proc in self._tree():
            try:
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
        self.series.seconds.append(time.monotonic() - t0)
        self.series.cpu.append(cpu)
        self.series.rss_mib.append(rss)

    def start(self) -> None:
        """Prime the CPU counters and start sampling."""
        for proc in self._tree():
            try:
                proc.cpu_percent(None)
            except psutil.Error:
                continue
        t0 = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self._sample(t0)

        self._thread = threading.Thread(target=loop, name="perfsuite-resources", daemon=True)
        self._thread.start()

    def stop(self) -> ResourceSeries:
        """Stop sampling and return the series."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.series
