"""The load engine: runs phases against a target and records every answer.

Open model: a ticker sends every request whose *intended* time has come, on
an idle connection, or queues it until one is free; latency counts from the
intended time, so a stalled service cannot hide behind a slowed generator
(no coordinated omission). Closed model: each virtual user sends, waits for
the answer, thinks, and sends again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from perfsuite.errors import ConfigError, LoadError
from perfsuite.load.phases import ClosedPhase, OpenPhase, Phase
from perfsuite.load.recorder import (
    CHECK,
    CLOSED,
    CONNECT,
    DROPPED,
    ERROR_KINDS,
    STATUS,
    TIMEOUT,
    Recorder,
)
from perfsuite.load.result import Cell, LoadResult, PhaseInfo
from perfsuite.load.safety import check_target, raise_nofile
from perfsuite.load.scenario import Context, Scenario, encode_request
from perfsuite.load.transport import Connection
from perfsuite.stats.hdr import new_histogram, percentiles

__all__ = ["EngineOptions", "Progress", "run_load"]

_NS = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Limits and thresholds of a run."""

    max_connections: int = 1_000
    timeout: float = 10.0
    late_threshold: float = 0.010  # a send later than this after its intended time is late
    saturation_share: float = 0.01  # more generator-late sends than this: saturated
    max_requests: int = 50_000_000  # hard cap on sends, whatever the phases say
    max_duration: float = 4 * 3600.0  # hard cap on the phases' total duration
    allowed_hosts: tuple[str, ...] = ()
    prebuilt: int = 4096  # requests built ahead per endpoint (dynamic builders)

    def __post_init__(self) -> None:
        if not 1 <= self.max_connections <= 100_000:
            raise ConfigError(f"max_connections must be 1..100000, got {self.max_connections}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0, got {self.timeout}")


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Once a second, for the live line: where the run is and how it goes."""

    phase: str
    elapsed: float
    total: float
    rps: float
    p95_ms: float
    errors: int


class _Payloads:
    """Request bytes per endpoint: one constant, or a ring built ahead of time.

    Building with httpx costs ~30 µs; the ring is refilled between sends in
    slices, so a builder's cost is not paid on the schedule's critical path.
    """

    def __init__(self, scenario: Scenario, ctx: Context, ahead: int) -> None:
        self._ctx = ctx
        self._builders = [r.build for r in scenario.requests]
        self._static: list[bytes | None] = []
        self._rings: list[deque[bytes]] = []
        self._ahead = ahead
        for build in self._builders:
            if callable(build):
                self._static.append(None)
                self._rings.append(deque(encode_request(build(ctx)) for _ in range(ahead)))
            else:
                self._static.append(encode_request(build))
                self._rings.append(deque())

    def get(self, endpoint: int) -> bytes:
        static = self._static[endpoint]
        if static is not None:
            return static
        ring = self._rings[endpoint]
        if not ring:
            self.refill(endpoint, 1)
        return ring.popleft()

    def refill(self, endpoint: int, count: int) -> None:
        build = self._builders[endpoint]
        assert callable(build)
        ring = self._rings[endpoint]
        for _ in range(count):
            ring.append(encode_request(build(self._ctx)))

    def top_up(self, budget_ns: int = 2_000_000) -> None:
        """Refill the rings for at most ``budget_ns`` (called off the hot path).

        The budget keeps the event loop from stalling (a stall would make sends
        late); a ring that runs dry is refilled inline, one request at a time.
        """
        deadline = time.perf_counter_ns() + budget_ns
        for ep, static in enumerate(self._static):
            if static is None:
                ring = self._rings[ep]
                build = self._builders[ep]
                assert callable(build)
                while len(ring) < self._ahead and time.perf_counter_ns() < deadline:
                    ring.append(encode_request(build(self._ctx)))


class _Engine:
    """One run. Not reusable; see :func:`run_load`."""

    def __init__(
        self,
        target: str,
        scenario: Scenario,
        phases: Sequence[Phase],
        options: EngineOptions,
        progress: Callable[[Progress], None] | None,
        start_at_ns: int | None = None,
    ) -> None:
        self.start_at_ns = start_at_ns
        self.host, self.port = check_target(target, options.allowed_hosts)
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
        self.target = target
        self.scenario = scenario
        self.phases = list(phases)
        self.opt = options
        self.progress = progress
        self.requests = scenario.requests
        self.n_ep = len(self.requests)
        self.rec = Recorder(len(self.phases), scenario.names)
        self.ctx = Context(target.rstrip("/"), scenario.data, scenario.seed)
        self.payloads = _Payloads(scenario, self.ctx, options.prebuilt)
        self.want_body = [r.check is not None for r in self.requests]
        # A long cycle of endpoint indices drawn by weight with the seeded RNG.
        self.mix = self.ctx.rng.choices(
            range(self.n_ep), weights=[r.weight for r in self.requests], k=8192
        )
        self.mix_i = 0
        self.timeout_ns = int(options.timeout * _NS)
        self.late_ns = int(options.late_threshold * _NS)
        self.conns: list[Connection] = []
        self.idle: list[Connection] = []
        self.connecting = 0
        self.backlog: deque[tuple[int, int, int]] = deque()  # (intended, endpoint, cell)
        self.max_backlog = max(10_000, 10 * options.max_connections)
        self.sends = 0
        self.scheduled = 0
        self.late = 0
        self.late_generator = 0
        self.measured_sends = 0
        self.dropped = 0
        self.opened = 0
        self.lag = new_histogram()
        self.stop_reason = ""
        self.phase_i = -1
        self.open_phase: OpenPhase | None = None
        self.k = 0
        self.k_end = 0
        self.phase_start_ns = 0
        self.next_ns = 0
        self.users_wanted = 0
        self.users_alive = 0
        self.think = 0.0
        self.finished = False
        self.idle_ticks = 0
        self.tick_gen = 0

    # -- lifecycle ----------------------------------------------------------

    async def run(self) -> LoadResult:
        raise_nofile(self.opt.max_connections + 64)
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        # CLOCK_MONOTONIC is one clock for all processes: workers share a start.
        self.t0 = self.start_at_ns or time.perf_counter_ns() + _NS // 100
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
        self.loop.call_later(0.05, self._sweep)
        try:
            await self.done
        finally:
            for conn in self.conns:
                conn.abort()
            self.ctx.close()
        wall = time.perf_counter() - wall0
        cpu = (time.process_time() - cpu0) / wall if wall else 0.0
        return self._result(starts, wall, cpu)

    def _at(self, when_ns: int, func: Callable[..., None], *args: object) -> None:
        delay = max(0.0, (when_ns - time.perf_counter_ns()) / _NS)
        self.loop.call_later(delay, func, *args)

    def _catch_up(self) -> None:
        """Send what is left of the open phase's schedule (its end timer may fire a hair early)."""
        if self.open_phase is not None and self.k < self.k_end and not self.stop_reason:
            self._send_due(time.perf_counter_ns(), self.end_ns)

    def _enter_phase(self, index: int) -> None:
        if self.finished:
            return
        self._catch_up()
        self.phase_i = index
        phase = self.phases[index]
        self.phase_start_ns = self.t0 + int(sum(p.duration for p in self.phases[:index]) * _NS)
        if isinstance(phase, OpenPhase):
            self.open_phase = phase
            self.k, self.k_end = 0, phase.expected_requests
            self.next_ns = self.phase_start_ns
            self._set_users(0)
            warm = min(self.opt.max_connections, max(4, math.ceil(phase.start_rate / 200)))
            while len(self.conns) + self.connecting < warm:
                self._connect()
            self.tick_gen += 1
            self._open_tick(self.tick_gen)
        else:
            self.open_phase = None
            self.think = phase.think_time
            self._set_users(phase.users)

    def _finish(self) -> None:
        if self.finished:
            return
        self._catch_up()
        self.finished = True
        self.open_phase = None
        self.users_wanted = 0
        if not self.stop_reason:
            self.stop_reason = "phases complete"
        # Queued requests were scheduled: they are still sent (or time out).
        self._maybe_done()

    def _maybe_done(self) -> None:
        if (
            self.finished
            and not self.backlog
            and not any(c.busy for c in self.conns)
            and not self.done.done()
        ):
            self.rec.flush_second(self._second)
            self.done.set_result(None)

    # -- open model ---------------------------------------------------------

    def _open_tick(self, gen: int) -> None:
        if gen != self.tick_gen or self.open_phase is None or self.finished:
            return  # a tick chain of an earlier phase
        now = time.perf_counter_ns()
        if self.next_ns <= now:
            self.lag.record_value(min((now - self.next_ns) // 1000, 60_000_000))
        elif self.open_phase.role == "measure":
            # Woken with nothing due: the generator had time to spare.
            self.idle_ticks += 1
        self._send_due(now, now)
        if self.k < self.k_end and not self.finished:
            delay = (self.next_ns - time.perf_counter_ns()) / _NS
            self.loop.call_later(max(0.0, delay), self._open_tick, gen)

    def _send_due(self, now: int, until: int) -> None:
        """Send (or queue) every scheduled request whose intended time is <= ``until``."""
        phase = self.open_phase
        assert phase is not None
        cell_base = self.phase_i * self.n_ep
        measured = phase.role == "measure"
        while self.k < self.k_end and self.next_ns <= until:
            if self.scheduled >= self.opt.max_requests:
                self.stop_reason = f"max_requests ({self.opt.max_requests}) reached"
                self._finish()
                return
            ep = self.mix[self.mix_i]
            self.mix_i = (self.mix_i + 1) & 8191
            intended = self.next_ns
            cell = cell_base + ep
            self.rec.requests[cell] += 1
            self.scheduled += 1
            if self.idle:
                if now - intended > self.late_ns:
                    self.late += 1
                    if measured:
                        self.late_generator += 1
                self._send(self.idle.pop(), intended, ep, cell)
            elif len(self.backlog) < self.max_backlog:
                self.backlog.append((intended, ep, cell))
                if len(self.conns) + self.connecting < self.opt.max_connections:
                    self._connect()
            else:
                self.dropped += 1
                self.rec.error(cell, DROPPED)
            if measured:
                self.measured_sends += 1
            self.k += 1
            self.next_ns = self.phase_start_ns + int(phase.offset(self.k) * _NS)

    def _send(self, conn: Connection, intended: int, ep: int, cell: int) -> None:
        conn.endpoint = ep
        conn.cell = cell
        conn.intended = intended
        conn.want_body = self.want_body[ep]
        data = self.payloads.get(ep)
        now = time.perf_counter_ns()
        conn.sent = now
        conn.deadline = now + self.timeout_ns
        self.sends += 1
        conn.send(data)

    def _next_for(self, conn: Connection) -> None:
        """A connection is free: give it queued work, or a user's next request."""
        if conn.user >= 0:
            self._user_next(conn)
            return
        if self.backlog:
            intended, ep, cell = self.backlog.popleft()
            if time.perf_counter_ns() - intended > self.late_ns:
                self.late += 1
            self._send(conn, intended, ep, cell)
        else:
            self.idle.append(conn)

    # -- closed model -------------------------------------------------------

    def _set_users(self, wanted: int) -> None:
        self.users_wanted = wanted
        while self.users_alive < wanted:
            self.users_alive += 1
            self._connect(user=self.users_alive - 1)
        # Surplus users stop after their current request (see _user_next).

    def _user_next(self, conn: Connection) -> None:
        if self.finished or conn.user >= self.users_wanted or self.open_phase is not None:
            self.users_alive -= 1
            self._drop(conn)
            conn.close()
            return
        if self.think:
            self.loop.call_later(self.think, self._user_send, conn)
        else:
            self._user_send(conn)

    def _user_send(self, conn: Connection) -> None:
        if conn.closed:
            return
        if self.finished or conn.user >= self.users_wanted:
            self._user_next(conn)
            return
        if self.scheduled >= self.opt.max_requests:
            self.stop_reason = f"max_requests ({self.opt.max_requests}) reached"
            self._finish()
            return
        ep = self.mix[self.mix_i]
        self.mix_i = (self.mix_i + 1) & 8191
        if self.phases[self.phase_i].role == "measure":
            self.measured_sends += 1
        now = time.perf_counter_ns()
        cell = self.phase_i * self.n_ep + ep
        self.rec.requests[cell] += 1
        self.scheduled += 1
        self._send(conn, now, ep, cell)

    # -- connections --------------------------------------------------------

    def _connect(self, user: int = -1) -> None:
        self.connecting += 1
        coro = self.loop.create_connection(lambda: Connection(self, user), self.host, self.port)
        task = self.loop.create_task(coro)
        task.add_done_callback(lambda t: self._connected_or_not(t, user))

    def _connected_or_not(self, task: asyncio.Task[tuple[object, Connection]], user: int) -> None:
        self.connecting -= 1
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return  # on_connected has run
        # The connection failed: the request that was waiting for it fails too.
        if user >= 0:
            # The user's next request is the one that could not be sent.
            cell = self.phase_i * self.n_ep + self.mix[self.mix_i]
            self.mix_i = (self.mix_i + 1) & 8191
            self.rec.requests[cell] += 1
            self.rec.error(cell, CONNECT)
            self.users_alive -= 1
            if not self.finished and self.users_alive < self.users_wanted:
                # Retry after a pause, so a dead server is not hammered in a hot loop.
                self.loop.call_later(0.01, self._set_users, self.users_wanted)
        elif self.backlog:
            _, _, cell = self.backlog.popleft()
            self.rec.error(cell, CONNECT)
            if self.backlog:
                self.loop.call_later(0.001, self._regrow)
        self._maybe_done()

    def _regrow(self) -> None:
        if self.backlog and len(self.conns) + self.connecting < self.opt.max_connections:
            self._connect()

    def on_connected(self, conn: Connection) -> None:
        self.conns.append(conn)
        self.opened += 1
        if self.finished and not self.backlog:
            conn.close()
            self._drop(conn)
            self._maybe_done()
            return
        self._next_for(conn)

    def on_answer(self, conn: Connection, status: int, keep_alive: bool) -> None:
        now = time.perf_counter_ns()
        conn.busy = False
        cell, ep = conn.cell, conn.endpoint
        self.rec.answer(cell, (now - conn.intended) // 1000, (now - conn.sent) // 1000, status)
        request = self.requests[ep]
        if not request.accepts(status):
            self.rec.error(cell, STATUS)
        elif request.check is not None and not request.check(status, conn.take_body()):
            self.rec.error(cell, CHECK)
        if not keep_alive:
            # e.g. nginx after 1,000 requests: reconnect, lose nothing.
            conn.close()
            self._drop(conn)
            if conn.user >= 0:
                if self.finished or conn.user >= self.users_wanted:
                    self.users_alive -= 1
                else:
                    self._connect(user=conn.user)
            elif self.backlog:
                self._connect()
        else:
            self._next_for(conn)
        if self.finished:
            self._maybe_done()

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        self._drop(conn)
        if conn.busy:
            conn.busy = False
            self.rec.error(conn.cell, CLOSED)
        if conn.user >= 0:
            if not self.finished and conn.user < self.users_wanted:
                self._connect(user=conn.user)
            else:
                self.users_alive -= 1
        elif self.backlog:
            self._connect()
        self._maybe_done()

    def _drop(self, conn: Connection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    # -- housekeeping -------------------------------------------------------

    def _sweep(self) -> None:
        now = time.perf_counter_ns()
        self.lag.record_value(min(max(0, now - self._sweep_expected) // 1000, 60_000_000))
        for conn in list(self.conns):
            if conn.busy and now > conn.deadline:
                conn.busy = False
                self.rec.error(conn.cell, TIMEOUT)
                conn.abort()
                self.on_lost(conn, None)
        while self.backlog and now - self.backlog[0][0] > self.timeout_ns:
            self.rec.error(self.backlog.popleft()[2], TIMEOUT)
        self.payloads.top_up()
        if self.finished:
            self._maybe_done()
        if not self.done.done():
            self._sweep_expected = time.perf_counter_ns() + 50_000_000
            self.loop.call_later(0.05, self._sweep)

    def _tick_second(self) -> None:
        if self.done.done():
            return
        summary = self.rec.flush_second(self._second)
        self._second += 1
        if self.progress is not None and self.phase_i >= 0:
            answered = sum(s.requests for s in summary)
            p95 = max((s.p95 for s in summary if s.requests), default=float("nan"))
            self.progress(
                Progress(
                    phase=self.phases[self.phase_i].name,
                    elapsed=self._second,
                    total=(self.end_ns - self.t0) / _NS,
                    rps=answered,
                    p95_ms=p95,
                    errors=sum(s.errors for s in summary),
                )
            )
        self._at(self.t0 + (self._second + 1) * _NS, self._tick_second)

    # -- result -------------------------------------------------------------

    def _saturation(self, cpu: float) -> tuple[bool, str]:
        """Was the generator, not the service, the bottleneck?

        Three signs, each with late sends: they left late although a connection
        was free; the event loop's own timers ran late (something blocks it);
        or the generator used its whole core and never woke with nothing to do.
        """
        sends = self.measured_sends
        if not sends:
            return False, ""
        gen_share = self.late_generator / sends
        late_share = self.late / max(1, self.sends)
        open_s = sum(
            p.duration for p in self.phases if isinstance(p, OpenPhase) and p.role == "measure"
        )
        idle_rate = self.idle_ticks / open_s if open_s else float("inf")
        lag = percentiles(self.lag).p99 if self.lag.get_total_count() else 0.0
        facts = (
            f"event-loop lag p99 {lag:.1f} ms, generator CPU {cpu:.0%}, "
            f"{idle_rate:.0f} idle wake-ups/s"
        )
        limit = self.opt.saturation_share
        # A handful of late sends (a GC pause, the first connect) is noise, not saturation.
        if gen_share > limit and self.late_generator >= 10:
            return True, (
                f"{gen_share:.1%} of measured sends left more than "
                f"{self.opt.late_threshold * 1000:g} ms after their intended time although a "
                f"connection was free ({facts}): the generator, not the service, was the "
                f"bottleneck"
            )
        if late_share > limit and self.late >= 10 and lag > 5 * self.opt.late_threshold * 1000:
            return True, (
                f"{late_share:.1%} of sends were late while the event loop itself was held up "
                f"({facts}; a slow check or builder blocks it): the generator, not the service, "
                f"was the bottleneck"
            )
        if late_share > limit and self.late >= 10 and cpu > 0.9 and idle_rate < 50:
            return True, (
                f"{late_share:.1%} of sends were late while the generator used its whole core "
                f"and never idled ({facts}): the generator, not the service, was the bottleneck"
            )
        return False, ""

    def _result(self, starts: list[float], wall: float, cpu: float) -> LoadResult:
        rec = self.rec
        rec.fold()
        infos = []
        for phase, start in zip(self.phases, starts, strict=True):
            infos.append(
                PhaseInfo(
                    name=phase.name,
                    role=phase.role,
                    model="open" if isinstance(phase, OpenPhase) else "closed",
                    description=phase.describe(),
                    start=start,
                    duration=phase.duration,
                    target_rate=(phase.start_rate + phase.end_rate) / 2
                    if isinstance(phase, OpenPhase)
                    else None,
                    users=phase.users if isinstance(phase, ClosedPhase) else None,
                )
            )
        cells = []
        for i, phase in enumerate(self.phases):
            for ep, name in enumerate(self.scenario.names):
                c = i * self.n_ep + ep
                cells.append(
                    Cell(
                        phase=phase.name,
                        endpoint=name,
                        requests=rec.requests[c],
                        latency=rec.latency[c],
                        service_time=rec.service[c],
                        errors=dict(zip(ERROR_KINDS, rec.errors[c], strict=True)),
                        statuses=dict(rec.statuses[c]),
                    )
                )
        saturated, reason = self._saturation(cpu)
        lag_p99 = percentiles(self.lag).p99 if self.lag.get_total_count() else 0.0
        return LoadResult(
            target=self.target,
            phases=tuple(infos),
            cells=tuple(cells),
            seconds=tuple(rec.seconds),
            late=self.late,
            late_generator=self.late_generator,
            dropped=self.dropped,
            wall_time=wall,
            generator_cpu=cpu,
            loop_lag_p99_ms=lag_p99,
            connections_opened=self.opened,
            saturated=saturated,
            saturation_reason=reason,
            stop_reason=self.stop_reason,
        )


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
) -> LoadResult:
    """Run ``phases`` of ``scenario`` against ``target`` (blocking) and return the result."""
    engine = _Engine(target, scenario, phases, options or EngineOptions(), progress, start_at_ns)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        try:
            return runner.run(engine.run())
        except OSError as exc:
            raise LoadError(f"the load run failed: {exc}") from exc
