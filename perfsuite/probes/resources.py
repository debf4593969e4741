"""The service's CPU and memory during the load, sampled once a second (psutil).

CPU is in percent of one core (as ``top`` shows it), summed over the process
and its children; memory is the resident set size in MiB.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import psutil

from perfsuite.errors import PerfsuiteWarning

__all__ = ["DockerStatsSampler", "ResourceSampler", "ResourceSeries"]


@dataclass(kw_only=True)
class ResourceSeries:
    """Samples: seconds since the start, CPU % of one core, RSS MiB."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    # CPU time (user + system) the service spent from start to stop, all of it,
    # not the samples' sum: the numerator of CPU per request.
    cpu_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready data (for run records)."""
        return {
            "seconds": [round(x, 3) for x in self.seconds],
            "cpu_percent": [round(x, 2) for x in self.cpu],
            "rss_mib": [round(x, 3) for x in self.rss_mib],
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 4),
        }


class _Sampler:
    """Calls ``_sample`` once an interval from a thread until stopped."""

    name = "perfsuite-resources"

    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self.series = ResourceSeries()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _prime(self, t0: float) -> None:
        """Read the counters once, so that the first sample has a delta."""

    def _sample(self, t0: float) -> None:
        raise NotImplementedError

    def _cpu_seconds(self) -> float | None:
        """CPU seconds used since :meth:`start` (None when it cannot be read)."""
        return None

    def start(self) -> None:
        """Prime the CPU counters and start sampling."""
        t0 = time.monotonic()
        self._prime(t0)

        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self._sample(t0)
                except Exception as exc:  # the target went away: keep what we have
                    self.error = exc
                    return

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> ResourceSeries:
        """Stop sampling and return the series."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.series.cpu_seconds = self._cpu_seconds()
        except Exception as exc:  # the target went away
            self.error = self.error or exc
        if self.error is not None:  # said, not raised: the test's own failure comes first
            warnings.warn(
                f"perfsuite: resource sampling stopped early: {type(self.error).__name__}: "
                f"{self.error}",
                PerfsuiteWarning,
                stacklevel=2,
            )
        return self.series


class ResourceSampler(_Sampler):
    """Samples a local process tree from a thread until stopped."""

    def __init__(self, pid: int, *, interval: float = 1.0) -> None:
        super().__init__(interval=interval)
        self.process = psutil.Process(pid)
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_at_start: dict[int, float] = {}

    def _tree(self) -> list[psutil.Process]:
        procs = [self.process]
        with contextlib.suppress(psutil.Error):
            procs += self.process.children(recursive=True)
        # cpu_percent needs the same Process object across calls.
        return [self._procs.setdefault(p.pid, p) for p in procs]

    def _prime(self, t0: float) -> None:
        self._cpu_at_start = self._cpu_times()
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                proc.cpu_percent(None)

    def _cpu_times(self) -> dict[int, float]:
        times: dict[int, float] = {}
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                times[proc.pid] = t.user + t.system
        return times

    def _cpu_seconds(self) -> float | None:
        # A process born during the load counts whole; one that died is lost
        # (its time is not its parent's until reaped): services keep theirs.
        now = self._cpu_times()
        return sum(max(0.0, t - self._cpu_at_start.get(pid, 0.0)) for pid, t in now.items())

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


class DockerStatsSampler(_Sampler):
    """Samples a container through the Docker stats API until stopped.

    One-shot stats once a second (no 1 s wait per call), CPU from the deltas
    of the container's and the host's CPU time between two samples; memory is
    the cgroup's usage less its page cache, as ``docker stats`` shows it.
    """

    name = "perfsuite-docker-stats"

    def __init__(self, container: Any, *, interval: float = 1.0) -> None:
        super().__init__(interval=interval)
        self.container = container
        self._last: tuple[float, float] | None = None
        self._first_ns: float | None = None

    def _read(self) -> tuple[float, float, float, float]:
        """(container CPU ns, host CPU ns, online CPUs, memory MiB) now."""
        data = self.container.stats(stream=False, one_shot=True)
        cpu = data.get("cpu_stats") or {}
        mem = data.get("memory_stats") or {}
        detail = mem.get("stats") or {}
        cache = detail.get("inactive_file", detail.get("cache", 0))  # cgroup v2, else v1
        return (
            float((cpu.get("cpu_usage") or {}).get("total_usage", 0)),
            float(cpu.get("system_cpu_usage", 0)),
            float(cpu.get("online_cpus") or psutil.cpu_count() or 1),
            (float(mem.get("usage", 0)) - float(cache)) / 2**20,
        )

    def _prime(self, t0: float) -> None:
        self._sample(t0)
        self._first_ns = self._last[0] if self._last is not None else None

    def _cpu_seconds(self) -> float | None:
        if self._first_ns is None:
            return None
        used = self._read()[0]
        return max(0.0, used - self._first_ns) / 1e9

    def _sample(self, t0: float) -> None:
        used, system, cpus, mib = self._read()
        if self._last is not None and system > self._last[1]:
            cpu = (used - self._last[0]) / (system - self._last[1]) * cpus * 100.0
            self.series.seconds.append(time.monotonic() - t0)
            self.series.cpu.append(max(0.0, cpu))
            self.series.rss_mib.append(mib)
        self._last = (used, system)
