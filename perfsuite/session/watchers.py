"""What watches the service during one load, started before it and stopped after it.

What else the machine ran, the pool, its CPU and memory, the per-request
cost, the scraped metrics, a CPU profile over a window of the load, the
counts that leak (threads, descriptors, connections), and the replicas'
lag. Each is optional; :class:`LoadWatchers` starts those there are, tells
them when the load's first phase began, and stops them all (also on Ctrl-C,
when the profile is dropped and nothing waits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from perfsuite.load import LoadResult, Phase
from perfsuite.probes.growth import CountSampler, CountSeries
from perfsuite.probes.machine import MachineLoad, MachineSampler
from perfsuite.probes.pool import PoolWatch
from perfsuite.probes.profile import CapturedProfile, ProfileSchedule
from perfsuite.probes.replica_lag import ReplicaLagWatch
from perfsuite.probes.resources import DockerStatsSampler, ResourceSampler, ResourceSeries
from perfsuite.session.cost import CostMeter
from perfsuite.session.metrics import MetricsWatch, ScrapedLoad
from perfsuite.stats.cost import RequestCost
from perfsuite.stats.lag import ReplicaLag

__all__ = ["LoadWatchers", "Watched"]


@dataclass(kw_only=True)
class Watched:
    """What the watchers of one load gathered (None: not watched, or nothing)."""

    series: ResourceSeries | None = None
    cost: RequestCost | None = None
    scraped: ScrapedLoad | None = None
    profile: CapturedProfile | None = None
    profile_error: str | None = None
    counts: CountSeries | None = None
    machine: MachineLoad | None = None  # what else the machine ran meanwhile
    lag: ReplicaLag | None = None  # the replicas' lag behind the primary
    wall_start: float | None = None  # when the first phase began (time.time())
    wall_end: float | None = None  # when the load ended


@dataclass(kw_only=True)
class LoadWatchers:
    """The watchers of one load; any of them may be None."""

    pool: PoolWatch | None = None
    sampler: ResourceSampler | DockerStatsSampler | None = None
    meter: CostMeter | None = None
    metrics: MetricsWatch | None = None
    profile: ProfileSchedule | None = None
    counts: CountSampler | None = None
    machine: MachineSampler | None = None
    lag: ReplicaLagWatch | None = None
    settle: float = 0.0  # s of counts after the load: its level after
    _wall_start: float | None = None

    def start(self) -> None:
        """Start each watcher (the counts and scrapes take their first sample now)."""
        # The lag's first: its table's set-up is not a statement of the load's cost.
        watchers = (
            self.lag, self.machine, self.pool, self.meter, self.sampler, self.metrics, self.counts
        )  # fmt: skip
        for watcher in watchers:
            if watcher is not None:
                watcher.start()

    def began(self, t0_ns: int, phases: list[Phase]) -> None:
        """The load's first phase began at ``t0_ns`` (``time.perf_counter_ns()``)."""
        self._wall_start = time.time() - (time.perf_counter_ns() - t0_ns) / 1e9
        if self.meter is not None:  # a meter of the load's cost reads each boundary
            self.meter.plan(t0_ns, [p.duration for p in phases])
        if self.metrics is not None:  # the phases' times, on the scrapes' clock
            self.metrics.mark(self._wall_start)
        if self.profile is not None:
            self.profile.mark(t0_ns)

    def stop(self, result: LoadResult | None) -> Watched:
        """Stop them all; ``result`` None: the load did not complete (Ctrl-C, an error),
        so nothing more is waited for."""
        ended = time.time()
        done = Watched(wall_start=self._wall_start, wall_end=ended)
        completed = result is not None
        # Each stage stops its watchers even when Ctrl-C interrupts the one before.
        try:
            if self.profile is not None:  # first: it may still be sampling the window
                done.profile = self.profile.finish(completed=completed)
                done.profile_error = self.profile.error
        finally:
            try:
                self._stop_samplers(done, result)
            finally:
                self._stop_after(done, completed, ended)
        return done

    def _stop_samplers(self, done: Watched, result: LoadResult | None) -> None:
        if self.machine is not None:
            done.machine = self.machine.stop()
        if self.lag is not None:
            if result is None or self._wall_start is None:  # no load to judge: just stop
                self.lag.stop()
            else:
                phases = [(p.name, p.role, p.start, p.duration) for p in result.phases]
                done.lag = self.lag.finish(phases, self._wall_start)
        if self.sampler is not None:
            done.series = self.sampler.stop()
        if self.pool is not None:
            self.pool.stop()
        if self.meter is not None:
            cpu = done.series.cpu_seconds if done.series is not None else None
            done.cost = self.meter.stop(result, cpu)

    def _stop_after(self, done: Watched, completed: bool, ended: float) -> None:
        try:
            if completed and self.settle > 0 and (self.counts or self.metrics):
                # The level after the load: counts and scrapes go on a moment, idle.
                time.sleep(max(0.0, self.settle - (time.time() - ended)))
        finally:  # a Ctrl-C in that moment still stops them
            if self.metrics is not None:  # no last scrape after Ctrl-C: the user wants out
                done.scraped = self.metrics.stop(last=completed)
            if self.counts is not None:
                done.counts = self.counts.stop()
