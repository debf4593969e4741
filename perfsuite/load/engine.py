"""The load engine: runs phases against a target and records every answer.

This module holds a run's timeline (phase switches, the per-second tick,
timeouts) and its result; ``driver.py`` moves the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence

from perfsuite.errors import ConfigError, Interrupted, LoadError
from perfsuite.load.driver import Driver
from perfsuite.load.options import EngineOptions, Progress
from perfsuite.load.phases import OpenPhase, Phase
from perfsuite.load.recorder import TIMEOUT, SecondReport
from perfsuite.load.result import LoadResult, cells_of, phase_infos
from perfsuite.load.safety import check_target, raise_nofile
from perfsuite.load.saturation import GeneratorStats, judge_saturation
from perfsuite.load.scenario import Scenario
from perfsuite.signals import stop_signals
from perfsuite.stats.hdr import percentiles

__all__ = ["EngineOptions", "Progress", "run_load"]

_NS = 1_000_000_000


class _Engine(Driver):
    """One run. Not reusable; see :func:`run_load`."""

    def __init__(
        self,
        target: str,
        scenario: Scenario,
        phases: Sequence[Phase],
        options: EngineOptions,
        progress: Callable[[Progress], None] | None,
        start_at_ns: int | None = None,
        stop: Callable[[], str | None] | None = None,
        on_start: Callable[[int], None] | None = None,
        on_second: Callable[[SecondReport], None] | None = None,
    ) -> None:
        self.start_at_ns = start_at_ns
        self.stop = stop
        self.on_start = on_start
        host, port = check_target(target, options.allowed_hosts)
        if not phases:
            raise ConfigError("a load run needs at least one phase")
        total = sum(p.duration for p in phases)
        if total > options.max_duration:
            raise ConfigError(
                f"the phases last {total:.0f} s, more than max_duration "
                f"{options.max_duration:.0f} s"
            )
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"phase names must be unique, got {names}")
        super().__init__(target, host, port, scenario, phases, options)
        self.progress = progress
        self.on_second = on_second

    # -- lifecycle ----------------------------------------------------------

    async def run(self) -> LoadResult:
        raise_nofile(self.opt.max_connections + 64)
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        # CLOCK_MONOTONIC is one clock for all processes: workers share a start.
        self.t0 = self.start_at_ns or time.perf_counter_ns() + _NS // 100
        if self.on_start is not None:  # who must know the phases' boundaries beforehand
            self.on_start(self.t0)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        starts = []
        offset = 0.0
        for i, phase in enumerate(self.phases):
            starts.append(offset)
            self._at(self.t0 + int(offset * _NS), self._enter_phase, i)
            offset += phase.duration
        self.end_ns = self.t0 + int(offset * _NS)
        self._at(self.end_ns, self._finish)
        self._second = 0
        self._at(self.t0 + _NS, self._tick_second)
        self._sweep_expected = time.perf_counter_ns() + 50_000_000
        self._sweep_waited = self.core_wait.lap()
        n = len(self.journeys)
        self._counted = [c for c in range(len(self.rec.ended)) if self.journeys[c % n] is None]
        self.ended_marks: list[tuple[float, int]] = []
        self.loop.call_later(0.05, self._sweep)
        try:
            await self.done
        finally:
            for conn in self.conns:
                conn.abort()
            self.ctx.close()
            self.core_wait.close()
        wall = time.perf_counter() - wall0
        cpu = (time.process_time() - cpu0) / wall if wall else 0.0
        return self._result(starts, wall, cpu)

    def _sweep(self) -> None:
        if self.stop is not None and (signal_name := self.stop()):
            self.interrupt(signal_name)
            return
        now = time.perf_counter_ns()
        # A wake-up late because another process had the cores is not a held-up loop.
        held = max(0, now - self._sweep_expected - self._sweep_waited())
        self.lag.record_value(min(held // 1000, 60_000_000))
        self.stall_ns = max(self.stall_ns, held - 1_000_000)
        for conn in list(self.conns):
            if conn.busy and now > conn.deadline:
                # Given up: a timeout, with the latency it had when given up.
                conn.busy = False
                self.lost(conn, TIMEOUT, now)
                conn.abort()
                self.on_lost(conn, None)
        while self.backlog and now - self.backlog[0][0] > self.timeout_ns:
            # Queued for longer than the timeout, never sent: it timed out waiting.
            self._fail_queued(self.backlog.popleft(), TIMEOUT, now)
        self.payloads.top_up()
        self.rec.absorb()  # a few thousand samples at a time: the second's close stays short
        self._mark_ended(now)
        if self.finished:
            self._maybe_done()
        if not self.done.done():
            self._sweep_expected = time.perf_counter_ns() + 50_000_000
            self.loop.call_later(0.05, self._sweep)

    def _mark_ended(self, now: int) -> None:
        """Note how many requests (journeys' own apart) had ended by ``now``: what
        splits a load's database cost at a phase boundary read a little late, finer
        than the seconds (whose answers bunch where a slow phase hands over)."""
        if now >= self.t0:
            ended = self.rec.ended
            self.ended_marks.append(((now - self.t0) / _NS, sum(ended[c] for c in self._counted)))

    def _tick_second(self) -> None:
        if self.done.done():
            return
        self.stalls_ms.append(max(0, self.stall_ns) / 1e6)
        self.stall_ns = 0
        summary = self.flush_second()
        self._second += 1
        if self.progress is not None and self.phase_i >= 0:
            ok = sum(s.ok for s in summary)
            p95 = max((s.p95 for s in summary if s.requests), default=float("nan"))
            self.progress(
                Progress(
                    phase=self.phases[self.phase_i].name,
                    elapsed=self._second,
                    total=(self.end_ns - self.t0) / _NS,
                    rps=ok,
                    p95_ms=p95,
                    errors=sum(s.errors for s in summary),
                )
            )
        self._at(self.t0 + (self._second + 1) * _NS, self._tick_second)

    # -- result -------------------------------------------------------------

    def _saturation(self, cpu: float) -> tuple[bool, str]:
        open_s = sum(
            p.duration for p in self.phases if isinstance(p, OpenPhase) and p.role == "measure"
        )
        return judge_saturation(
            GeneratorStats(
                measured_sends=self.measured_sends,
                sends=self.sends,
                late=self.late,
                late_generator=self.late_generator,
                idle_rate=self.idle_ticks / open_s if open_s else float("inf"),
                lag_p99_ms=percentiles(self.lag).p99 if self.lag.get_total_count() else 0.0,
                cpu=cpu,
            ),
            share_limit=self.opt.saturation_share,
            late_threshold_ms=self.opt.late_threshold * 1000,
        )

    def _result(self, starts: list[float], wall: float, cpu: float) -> LoadResult:
        rec = self.rec
        rec.fold(self._second)
        self._mark_ended(time.perf_counter_ns())
        ran = (self.stopped_ns - self.t0) / _NS if self.interrupted_by else None
        infos = phase_infos(self.phases, starts, ran_for=ran)
        journeys = frozenset(ep for ep, j in enumerate(self.journeys) if j is not None)
        stale = frozenset(ep for ep, s in enumerate(self.specs) if s is not None and s.stale)
        cells = cells_of(rec, [p.name for p in self.phases], journeys, stale)
        # A run cut short has no steady state to judge the generator by.
        saturated, reason = (False, "") if self.interrupted_by else self._saturation(cpu)
        lag_p99 = percentiles(self.lag).p99 if self.lag.get_total_count() else 0.0
        return LoadResult(
            target=self.target,
            phases=infos,
            cells=cells,
            seconds=tuple(rec.seconds),
            second_bins=tuple(rec.second_bins),
            ended=tuple(self.ended_marks),
            late=self.late,
            late_generator=self.late_generator,
            dropped=self.dropped,
            wall_time=wall,
            generator_cpu=cpu,
            loop_lag_p99_ms=lag_p99,
            loop_stalls_ms=tuple(self.stalls_ms),
            connections_opened=self.opened,
            saturated=saturated,
            saturation_reason=reason,
            stop_reason=self.stop_reason,
            interrupted=bool(self.interrupted_by),
            abandoned=self.abandoned,
            max_connections=self.opt.max_connections,
            at_limit=self.at_limit,
            queue_wait_max_ms=self.queue_wait_max / 1e6,
            unsolicited=self.unsolicited,
            truncated=self.truncated,
            check_exceptions=dict(self.check_exceptions),
            connect_failures=dict(self.connect_failures),
        )


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """The heap that exists before the run is left out of garbage collection during it.

    A full collection of a big process (pytest, numpy, scipy, SQLAlchemy: a
    million objects) holds the event loop for tens of milliseconds, and the
    sends due meanwhile leave late. Frozen, the collector only walks what the
    run itself allocates (few containers live long: requests are ints and
    bytes).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: plain asyncio is slower, not wrong
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_load(
    target: str,
    scenario: Scenario,
    phases: Sequence[Phase],
    *,
    options: EngineOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    start_at_ns: int | None = None,
    stop: Callable[[], str | None] | None = None,
    handle_signals: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_second: Callable[[SecondReport], None] | None = None,
    ready: Callable[[], int] | None = None,
) -> LoadResult:
    """Run ``phases`` of ``scenario`` against ``target`` (blocking) and return the result.

    Ctrl-C or SIGTERM (with ``handle_signals``, in the main thread) stops the
    run within a moment and raises :class:`~perfsuite.errors.Interrupted`
    carrying what was measured so far; so does ``stop()`` returning a signal's
    name (polled every 50 ms: how a parent stops its load workers).
    ``on_start(t0)`` is told when the first phase starts (``time.perf_counter_ns()``);
    ``on_second(report)`` each second as it closes, on the event loop (keep it short).
    ``ready()``, once the run is built (its requests too, which can take a while),
    returns the start on ``time.perf_counter_ns()``'s clock: how processes that
    share a start begin together however long each took to get ready.
    """
    engine = _Engine(
        target, scenario, phases, options or EngineOptions(), progress, start_at_ns, stop,
        on_start, on_second,
    )  # fmt: skip
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        loop = runner.get_loop()
        received: list[str] = []

        def on_signal(name: str) -> None:
            received.append(name)  # also when it comes as the run ends by itself
            loop.call_soon_threadsafe(engine.interrupt, name)

        signals = stop_signals(on_signal) if handle_signals else contextlib.nullcontext()
        with signals, _frozen_heap():
            if ready is not None:  # after the collection: a big heap's takes 0.1 s
                engine.start_at_ns = ready()
            try:
                result = runner.run(engine.run())
            except OSError as exc:
                raise LoadError(f"the load run failed: {exc}") from exc
    if engine.interrupted_by or received:
        raise Interrupted(engine.interrupted_by or received[0], result)
    return result
