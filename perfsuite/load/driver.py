"""Driving requests over connections: the open-model schedule, virtual users,
connection events. The run's timeline and results are in ``engine.py``.

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
from collections.abc import Callable, Sequence

from perfsuite.load.options import EngineOptions
from perfsuite.load.payloads import Payloads
from perfsuite.load.phases import OpenPhase, Phase
from perfsuite.load.recorder import CHECK, CLOSED, CONNECT, STATUS, Recorder
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


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


class Driver:
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
        self.requests = scenario.requests
        self.n_ep = len(self.requests)
        spans, start = [], 0.0
        for phase in self.phases:
            spans.append((start, start + phase.duration))
            start += phase.duration
        self.rec = Recorder(len(self.phases), scenario.names, spans)
        self.ctx = Context(target.rstrip("/"), scenario.data, scenario.seed)
        self.payloads = Payloads(scenario, self.ctx, options.prebuilt)
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
        # The event loop's stalls: how late its timers woke, the worst of each second.
        self.stall_ns = 0
        self.stalls_ms: list[float] = []
        self.tick_expected = 0
        self.stop_reason = ""
        self.phase_i = -1
        self.open_phase: OpenPhase | None = None
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
        self.stall_ns = max(self.stall_ns, now - self.tick_expected)
        if self.next_ns <= now:
            self.lag.record_value(min((now - self.next_ns) // 1000, 60_000_000))
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
                    self.at_limit += 1
            else:
                self.dropped += 1
                self.rec.dropped(cell)
            if measured:
                self.measured_sends += 1
            self.k += self.k_step
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
            waited = time.perf_counter_ns() - intended
            if waited > self.late_ns:
                self.late += 1
            self.queue_wait_max = max(self.queue_wait_max, waited)
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
        max_body = self.opt.max_body
        # server_hostname: SNI and the name the certificate is checked against.
        coro = asyncio.wait_for(
            self.loop.create_connection(
                lambda: Connection(self, user, max_body),
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.host if self.tls else None,
            ),
            self.opt.connect_timeout,
        )
        task = self.loop.create_task(coro)
        started = time.perf_counter_ns()
        task.add_done_callback(lambda t: self._connected_or_not(t, user, started))

    def _connected_or_not(
        self, task: asyncio.Task[tuple[object, Connection]], user: int, started: int
    ) -> None:
        self.connecting -= 1
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return  # on_connected has run
        # The connection failed (refused, not made within connect_timeout, a TLS
        # handshake refused): the request waiting for it fails too, after its wait.
        now = time.perf_counter_ns()
        reason = "connect timeout" if isinstance(exc, TimeoutError) else _reason(exc)
        if reason in self.connect_failures or len(self.connect_failures) < 20:
            self.connect_failures[reason] = self.connect_failures.get(reason, 0) + 1
        if user >= 0:
            # The user's next request is the one that could not be sent.
            cell = self.phase_i * self.n_ep + self.mix[self.mix_i]
            self.mix_i = (self.mix_i + 1) & 8191
            self.rec.requests[cell] += 1
            self.rec.failed(cell, CONNECT, (now - started) // 1000)
            self.users_alive -= 1
            if not self.finished and self.users_alive < self.users_wanted:
                # Retry after a pause, so a dead server is not hammered in a hot loop.
                self.loop.call_later(0.01, self._set_users, self.users_wanted)
        elif self.backlog:
            intended, _, cell = self.backlog.popleft()
            self.rec.failed(cell, CONNECT, (now - intended) // 1000)
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
        latency, service = (now - conn.intended) // 1000, (now - conn.sent) // 1000
        request = self.requests[ep]
        if conn.truncated:
            self.truncated += 1
        if not request.accepts(status):
            self.rec.failed(cell, STATUS, latency, service, status)
        elif request.check is not None and not self._check(request, status, conn.take_body()):
            self.rec.failed(cell, CHECK, latency, service, status)
        else:
            self.rec.answer(cell, latency, service, status)
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

    def _check(self, request: Request, status: int, body: bytes) -> bool:
        """Run a request's check; one that raises is a failed check, its exception kept."""
        assert request.check is not None
        try:
            return bool(request.check(status, body))
        except Exception as exc:  # a user's predicate: anything can come out of it
            text = f"{request.name}: {type(exc).__name__}: {exc}"[:200]
            if text in self.check_exceptions or len(self.check_exceptions) < 20:
                self.check_exceptions[text] = self.check_exceptions.get(text, 0) + 1
            else:  # a bounded record: the first 20 kinds, then a total of the rest
                other = f"{request.name}: (other exceptions)"
                self.check_exceptions[other] = self.check_exceptions.get(other, 0) + 1
            return False

    def on_unsolicited(self, conn: Connection, count: int) -> None:
        """Responses came that nobody asked for: the connection is not to be trusted."""
        self.unsolicited += count
        if not conn.busy:  # an idle connection: gone like a closed one, nothing in flight
            self.on_lost(conn, None)

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        self._drop(conn)
        if conn.busy:
            conn.busy = False
            now = time.perf_counter_ns()
            latency, service = (now - conn.intended) // 1000, (now - conn.sent) // 1000
            self.rec.failed(conn.cell, CLOSED, latency, service)
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
        for conn in list(self.conns):
            if conn.busy:
                conn.busy = False
                self.rec.withdraw(conn.cell)
                self.abandoned += 1
            conn.abort()
        while self.backlog:
            self.rec.withdraw(self.backlog.popleft()[2])
            self.abandoned += 1
        self._maybe_done()
