"""The service's CPU and memory during the load, sampled once a second (psutil).

CPU is in percent of one core (as ``top`` shows it), over the process and all
its children, from their cumulative CPU times: a child born between two
samples counts from its birth, and one that exits counts to its end once its
parent has reaped it (its time moves into the parent's ``children_*``).
Memory is the proportional set size (PSS) in MiB summed over the tree: pages
shared by forked workers are split between them, not counted once per worker
as the resident set size would (RSS where PSS cannot be read).
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
    """Samples: seconds since the start, CPU % of one core, memory MiB (``rss_mib``:
    PSS for a local process tree, the cgroup's usage less its inactive page cache for
    a container; the name is the record's, kept from when it was RSS)."""

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
        self._cpu_at_start = 0.0
        self._last: tuple[float, float] | None = None  # (monotonic, tree CPU seconds)

    def _tree(self) -> list[psutil.Process]:
        procs = [self.process]
        with contextlib.suppress(psutil.Error):
            procs += self.process.children(recursive=True)
        # The same Process objects across calls (psutil caches what it can).
        return [self._procs.setdefault(p.pid, p) for p in procs]

    def _tree_cpu(self) -> float:
        """CPU seconds of the live tree and of the children it reaped, so far."""
        total = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def _memory_mib(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                total += proc.memory_full_info().pss / 2**20
            except (psutil.AccessDenied, AttributeError):
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
        return total

    def _prime(self, t0: float) -> None:
        self._cpu_at_start = self._tree_cpu()
        self._last = (t0, self._cpu_at_start)

    def _cpu_seconds(self) -> float | None:
        return max(0.0, self._tree_cpu() - self._cpu_at_start)

    def _sample(self, t0: float) -> None:
        now, cpu = time.monotonic(), self._tree_cpu()
        mib = self._memory_mib()
        assert self._last is not None
        then, before = self._last
        # A child that died unreaped (reparented away) takes its time with it: no
        # negative share for that interval.
        share = max(0.0, cpu - before) / max(now - then, 1e-9) * 100.0
        self._last = (now, max(cpu, before))
        self.series.seconds.append(now - t0)
        self.series.cpu.append(share)
        self.series.rss_mib.append(mib)


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
        usage = float(mem.get("usage", 0))
        # As `docker stats` does: usage less the inactive page cache, hierarchical on
        # cgroup v1 (total_inactive_file), the cgroup's own on v2 (inactive_file).
        cache = float(detail.get("total_inactive_file", detail.get("inactive_file", 0)))
        return (
            float((cpu.get("cpu_usage") or {}).get("total_usage", 0)),
            float(cpu.get("system_cpu_usage", 0)),
            float(cpu.get("online_cpus") or psutil.cpu_count() or 1),
            (usage - cache if cache < usage else usage) / 2**20,
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
