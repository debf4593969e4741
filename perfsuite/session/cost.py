"""Measuring one load's cost: the digests before and after it, and the service's CPU.

Used around every load that goes to a service of ours: the test's own
(``perf_run``) and each round of an A/B pair (either build's service, on its
own database).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from collections.abc import Sequence

from perfsuite.errors import PerfsuiteError, PerfsuiteWarning
from perfsuite.load import LoadResult
from perfsuite.probes.resources import ResourceSampler
from perfsuite.probes.statements import StatementProbe, StatementSnapshot
from perfsuite.provision import MySQLServer, Service
from perfsuite.stats.cost import RequestCost, phase_cost, split_requests

__all__ = ["CostMeter", "CostProbes"]


class CostMeter:
    """Reads one load's cost: :meth:`start` before it, :meth:`stop` after it."""

    def __init__(self, probe: StatementProbe, sampler: ResourceSampler | None = None) -> None:
        self.probe = probe
        self.sampler = sampler  # CPU of the service, when the caller does not sample it
        self._before: StatementSnapshot | None = None
        # At each phase's end but the last, and when read (ns after the load's start).
        self._boundaries: list[tuple[StatementSnapshot | None, int]] = []
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self, start_ns: int, durations: Sequence[float]) -> None:
        """Read the digests at each boundary between phases (the load starts at
        ``start_ns`` on ``time.perf_counter_ns()``'s clock): the cost per phase."""
        ends, at = [], start_ns
        for seconds in durations[:-1]:
            at += int(seconds * 1e9)
            ends.append(at)

        def read_at_boundaries() -> None:
            for end in ends:
                if self._quit.wait(max(0.0, (end - time.perf_counter_ns()) / 1e9)):
                    return
                reading = self._read(first=False)
                # Read late on a busy machine (by 90 ms in a test, beside CPU hogs): the
                # time read, not the boundary meant, splits the requests (see _by_phase).
                at = (reading.at if reading is not None else time.perf_counter_ns()) - start_ns
                self._boundaries.append((reading, at))

        # A daemon: a reading stuck on a vanished server must not keep the process alive.
        self._thread = threading.Thread(
            target=read_at_boundaries, name="perfsuite-cost", daemon=True
        )
        self._thread.start()

    def _settled(self) -> StatementSnapshot | None:
        """The digests once they stop moving: the server counts a statement when it
        ends, a moment after its result reached the service (and maybe the response
        its client), so a read right after the load can miss the last one."""
        last = self._read(first=False)
        for _ in range(25):
            time.sleep(0.02)
            now = self._read(first=False)
            if now is None or last is None:
                return now
            if {k: d.calls for k, d in now.digests.items()} == {
                k: d.calls for k, d in last.digests.items()
            }:
                return now
            last = now
        return last

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
            self._quit.set()
            if self._thread is not None:
                self._thread.join(timeout=10)
            if self.sampler is not None:
                cpu_seconds = self.sampler.stop().cpu_seconds
            after = self._settled() if self._before is not None else None
        finally:
            self.probe.close()
        if result is None or self._before is None or after is None:
            return None
        answered = sum(cell.answered for cell in result.cells if not cell.journey)
        cost = self.probe.cost(
            self._before,
            after,
            answered,
            cpu_seconds=cpu_seconds,
            endpoints=tuple(result.endpoints),
        )
        return self._by_phase(cost, result, after)

    def _by_phase(
        self, cost: RequestCost, result: LoadResult, after: StatementSnapshot
    ) -> RequestCost:
        """The load's cost with each phase's, when every boundary was read.

        A phase's statements are those counted between two readings; its requests,
        those that ended between the same two moments (from the requests ended in
        each second), not the phase's own: a reading a tenth of a second late would
        otherwise give the next phase's first requests' statements to this one.
        """
        readings = [self._before, *(b for b, _ in self._boundaries), after]
        if len(readings) != len(result.phases) + 1 or any(r is None for r in readings):
            return cost  # one phase, an interrupted load, or a failed reading
        journeys = {c.endpoint for c in result.cells if c.journey}
        per_second: dict[int, int] = {}
        for sec in result.seconds:
            if sec.endpoint not in journeys:
                per_second[sec.t] = per_second.get(sec.t, 0) + sec.requests
        cuts = [at / 1e9 for _, at in self._boundaries]
        counts = split_requests(per_second, cuts, cost.requests, result.ended)
        phases = []
        for i, phase in enumerate(result.phases):
            before, end = readings[i], readings[i + 1]
            assert before is not None
            assert end is not None
            part = self.probe.cost(before, end, counts[i])
            phases.append(phase_cost(phase.name, phase.role, part))
        return dataclasses.replace(cost, phases=tuple(phases))


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
