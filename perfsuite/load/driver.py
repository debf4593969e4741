"""Driving requests over connections: the open-model schedule, virtual users.
What comes back is taken by ``events.py``; the run's timeline and results are
in ``engine.py``.

Open model: a ticker sends every request whose *intended* time has come, on
an idle connection, or queues it until one is free; latency counts from the
intended time (no coordinated omission). The ticker never sleeps less than
one tick (1 ms): uvloop's timers have millisecond resolution, so waiting for
the exact time of each send would spin a core at high rates; a send leaves
up to a tick late, and that is in its latency. Closed model: each virtual user
sends, waits for the answer, thinks, and sends again.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from perfsuite.load.corewait import CoreWait
from perfsuite.load.events import ConnectionEvents, Queued, endpoint_specs
from perfsuite.load.journey import Journey, User
from perfsuite.load.options import EngineOptions
from perfsuite.load.payloads import Payloads
from perfsuite.load.phases import Arrival, OpenPhase, Phase, ReplayPhase
from perfsuite.load.recorder import Recorder, Second, SecondReport
from perfsuite.load.scenario import Context, Request, Scenario
from perfsuite.load.transport import Connection
from perfsuite.stats.hdr import new_histogram

__all__ = ["Driver", "tls_context"]

_NS = 1_000_000_000


def tls_context(options: EngineOptions) -> ssl.SSLContext:
    """The client side of TLS: verified against ``ca_bundle`` or the system's CAs,
    or not at all with ``verify=False``; HTTP/1.1 offered by ALPN."""
    context = ssl.create_default_context(cafile=options.ca_bundle)
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def _starts(items: Sequence[Request | Journey]) -> list[int]:
    """Each item's first endpoint (a journey's own, before its steps)."""
    starts, ep = [], 0
    for item in items:
        starts.append(ep)
        ep += 1 if isinstance(item, Request) else 1 + len(item.steps)
    return starts


class Driver(ConnectionEvents):
    """The state of a run and the callbacks that move requests."""

    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    end_ns: int
    t0: int
    _second: int

    def __init__(
        self,
        target: str,
        host: str,
        port: int,
        scenario: Scenario,
        phases: Sequence[Phase],
        options: EngineOptions,
    ) -> None:
        self.host, self.port = host, port
        self.target = target
        self.tls = tls_context(options) if target.startswith("https:") else None
        self.scenario = scenario
        self.phases = list(phases)
        self.opt = options
        names = scenario.names
        self.n_ep = len(names)
        self.specs, self.journeys = endpoint_specs(scenario.items)
        self.any_journey = any(j is not None for j in self.journeys)
        self.user_state: dict[int, User] = {}  # closed model: each user's cookies
        self.user_pending: dict[int, Queued] = {}  # a user's next step, waiting to reconnect
        spans, start = [], 0.0
        for phase in self.phases:
            spans.append((start, start + phase.duration))
            start += phase.duration
        self.rec = Recorder(len(self.phases), names, spans)
        self.on_second: Callable[[SecondReport], None] | None = None
        self.ctx = Context(target.rstrip("/"), scenario.data, scenario.seed)
        self.payloads = Payloads(
            [s.build if isinstance(s, Request) else None for s in self.specs],
            self.ctx,
            options.prebuilt,
        )
        self.want_body = [
            isinstance(s, Request) and (s.check is not None or s.stale is not None)
            for s in self.specs
        ]
        # A long cycle of endpoint indices (requests, journeys' starts) drawn by weight.
        weights = [0.0] * self.n_ep
        for item, ep in zip(scenario.items, _starts(scenario.items), strict=True):
            weights[ep] = item.weight
        self.mix = self.ctx.rng.choices(range(self.n_ep), weights=weights, k=8192)
        self.mix_i = 0
        self.timeout_ns = int(options.timeout * _NS)
        self.late_ns = int(options.late_threshold * _NS)
        self.conns: list[Connection] = []
        self.idle: list[Connection] = []
        self.connecting = 0
        self.backlog: deque[Queued] = deque()  # (intended, endpoint, cell, journey run)
        self.max_backlog = max(10_000, 10 * options.max_connections)
        self.sends = 0
        self.scheduled = 0
        self.late = 0
        self.late_generator = 0
        self.measured_sends = 0
        self.dropped = 0
        self.opened = 0
        self.lag = new_histogram()
        # The event loop's stalls: how late its timers woke, the worst of each second,
        # less the time the machine kept the generator waiting for a core.
        self.stall_ns = 0
        self.core_wait = CoreWait()
        self.tick_waited = self.core_wait.lap()
        self.stalls_ms: list[float] = []
        self.tick_expected = 0
        self.stop_reason = ""
        self.phase_i = -1
        self.open_phase: OpenPhase | None = None
        # A replay phase's arrivals: this worker's, read as the schedule goes; those
        # scheduled but not yet sent wait per endpoint, in order (sends are in order).
        self.arrivals: Iterator[Arrival] | None = None
        self.arrival: Arrival | None = None
        self.replay_waiting: list[deque[Arrival]] = [deque() for _ in range(self.n_ep)]
        # Each replay phase's reading, started now: its first arrival may wait on a
        # window of the capture being read (10,000 requests), which is not the run's time.
        self.primed: dict[int, tuple[Iterator[Arrival], Arrival | None]] = {}
        for i, phase in enumerate(self.phases):
            if isinstance(phase, ReplayPhase):
                arrivals = phase.schedule(options.worker, options.workers)
                self.primed[i] = (arrivals, next(arrivals, None))
        self.k = 0
        self.k_end = 0
        self.k_step = options.workers  # arrival i is this engine's when i % workers == worker
        self.tick_ns = int(options.tick * _NS)
        self.phase_start_ns = 0
        self.next_ns = 0
        self.users_wanted = 0
        self.users_alive = 0
        self.think = 0.0
        self.finished = False
        self.idle_ticks = 0
        self.tick_gen = 0
        self.interrupted_by = ""  # the signal that stopped the run early, if one did
        self.stopped_ns = 0
        self.abandoned = 0
        self.at_limit = 0  # requests queued because max_connections were all busy
        self.queue_wait_max = 0  # ns: the longest a queued request waited for a connection
        self.unsolicited = 0  # responses nobody asked for (their connections were closed)
        self.truncated = 0  # bodies longer than max_body (the rest was counted, not kept)
        self.check_exceptions: dict[str, int] = {}  # "name: ValueError: ..." -> times raised
        self.connect_failures: dict[str, int] = {}  # "ConnectionRefusedError: ..." -> times

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
            self.k, self.k_end = self.opt.worker, phase.expected_requests
            if isinstance(phase, ReplayPhase):
                self.arrivals, self.arrival = self.primed.pop(index)
                self._arrived()
            else:
                self.arrivals, self.arrival = None, None
                self.next_ns = self.phase_start_ns + int(phase.offset(self.k) * _NS)
            self._set_users(0)
            rate = phase.start_rate / self.k_step
            warm = min(self.opt.max_connections, max(4, math.ceil(rate / 200)))
            while len(self.conns) + self.connecting < warm:
                self._connect()
            self.tick_gen += 1
            self.tick_expected = time.perf_counter_ns()
            self._open_tick(self.tick_gen)
        else:
            self.open_phase = None
            self.arrivals, self.arrival = None, None
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
            self.flush_second()
            self.done.set_result(None)

    def flush_second(self) -> list[Second]:
        """Close the current second in the recorder, and report it to ``on_second``."""
        mark = len(self.rec.second_bins)
        summary = self.rec.flush_second(self._second)
        if self.on_second is not None and summary:
            report = SecondReport(
                phase=self.phases[max(self.phase_i, 0)].name,
                seconds=tuple(summary),
                bins=tuple(self.rec.second_bins[mark:]),
                endpoints=tuple(self.rec.endpoints),
                late=self.late,
                late_generator=self.late_generator,
                dropped=self.dropped,
                cpu_seconds=time.process_time(),
            )
            self.on_second(report)  # a live exporter's: it keeps its own faults to itself
        return summary

    # -- open model ---------------------------------------------------------

    def _open_tick(self, gen: int) -> None:
        if gen != self.tick_gen or self.open_phase is None or self.finished:
            return  # a tick chain of an earlier phase
        now = time.perf_counter_ns()
        waited = self.tick_waited()
        self.stall_ns = max(self.stall_ns, now - self.tick_expected - waited)
        if self.next_ns <= now:
            held = max(0, now - self.next_ns - waited)
            self.lag.record_value(min(held // 1000, 60_000_000))
        elif self.open_phase.role == "measure":
            # Woken with nothing due: the generator had time to spare.
            self.idle_ticks += 1
        self._send_due(now, now)
        if self.k < self.k_end and not self.finished:
            now = time.perf_counter_ns()
            delay = max(self.tick_ns, self.next_ns - now)
            # uvloop's timers keep whole ms: a wake-up within a ms of its time is on time.
            self.tick_expected = now + delay + 1_000_000
            self.loop.call_later(delay / _NS, self._open_tick, gen)

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
            if self.arrival is not None:  # a replay: the schedule says which endpoint
                ep = self.arrival.endpoint
                self.replay_waiting[ep].append(self.arrival)
            else:
                ep = self.mix[self.mix_i]
                self.mix_i = (self.mix_i + 1) & 8191
            intended = self.next_ns
            if self.any_journey:
                queued = self._start(ep, cell_base, intended, -1)
            else:  # the plain path, inline: the generator's hottest loop
                queued = (intended, ep, cell_base + ep, None)
                self.rec.requests[cell_base + ep] += 1
            self.scheduled += 1
            if self.idle:
                if now - intended > self.late_ns:
                    self.late += 1
                    if measured:
                        self.late_generator += 1
                self._send(self.idle.pop(), *queued)
            elif len(self.backlog) < self.max_backlog:
                self.backlog.append(queued)
                if len(self.conns) + self.connecting < self.opt.max_connections:
                    self._connect()
                else:
                    self.at_limit += 1
            else:
                self.dropped += 1
                if self.arrival is not None:
                    self.replay_waiting[ep].pop()  # never sent: not waiting any more
                self.rec.dropped(queued[2])
                if queued[3] is not None:
                    self.rec.dropped(queued[3].cell)
            if measured:
                self.measured_sends += 1
            self.k += self.k_step
            if self.arrivals is not None:
                self._next_arrival()
            else:
                self.next_ns = self.phase_start_ns + int(phase.offset(self.k) * _NS)

    def _next_arrival(self) -> None:
        """The replay's next arrival (none left: the phase's schedule is done)."""
        assert self.arrivals is not None
        self.arrival = next(self.arrivals, None)
        self._arrived()

    def _arrived(self) -> None:
        if self.arrival is None:
            self.k = self.k_end
        else:
            self.next_ns = self.phase_start_ns + int(self.arrival.offset * _NS)

    def _next_for(self, conn: Connection) -> None:
        """A connection is free: give it queued work, or a user's next request."""
        if conn.user >= 0:
            self._user_next(conn)
            return
        if self.backlog:
            queued = self.backlog.popleft()
            waited = time.perf_counter_ns() - queued[0]
            if waited > self.late_ns:
                self.late += 1
            self.queue_wait_max = max(self.queue_wait_max, waited)
            self._send(conn, *queued)
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
        pending = self.user_pending.pop(conn.user, None)
        if pending is not None:  # a journey's step, sent once the user has a connection
            self._send(conn, *pending)
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
        self.scheduled += 1
        self._send(conn, *self._start(ep, self.phase_i * self.n_ep, now, conn.user))

    # -- interruption -------------------------------------------------------

    def interrupt(self, signal_name: str) -> None:
        """Stop now (Ctrl-C, SIGTERM): send nothing more, keep what was measured.

        Requests in flight or queued are abandoned: neither answered nor the
        service's failure, they are taken out of the counts (``abandoned``).
        """
        if self.done.done() or self.interrupted_by:
            return
        self.interrupted_by = signal_name
        self.stopped_ns = time.perf_counter_ns()
        self.stop_reason = f"interrupted by {signal_name}"
        self.finished = True
        self.open_phase = None
        self.users_wanted = 0
        runs = []
        for conn in list(self.conns):
            if conn.busy:
                conn.busy = False
                self.rec.withdraw(conn.cell)
                runs.append(conn.run)
                self.abandoned += 1
            conn.abort()
        queued = [*self.backlog, *self.user_pending.values()]
        self.backlog.clear()
        self.user_pending.clear()
        for _, _, cell, run in queued:
            self.rec.withdraw(cell)
            runs.append(run)
            self.abandoned += 1
        for run in runs:  # a journey cut short is not counted either
            if run is not None:
                self.rec.withdraw(run.cell)
        self._maybe_done()
