"""Running a test's load, with what watches the service meanwhile (pool, resources,
cost, scraped metrics, a profile, the counts that leak)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx

from perfsuite.config import PerfConfig
from perfsuite.errors import LoadGeneratorSaturated, PerfsuiteWarning
from perfsuite.load import EngineOptions, LoadResult, Phase, Progress, Scenario
from perfsuite.load.agents import run_agents
from perfsuite.load.parallel import run_parallel
from perfsuite.probes.machine import MachineSampler
from perfsuite.probes.metrics import PoolGauges, read_gauges, resolve_preset
from perfsuite.probes.pool import DbProbe, PoolWatch
from perfsuite.probes.replica_lag import ReplicaLagWatch
from perfsuite.probes.resources import DockerStatsSampler, ResourceSampler
from perfsuite.session.cost import CostMeter, CostProbes
from perfsuite.session.export import LiveExporter
from perfsuite.session.metrics import MetricsWatch, scraper_for
from perfsuite.session.profiling import Profiling
from perfsuite.session.provisioning import Provisioning
from perfsuite.session.watchers import LoadWatchers
from perfsuite.stats.promql import Expectation

__all__ = ["Loads", "flatten_phases"]

_AFTER_SPACING = 0.01  # s between the requests sent after a load: a trickle, not a load
_AFTER_TIMEOUT = 2.0
_AFTER_BUDGET = 8.0  # s for all of them: a hung service makes the check unsure, not slow


def _after_requests(url: str) -> Callable[[int], int]:
    """``n`` GETs of ``url``, one at a time (the pool check's requests after a load);
    how many were answered. Bounded: at most ``n`` requests, within 8 s in all."""

    def send(n: int) -> int:
        answered = 0
        deadline = time.monotonic() + _AFTER_BUDGET
        with httpx.Client(timeout=_AFTER_TIMEOUT, trust_env=False) as client:
            for _ in range(n):
                if time.monotonic() > deadline:
                    break
                try:
                    client.get(url)
                    answered += 1
                except httpx.HTTPError:
                    pass
                time.sleep(_AFTER_SPACING)
        return answered

    return send


def flatten_phases(phases: Phase | list[Any] | tuple[Any, ...]) -> list[Phase]:
    """Phases as given to ``perf_run``: one, a list, or lists in a list (stairs)."""
    if not isinstance(phases, list | tuple):
        return [phases]
    flat: list[Phase] = []
    for item in phases:
        flat.extend(flatten_phases(item))
    return flat


class Loads:
    """The engine's options, the run itself, and the watchers of the service."""

    def __init__(
        self,
        config: PerfConfig,
        provisioning: Provisioning,
        *,
        exporter: LiveExporter | None = None,
    ) -> None:
        self.config = config
        self._provisioning = provisioning
        self.exporter = exporter
        pool = config.pool
        self._pool_names = (
            resolve_preset(pool.metrics, pool.metric_names) if pool.metrics != "none" else {}
        )
        self.costs = CostProbes(enabled=config.mysql.cost)
        self.profiling = Profiling(config.profiling)

    def engine_options(self) -> EngineOptions:
        """The engine's limits, from ``[tool.perfsuite.load]`` and ``allowed_hosts``."""
        load = self.config.load
        return EngineOptions(
            max_connections=load.max_connections,
            timeout=load.timeout,
            connect_timeout=load.connect_timeout,
            max_body=load.max_body,
            verify=load.verify,
            ca_bundle=load.ca_bundle,
            late_threshold=load.late_threshold,
            max_requests=load.max_requests,
            max_duration=load.max_duration,
            allowed_hosts=load.allowed_hosts,
        )

    def run(
        self,
        scenario: Scenario,
        phases: Phase | list[Any] | tuple[Any, ...],
        *,
        target: str,
        progress: Callable[[Progress], None] | None = None,
        watchers: LoadWatchers | None = None,
    ) -> LoadResult:
        """Run the phases; a saturated generator is an error, not a verdict on the service.

        Ctrl-C raises :class:`~perfsuite.errors.Interrupted` with the partial result.
        """
        flat = flatten_phases(phases)

        def on_start(t0: int) -> None:  # the watchers' clocks, set to the load's
            if watchers is not None:
                watchers.began(t0, flat)

        exporter = self.exporter
        load = self.config.load
        if load.tx:  # agents on execnet
            result = run_agents(
                target,
                scenario,
                flat,
                load.tx,
                options=self.engine_options(),
                progress=progress,
                on_start=on_start,
                on_second=exporter.second if exporter is not None else None,
                max_clock_uncertainty=load.max_clock_uncertainty,
            )
        else:
            result = run_parallel(
                target,
                scenario,
                flat,
                options=self.engine_options(),
                workers=load.workers,
                progress=progress,
                on_start=on_start,
                on_second=exporter.second if exporter is not None else None,
            )
        if result.saturated:
            raise LoadGeneratorSaturated(
                f"load generator saturated: {result.saturation_reason}\n{result.describe()}"
            )
        if result.limit_note:
            warnings.warn(PerfsuiteWarning(f"perfsuite: {result.limit_note}"), stacklevel=2)
        return result

    def watchers(
        self,
        phases: Phase | list[Any] | tuple[Any, ...],
        expectations: list[Expectation],
        *,
        pool_check: bool,
        keep_profile: bool,
    ) -> LoadWatchers:
        """The watchers of one load against our service (each one there is to have)."""
        service = self._provisioning.service
        path = self.config.metrics.path or self.config.pool.metrics_path
        scraper = scraper_for(
            self.config.metrics,
            expectations,
            service_metrics_url=service.base_url + path if service is not None else None,
            server=self._provisioning.mysql_server,
            also=self.config.profiling.growth_metrics if self.config.profiling.growth else (),
        )
        profiling = self.profiling
        return LoadWatchers(
            pool=self.pool_watch(disabled=not pool_check),
            sampler=self.resource_sampler(),
            meter=self.cost_meter(),
            metrics=MetricsWatch(scraper) if scraper is not None else None,
            profile=profiling.schedule(service, flatten_phases(phases), keep=keep_profile),
            counts=profiling.counts(
                service,
                self._provisioning.mysql_server,
                self.config.service.port if self.config.service is not None else None,
            ),
            settle=self.config.profiling.settle,
            machine=MachineSampler(local=self._all_local()),
            lag=self.lag_watch(),
        )

    def lag_watch(self) -> ReplicaLagWatch | None:
        """Heartbeats through the replicas for one load (None: no replicas, or not asked)."""
        server = self._provisioning.mysql_server
        replication = self.config.mysql.replication
        if server is None or not server.replicas or not replication.lag:
            return None
        return ReplicaLagWatch(server, server.replicas, interval=replication.heartbeat)

    def _all_local(self) -> bool:
        """Are the service and its database processes of ours (descendants of this one)?
        Then what the rest of the machine ran is a neighbour's."""
        service = self._provisioning.service
        server = self._provisioning.mysql_server
        return (
            service is not None
            and service.pid is not None
            and (server is None or server.provider == "process")
        )

    def pool_watch(self, *, disabled: bool) -> PoolWatch | None:
        """A watch of the service's pool for one load, or None when there is none to watch."""
        pool = self.config.pool
        server, service = self._provisioning.mysql_server, self._provisioning.service
        if disabled or not pool.check or server is None or service is None:
            return None
        gauges = None
        if pool.metrics != "none":
            url = service.base_url + pool.metrics_path
            preset, names = pool.metrics, self._pool_names

            def gauges() -> PoolGauges:
                with httpx.Client(timeout=5.0, trust_env=False) as client:
                    return read_gauges(client, url, preset, names)

        probe = DbProbe(server, pool.user or server.user)
        service_config = self.config.service
        path = pool.after_path
        if path is None:
            path = service_config.health if service_config is not None else ""
        after = _after_requests(service.base_url + path) if path else None
        waiting = self._pool_names.get("waiting", "") if gauges is not None else ""
        return PoolWatch(
            probe,
            gauges,
            max_idle=pool.max_idle,
            timeout=pool.timeout,
            after_requests=after,
            in_turn=pool.hands_out == "in-turn",
            # A counter of waits since the service started (Go's wait_count_total).
            waiting_is_total=waiting.endswith(("_total", "_count")),
        )

    def resource_sampler(self) -> ResourceSampler | DockerStatsSampler | None:
        """A sampler of the service: its local process tree, or its container's stats."""
        service = self._provisioning.service
        if service is None:
            return None
        if service.container is not None:
            return DockerStatsSampler(service.container.get_wrapped_container())
        return ResourceSampler(service.pid) if service.pid is not None else None

    def cost_meter(self) -> CostMeter | None:
        """A meter of the test's load on the service's database, or None (no server of
        ours, or no statement digests: said once a session)."""
        server = self._provisioning.mysql_server
        if server is None or self._provisioning.service is None:
            return None
        return self.costs.meter(server)
