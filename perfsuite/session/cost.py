"""Measuring one load's cost: the digests before and after it, and the service's CPU.

Used around every load that goes to a service of ours: the test's own
(``perf_run``) and each round of an A/B pair (either build's service, on its
own database).
"""

from __future__ import annotations

import warnings

from perfsuite.errors import PerfsuiteError, PerfsuiteWarning
from perfsuite.load import LoadResult
from perfsuite.probes.resources import ResourceSampler
from perfsuite.probes.statements import StatementProbe, StatementSnapshot
from perfsuite.provision import MySQLServer, Service
from perfsuite.stats.cost import RequestCost

__all__ = ["CostMeter", "CostProbes"]


class CostMeter:
    """Reads one load's cost: :meth:`start` before it, :meth:`stop` after it."""

    def __init__(self, probe: StatementProbe, sampler: ResourceSampler | None = None) -> None:
        self.probe = probe
        self.sampler = sampler  # CPU of the service, when the caller does not sample it
        self._before: StatementSnapshot | None = None

    def _read(self, *, first: bool) -> StatementSnapshot | None:
        try:
            if first:
                self.probe.reset()
            return self.probe.snapshot()
        except PerfsuiteError as exc:  # said, not raised: the load and its verdict come first
            warnings.warn(f"perfsuite: no database cost for this load: {exc}", PerfsuiteWarning, 3)
            return None

    def start(self) -> None:
        """Empty the digests (a server of ours) and read them; start the CPU sampler."""
        self._before = self._read(first=True)
        if self.sampler is not None:
            self.sampler.start()

    def stop(
        self, result: LoadResult | None, cpu_seconds: float | None = None
    ) -> RequestCost | None:
        """The load's cost (None when it did not finish or the digests could not be read)."""
        try:
            if self.sampler is not None:
                cpu_seconds = self.sampler.stop().cpu_seconds
            after = self._read(first=False) if self._before is not None else None
        finally:
            self.probe.close()
        if result is None or self._before is None or after is None:
            return None
        answered = sum(cell.answered for cell in result.cells)
        return self.probe.cost(
            self._before,
            after,
            answered,
            cpu_seconds=cpu_seconds,
            endpoints=tuple(result.endpoints),
        )


class CostProbes:
    """Makes statement probes; whether the server can give digests is asked once."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled  # [tool.perfsuite] cost, --perf-no-cost
        self._checked = False
        self._reason: str | None = None  # why the statement digests cannot be read

    def meter(
        self, server: MySQLServer, service: Service | None = None, *, sample_cpu: bool = False
    ) -> CostMeter | None:
        """A meter of loads on ``server``'s database, or None when it has no digests
        (said once a session, with how to turn them on)."""
        if not self.enabled or (self._checked and self._reason is not None):
            return None
        probe = StatementProbe(server, server.database, owned=server.provider != "url")
        if not self._checked:
            self._checked = True
            self._reason = probe.available()
            if self._reason is not None:
                probe.close()
                warnings.warn(
                    f"perfsuite: no database cost per request: {self._reason}",
                    PerfsuiteWarning,
                    stacklevel=2,
                )
                return None
        sampler = None
        if sample_cpu and service is not None and service.pid is not None:
            sampler = ResourceSampler(service.pid)
        return CostMeter(probe, sampler)
