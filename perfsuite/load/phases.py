"""Load phases: open model (arrival rate) and closed model (virtual users).

A phase is a plain frozen value; ``OpenPhase.offsets`` gives the intended
send times of its requests, in closed form, so the schedule never drifts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from perfsuite.config import Profile, parse_duration
from perfsuite.errors import ConfigError

__all__ = ["Arrival", "ClosedPhase", "OpenPhase", "Phase", "Phases", "ReplayPhase", "Role"]

Role = Literal["warmup", "measure", "cooldown"]
_ROLES = ("warmup", "measure", "cooldown")


@dataclass(frozen=True, kw_only=True)
class OpenPhase:
    """Requests arrive at a rate (constant, or a linear ramp from start to end)."""

    name: str
    duration: float
    start_rate: float
    end_rate: float
    role: Role = "measure"

    def __post_init__(self) -> None:
        _check_common(self.name, self.duration, self.role)
        if self.start_rate < 0 or self.end_rate < 0 or self.start_rate + self.end_rate <= 0:
            raise ConfigError(f"phase {self.name!r}: rates must be >= 0 and not both 0")

    @property
    def expected_requests(self) -> int:
        """How many requests the schedule holds."""
        return math.floor((self.start_rate + self.end_rate) / 2.0 * self.duration + 1e-9)

    def offset(self, k: int) -> float:
        """Intended send time of the k-th request (0-based), seconds from the phase start."""
        r0, r1, span = self.start_rate, self.end_rate, self.duration
        if r0 == r1:
            return k / r0
        # N(t) = r0 t + (r1 - r0) t^2 / (2 T); solve N(t) = k for t >= 0.
        a = (r1 - r0) / (2.0 * span)
        return (-r0 + math.sqrt(r0 * r0 + 4.0 * a * k)) / (2.0 * a)

    def offsets(self) -> Iterator[float]:
        """All intended send times of the phase, in order."""
        return (self.offset(k) for k in range(self.expected_requests))

    def describe(self) -> str:
        """``"500 req/s for 30s"`` or ``"100->1000 req/s over 5m"``."""
        if self.start_rate == self.end_rate:
            return f"{self.start_rate:g} req/s for {self.duration:g}s"
        return f"{self.start_rate:g}->{self.end_rate:g} req/s over {self.duration:g}s"


@dataclass(slots=True)
class Arrival:
    """One arrival of a given schedule: when, at which endpoint, and what is sent.

    ``data`` is built when the request is sent, if it is a function (a replayed
    request whose ids are learned from earlier answers). ``expect`` is the status
    it should get (a recorded one; None: any below 400). ``on_answer`` is told the
    status and body of its answer (not of a failure).
    """

    offset: float  # seconds from the phase's start
    endpoint: int
    data: bytes | Callable[[], bytes]
    expect: int | None = None
    on_answer: Callable[[int, bytes], None] | None = None


# (worker, workers) -> that worker's arrivals (every workers-th one), in time order.
Schedule = Callable[[int, int], Iterator[Arrival]]


@dataclass(frozen=True, kw_only=True)
class ReplayPhase(OpenPhase):
    """An open phase whose arrivals are given (a replayed capture), not drawn at a rate.

    Its rates are the schedule's mean, for what reads them (the results' target
    rate, how many connections to open at first).
    """

    schedule: Schedule
    requests: int
    source: str = "a given schedule"

    @property
    def expected_requests(self) -> int:
        """How many requests the schedule holds."""
        return self.requests

    def describe(self) -> str:
        """``"traffic.jsonl: 1200 requests over 60s"``."""
        return f"{self.source}: {self.requests} requests over {self.duration:g}s"


@dataclass(frozen=True, kw_only=True)
class ClosedPhase:
    """A fixed number of virtual users, each sending, waiting, thinking, sending."""

    name: str
    duration: float
    users: int
    think_time: float = 0.0
    role: Role = "measure"

    def __post_init__(self) -> None:
        _check_common(self.name, self.duration, self.role)
        if self.users < 1:
            raise ConfigError(f"phase {self.name!r}: users must be >= 1, got {self.users}")
        if self.think_time < 0:
            raise ConfigError(f"phase {self.name!r}: think time must be >= 0")

    def describe(self) -> str:
        """``"50 users for 30s"``."""
        think = f", think {self.think_time * 1000:g} ms" if self.think_time else ""
        return f"{self.users} users for {self.duration:g}s{think}"


Phase = OpenPhase | ClosedPhase


def _check_common(name: str, duration: float, role: str) -> None:
    if not name:
        raise ConfigError("a phase needs a name")
    if not duration > 0:
        raise ConfigError(f"phase {name!r}: duration must be > 0, got {duration!r}")
    if role not in _ROLES:
        raise ConfigError(f"phase {name!r}: role must be one of {_ROLES}, got {role!r}")


def _seconds(value: float | str, key: str) -> float:
    return parse_duration(value, key=key)


class Phases:
    """Builds phases written for the ``full`` profile, scaled to the active one.

    ``perf_phases.constant(rate=1000, duration="10m")`` under the ``smoke``
    profile becomes 100 req/s for 6 s; names stay the same, so results of one
    ramp step can be compared across profiles.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def __repr__(self) -> str:
        return f"<Phases profile={self.profile.name}>"

    def _d(self, value: float | str, key: str) -> float:
        # Never shorter than 0.5 s: a second's worth of samples keeps percentiles sane.
        return max(0.5, self.profile.duration(_seconds(value, key)))

    def _r(self, rate: float) -> float:
        return self.profile.rate(rate)

    def _u(self, users: int) -> int:
        return max(1, round(self.profile.rate(users)))

    def constant(
        self, rate: float, duration: float | str, *, name: str = "steady", role: Role = "measure"
    ) -> OpenPhase:
        """A constant arrival rate (req/s) for a duration."""
        r = self._r(rate)
        d = self._d(duration, f"phase {name} duration")
        return OpenPhase(name=name, duration=d, start_rate=r, end_rate=r, role=role)

    def warmup(self, rate: float, duration: float | str, *, name: str = "warmup") -> OpenPhase:
        """A constant rate whose results are kept but excluded from SLOs."""
        return self.constant(rate, duration, name=name, role="warmup")

    def cooldown(self, rate: float, duration: float | str, *, name: str = "cooldown") -> OpenPhase:
        """A constant rate after the measured phases, also excluded from SLOs."""
        return self.constant(rate, duration, name=name, role="cooldown")

    def ramp(
        self,
        start: float,
        end: float,
        duration: float | str,
        *,
        name: str = "ramp",
        role: Role = "measure",
    ) -> OpenPhase:
        """The arrival rate grows (or falls) linearly from ``start`` to ``end``."""
        d = self._d(duration, f"phase {name} duration")
        return OpenPhase(
            name=name, duration=d, start_rate=self._r(start), end_rate=self._r(end), role=role
        )

    def stairs(
        self,
        start: float,
        step: float,
        steps: int,
        hold: float | str,
        *,
        name: str = "stairs",
    ) -> list[OpenPhase]:
        """``steps`` constant-rate phases: start, start+step, ... each held for ``hold``.

        Each step is its own phase (``stairs-1`` ...), so each is judged alone.
        """
        if steps < 1:
            raise ConfigError(f"stairs {name!r}: steps must be >= 1, got {steps}")
        return [self.constant(start + i * step, hold, name=f"{name}-{i + 1}") for i in range(steps)]

    def users(
        self,
        users: int,
        duration: float | str,
        *,
        think: float | str = 0.0,
        name: str = "users",
        role: Role = "measure",
    ) -> ClosedPhase:
        """A closed model: ``users`` virtual users, each with an optional think time."""
        think_s = 0.0 if think in (0, 0.0, "0") else _seconds(think, f"phase {name} think")
        return ClosedPhase(
            name=name,
            duration=self._d(duration, f"phase {name} duration"),
            users=self._u(users),
            think_time=think_s,
            role=role,
        )

    def stepped_users(
        self,
        start: int,
        step: int,
        steps: int,
        hold: float | str,
        *,
        think: float | str = 0.0,
        name: str = "users",
    ) -> list[ClosedPhase]:
        """JMeter's stepping thread group: start users, add ``step`` every ``hold``."""
        if steps < 1:
            raise ConfigError(f"stepped users {name!r}: steps must be >= 1, got {steps}")
        return [
            self.users(start + i * step, hold, think=think, name=f"{name}-{i + 1}")
            for i in range(steps)
        ]


def with_role(phase: Phase, role: Role) -> Phase:
    """The same phase with another role."""
    return replace(phase, role=role)
