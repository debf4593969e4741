"""What happens on a connection: made or not, answered, lost; and journeys' steps.

The :class:`~perfsuite.load.driver.Driver` sends; this base class takes what
comes back. A journey's step that succeeds sends the next step on the same
connection at once; a step that fails (or a request lost on the way) ends
its journey, whose own endpoint then records the failure.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Sequence

from perfsuite.load.journey import Journey, JourneyRun, Response, Step, User
from perfsuite.load.options import EngineOptions
from perfsuite.load.payloads import Payloads
from perfsuite.load.phases import Arrival
from perfsuite.load.recorder import CHECK, CLOSED, CONNECT, STATUS, Recorder
from perfsuite.load.scenario import Check, Context, Request
from perfsuite.load.transport import Connection, JourneyConnection

__all__ = ["ConnectionEvents", "Queued"]

# A request waiting for a connection: (intended ns, endpoint, cell, its journey run).
Queued = tuple[int, int, int, JourneyRun | None]


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


class ConnectionEvents:
    """Connection callbacks and journey steps, on the driver's state."""

    # The driver's state (set in Driver.__init__) that these methods use.
    loop: asyncio.AbstractEventLoop
    opt: EngineOptions
    host: str
    port: int
    tls: ssl.SSLContext | None
    rec: Recorder
    ctx: Context
    payloads: Payloads
    specs: list[Request | Step | None]
    journeys: list[Journey | None]
    any_journey: bool
    want_body: list[bool]
    mix: list[int]
    mix_i: int
    n_ep: int
    phase_i: int
    conns: list[Connection]
    idle: list[Connection]
    connecting: int
    backlog: deque[Queued]
    finished: bool
    users_wanted: int
    users_alive: int
    replay_waiting: list[deque[Arrival]]
    user_state: dict[int, User]
    user_pending: dict[int, Queued]
    opened: int
    sends: int
    timeout_ns: int
    truncated: int
    unsolicited: int
    check_exceptions: dict[str, int]
    connect_failures: dict[str, int]

    # The driver's (see driver.py).
    def _next_for(self, conn: Connection) -> None: ...
    def _maybe_done(self) -> None: ...
    def _set_users(self, wanted: int) -> None: ...

    # -- sending ------------------------------------------------------------

    def _start(self, ep: int, cell_base: int, intended: int, user: int) -> Queued:
        """What the mix drew at ``ep``: a request, or the first step of a new journey run."""
        journey = self.journeys[ep]
        cell = cell_base + ep
        self.rec.requests[cell] += 1
        if journey is None:
            return intended, ep, cell, None
        person = self.user_state.setdefault(user, User(self.ctx)) if user >= 0 else None
        if person is not None:
            person.vars.clear()  # a user's loop starts afresh, its cookies kept
        run = JourneyRun(journey, ep, cell, intended, person or User(self.ctx))
        self.rec.requests[cell + 1] += 1
        return intended, ep + 1, cell + 1, run

    def _send(
        self, conn: Connection, intended: int, ep: int, cell: int, run: JourneyRun | None = None
    ) -> None:
        conn.endpoint = ep
        conn.cell = cell
        conn.intended = intended
        conn.run = run
        conn.arrival = None
        waiting = self.replay_waiting[ep]
        if waiting:  # a replayed request: its own bytes, its answer to its arrival
            arrival = conn.arrival = waiting.popleft()
            conn.want_body = arrival.on_answer is not None
            data = arrival.data if isinstance(arrival.data, bytes) else arrival.data()
        elif run is None:
            conn.want_body = self.want_body[ep]
            data = self.payloads.get(ep)
        else:
            conn.want_body = True
            try:
                data = run.journey.steps[run.k].encode(run.user)
            except Exception as exc:  # the user's builder, e.g. a variable never extracted
                self._note(self.check_exceptions, f"{run.step_name}: build: {_reason(exc)}")
                self.rec.failed(cell, CHECK, 0)
                self._journey_end(run, CHECK, time.perf_counter_ns())
                conn.run = None
                self.loop.call_soon(self._next_for, conn)
                return
        now = time.perf_counter_ns()
        if run is not None and run.k == 0:
            run.first_sent = now
        conn.sent = now
        conn.deadline = now + self.timeout_ns
        self.sends += 1
        conn.send(data)

    # -- connections --------------------------------------------------------

    def _connect(self, user: int = -1) -> None:
        self.connecting += 1
        max_body = self.opt.max_body
        kind = JourneyConnection if self.any_journey else Connection
        # server_hostname: SNI and the name the certificate is checked against.
        coro = asyncio.wait_for(
            self.loop.create_connection(
                lambda: kind(self, user, max_body),
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
        self._note(
            self.connect_failures,
            "connect timeout" if isinstance(exc, TimeoutError) else _reason(exc),
        )
        if user >= 0:
            # The user's next request is the one that could not be sent.
            queued = self.user_pending.pop(user, None)
            if queued is None:
                ep = self.mix[self.mix_i]
                self.mix_i = (self.mix_i + 1) & 8191
                queued = self._start(ep, self.phase_i * self.n_ep, started, user)
            self._fail_queued(queued, CONNECT, now)
            self.users_alive -= 1
            if not self.finished and self.users_alive < self.users_wanted:
                # Retry after a pause, so a dead server is not hammered in a hot loop.
                self.loop.call_later(0.01, self._set_users, self.users_wanted)
        elif self.backlog:
            self._fail_queued(self.backlog.popleft(), CONNECT, now)
            if self.backlog:
                self.loop.call_later(0.001, self._regrow)
        self._maybe_done()

    def _fail_queued(self, queued: Queued, kind: int, now: int) -> None:
        """A request that was never sent fails (and its journey with it)."""
        intended, ep, cell, run = queued
        if self.replay_waiting[ep]:  # the replayed request it was: the oldest waiting
            self.replay_waiting[ep].popleft()
        self.rec.failed(cell, kind, (now - intended) // 1000)
        if run is not None:
            self._journey_end(run, kind, now)

    def _regrow(self) -> None:
        if self.backlog and len(self.conns) + self.connecting < self.opt.max_connections:
            self._connect()

    def on_connected(self, conn: Connection) -> None:
        self.conns.append(conn)
        self.opened += 1
        if self.finished and not self.backlog and conn.user not in self.user_pending:
            conn.close()
            self._drop(conn)
            self._maybe_done()
            return
        self._next_for(conn)

    def on_answer(self, conn: Connection, status: int, keep_alive: bool) -> None:
        now = time.perf_counter_ns()
        conn.busy = False
        cell, run = conn.cell, conn.run
        latency, service = (now - conn.intended) // 1000, (now - conn.sent) // 1000
        if conn.truncated:
            self.truncated += 1
        kind = self._judge(conn, status)
        if kind < 0:
            self.rec.answer(cell, latency, service, status)
        else:
            self.rec.failed(cell, kind, latency, service, status)
        if run is not None:
            conn.run = None
            if kind < 0 and run.k + 1 < len(run.journey.steps):
                if self._next_step(conn, run, now, keep_alive):
                    return
            else:
                self._journey_end(run, kind, now, status)
        if not keep_alive:
            # e.g. nginx after 1,000 requests: reconnect, lose nothing.
            conn.close()
            self._drop(conn)
            if conn.user >= 0:
                if (self.finished or conn.user >= self.users_wanted) and (
                    conn.user not in self.user_pending
                ):
                    self.users_alive -= 1
                else:
                    self._connect(user=conn.user)
            elif self.backlog:
                self._connect()
        else:
            self._next_for(conn)
        if self.finished:
            self._maybe_done()

    def _judge(self, conn: Connection, status: int) -> int:
        """-1 for a success, else the error kind; a journey's step also extracts."""
        spec = self.specs[conn.endpoint]
        assert spec is not None
        arrival = conn.arrival
        if arrival is not None:  # a replayed request: judged against what was recorded
            conn.arrival = None
            if arrival.on_answer is not None:
                try:
                    arrival.on_answer(status, conn.take_body())
                except Exception as exc:  # a replay's hook (ids, diffs): counted, not fatal
                    self._note(self.check_exceptions, f"{spec.name}: {_reason(exc)}")
                    return CHECK
            ok = status == arrival.expect if arrival.expect is not None else status < 400
            return -1 if ok else STATUS
        if not spec.accepts(status):
            return STATUS
        body = conn.take_body() if conn.want_body else b""
        if spec.check is not None and not self._check(spec.name, spec.check, status, body):
            return CHECK
        # A stale predicate that raises counts no stale read; its exception is noted.
        if spec.stale is not None and self._check(spec.name, spec.stale, status, body):
            self.rec.stale[conn.cell] += 1
        run = conn.run
        if run is not None and isinstance(spec, Step):
            headers = conn.headers()
            run.user.keep_cookies(headers)
            response = Response(status, headers, body)
            for name, extract in spec.extract.items():
                try:
                    run.user.vars[name] = extract(response)
                except Exception as exc:  # ExtractError, or the user's own extractor
                    self._note(self.check_exceptions, f"{run.step_name}: {name}: {_reason(exc)}")
                    return CHECK
        return -1

    def _next_step(self, conn: Connection, run: JourneyRun, now: int, keep_alive: bool) -> bool:
        """Send the run's next step, due now; True when it went on this connection."""
        run.k += 1
        queued: Queued = (now, run.ep + 1 + run.k, run.cell + 1 + run.k, run)
        self.rec.requests[queued[2]] += 1
        if keep_alive:
            self._send(conn, *queued)
            return True
        # The connection closes after this answer: the step waits for the next one.
        if conn.user >= 0:
            self.user_pending[conn.user] = queued
        else:
            self.backlog.appendleft(queued)
        return False

    def _journey_end(self, run: JourneyRun, kind: int, now: int, status: int = 0) -> None:
        """The whole journey's result: from its intended start to its last answer."""
        latency = (now - run.start) // 1000
        service = (now - run.first_sent) // 1000 if run.first_sent else -1
        if kind < 0:
            self.rec.answer(run.cell, latency, service, status)
        else:
            self.rec.failed(run.cell, kind, latency, service)

    def _check(self, name: str, check: Check, status: int, body: bytes) -> bool:
        """Run a check; one that raises is a failed check, its exception kept."""
        try:
            return bool(check(status, body))
        except Exception as exc:  # a user's predicate: anything can come out of it
            self._note(self.check_exceptions, f"{name}: {_reason(exc)}", f"{name}: (others)")
            return False

    @staticmethod
    def _note(counts: dict[str, int], text: str, other: str = "(others)") -> None:
        """Count a message; a bounded record: the first 20 kinds, then a total of the rest."""
        key = text if text in counts or len(counts) < 20 else other
        counts[key] = counts.get(key, 0) + 1

    def on_unsolicited(self, conn: Connection, count: int) -> None:
        """Responses came that nobody asked for: the connection is not to be trusted."""
        self.unsolicited += count
        if not conn.busy:  # an idle connection: gone like a closed one, nothing in flight
            self.on_lost(conn, None)

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        self._drop(conn)
        if conn.busy:
            conn.busy = False
            self.lost(conn, CLOSED, time.perf_counter_ns())
        if conn.user >= 0:
            if not self.finished and conn.user < self.users_wanted:
                self._connect(user=conn.user)
            else:
                self.users_alive -= 1
        elif self.backlog:
            self._connect()
        self._maybe_done()

    def lost(self, conn: Connection, kind: int, now: int) -> None:
        """The request in flight on ``conn`` failed without an answer (and its journey)."""
        latency, service = (now - conn.intended) // 1000, (now - conn.sent) // 1000
        self.rec.failed(conn.cell, kind, latency, service)
        if conn.run is not None:
            self._journey_end(conn.run, kind, now)
            conn.run = None

    def _drop(self, conn: Connection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        if conn in self.idle:
            self.idle.remove(conn)


def endpoint_specs(
    items: Sequence[Request | Journey],
) -> tuple[list[Request | Step | None], list[Journey | None]]:
    """Per endpoint (as ``Scenario.names`` lists them): what judges its answers, and
    the journey that starts there (None for a request or a step)."""
    specs: list[Request | Step | None] = []
    journeys: list[Journey | None] = []
    for item in items:
        if isinstance(item, Request):
            specs.append(item)
            journeys.append(None)
        else:
            specs.append(None)  # the whole journey: judged by its steps
            journeys.append(item)
            specs.extend(item.steps)
            journeys.extend([None] * len(item.steps))
    return specs, journeys
