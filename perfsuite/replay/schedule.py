"""A capture made into a load: its endpoints, its pace, and the phase that replays it.

:func:`plan_replay` reads the capture once (lazily: nothing is held but
counts) to find what the engine must know before it starts: the endpoints
(routes, ``GET /orders/{id}``: a path segment of digits, a UUID or a long hex
string is an id), how many requests are replayed, how long it takes at the
chosen pace, and what is left out and why. :func:`replay_phase` then gives
the scenario and the phase; the phase reads the capture again as it runs, so
a capture of millions of requests replays in constant memory.

The pace: the recorded one (``speed=1``), faster or slower (``speed=2`` halves
every gap), gaps capped (``max_gap``: a night's silence need not be waited
out), or a constant ``rate`` that keeps the order and the mix but not the
gaps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from perfsuite.errors import ConfigError
from perfsuite.load.phases import Arrival, ReplayPhase, Role
from perfsuite.load.scenario import Request, Scenario
from perfsuite.replay import Capture, ReadStats, Recorded
from perfsuite.replay.normalise import IdMap, Outgoing, Rules, prepare, refused
from perfsuite.replay.prefetch import prefetched

__all__ = ["Pace", "ReplayPlan", "encode", "plan_replay", "replay_phase", "route"]

_ID = re.compile(
    r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,})$"
)
OTHER = "other"
# Past the last arrival: time for its answer before the phase ends.
_TAIL = 0.5
# Before the first arrival: the connections are opened by then, not while it waits
# (measured: without it, a burst at the start of a replay went out up to 18 ms late).
LEAD = 0.2


def route(method: str, target: str) -> str:
    """The endpoint a request belongs to: ``GET /orders/{id}`` (ids, and the query, out)."""
    path = target.split("?", 1)[0] or "/"
    return method + " " + "/".join("{id}" if _ID.match(part) else part for part in path.split("/"))


def _name(route_: str, taken: set[str]) -> str:
    """A plain-word endpoint name for a route (``get_orders_id``), unique in ``taken``."""
    words = re.findall(r"[A-Za-z0-9]+", route_.replace("{id}", "id"))
    base = "_".join(w.lower() for w in words) or "root"
    if base == route_.split(" ")[0].lower():
        base += "_root"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


@dataclass(frozen=True, kw_only=True)
class Pace:
    """How fast a capture is replayed (see the module's docstring)."""

    speed: float = 1.0
    max_gap: float | None = None  # seconds
    rate: float | None = None  # requests per second, evenly spaced

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ConfigError(f"replay speed: expected > 0, got {self.speed!r}")
        if self.max_gap is not None and not self.max_gap > 0:
            raise ConfigError(f"replay max_gap: expected > 0 seconds, got {self.max_gap!r}")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"replay rate: expected > 0 req/s, got {self.rate!r}")
        if self.rate is not None and (self.speed != 1.0 or self.max_gap is not None):
            raise ConfigError("replay: rate replaces the recorded gaps; give it alone")

    def offsets(self) -> Callable[[float], float]:
        """A function from each recorded offset (in order) to its replayed one."""
        last_in: float | None = None
        last_out = 0.0
        count = 0

        def paced(offset: float) -> float:
            nonlocal last_in, last_out, count
            if self.rate is not None:
                out = count / self.rate
            else:
                gap = 0.0 if last_in is None else (offset - last_in) / self.speed
                if self.max_gap is not None:
                    gap = min(gap, self.max_gap)
                out = last_out + gap
            last_in, last_out, count = offset, out, count + 1
            return out

        return paced

    def describe(self) -> str:
        """``"speed 2, gaps at most 1s"``, ``"800 req/s"``."""
        if self.rate is not None:
            return f"{self.rate:g} req/s"
        gap = f", gaps at most {self.max_gap:g}s" if self.max_gap is not None else ""
        return f"speed {self.speed:g}{gap}"


@dataclass(frozen=True, kw_only=True)
class ReplayPlan:
    """What a replay will send, found by reading the capture once."""

    capture: Capture
    rules: Rules
    pace: Pace
    routes: tuple[str, ...]  # endpoint i's route; OTHER last when there were too many
    names: tuple[str, ...]  # endpoint i's name in the results
    requests: int  # replayed
    duration: float  # seconds, at the pace, until the last answer is due
    refused: dict[str, int] = field(default_factory=dict)  # reason -> requests left out
    read: ReadStats = field(default_factory=ReadStats)

    def endpoint_of(self, item: Recorded) -> int:
        """The endpoint index of a recorded request."""
        return self.endpoint(route(item.method, item.target))

    def endpoint(self, route_: str) -> int:
        """The endpoint index of a route (the last, ``other``, for those past the cap)."""
        try:
            return self.routes.index(route_)
        except ValueError:
            return len(self.routes) - 1


def plan_replay(
    capture: Capture,
    rules: Rules | None = None,
    pace: Pace | None = None,
    *,
    max_endpoints: int = 30,
) -> ReplayPlan:
    """Read the capture once: its endpoints, its length at the pace, what is left out."""
    rules, pace = rules or Rules(), pace or Pace()
    counts: dict[str, int] = {}
    left_out: dict[str, int] = {}
    paced = pace.offsets()
    end = 0.0
    for item in capture:
        why = refused(item, rules)
        if why is not None:
            left_out[why] = left_out.get(why, 0) + 1
            continue
        end = paced(item.offset)
        key = route(item.method, item.target)
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    if not total:
        reasons = "; ".join(f"{n} {why}" for why, n in left_out.items()) or "it holds none"
        raise ConfigError(f"{capture.path.name}: no request to replay ({reasons})")
    ranked = sorted(counts, key=lambda r: (-counts[r], r))
    routes = ranked if len(ranked) <= max_endpoints else [*ranked[: max_endpoints - 1], OTHER]
    taken: set[str] = set()
    return ReplayPlan(
        capture=capture,
        rules=rules,
        pace=pace,
        routes=tuple(routes),
        names=tuple(_name(r, taken) if r != OTHER else OTHER for r in routes),
        requests=total,
        duration=end + _TAIL,
        refused=left_out,
        read=capture.stats,
    )


def encode(out: Outgoing, host: str) -> bytes:
    """The HTTP/1.1 bytes of a request to send (its Host the target's)."""
    head = [f"{out.method} {out.target} HTTP/1.1", f"Host: {host}"]
    head += [f"{k}: {v}" for k, v in out.headers]
    if out.body or out.method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
        head.append(f"Content-Length: {len(out.body)}")
    return "\r\n".join(head).encode("latin-1", errors="replace") + b"\r\n\r\n" + out.body


def _builder(item: Recorded, rules: Rules, ids: IdMap, host: str) -> Callable[[], bytes]:
    def build() -> bytes:
        out = prepare(item, rules, ids, checked=True)  # refused ones never got an arrival
        assert isinstance(out, Outgoing)
        return encode(out, host)

    return build


def replay_phase(
    plan: ReplayPlan,
    target: str,
    *,
    name: str = "replay",
    role: Role = "measure",
    on_answer: Callable[[Recorded, int, bytes], None] | None = None,
) -> tuple[Scenario, ReplayPhase]:
    """The scenario (one request per endpoint) and the phase that replays the plan.

    ``on_answer(recorded, status, body)`` is told every answer (for comparisons).
    Ids learned from answers need the one worker that sees them all.
    """
    url = httpx.URL(target)
    host = url.netloc.decode("ascii")
    learn = plan.rules.learn

    def answered(item: Recorded, ids: IdMap) -> Callable[[int, bytes], None] | None:
        if not learn and on_answer is None:
            return None

        def told(status: int, body: bytes) -> None:
            if learn:
                ids.learn(learn, item, status, body)
            if on_answer is not None:
                on_answer(item, status, body)

        return told

    def planned(worker: int, workers: int) -> Iterator[tuple[Recorded, int, float]]:
        """This worker's requests, their endpoints and times (in the reader's thread)."""
        paced = plan.pace.offsets()
        index = 0
        for item in plan.capture:
            if refused(item, plan.rules) is not None:
                continue
            offset = paced(item.offset)  # every worker paces every request: the same times
            mine = index % workers == worker
            index += 1
            if mine:
                yield item, plan.endpoint_of(item), LEAD + offset

    def schedule(worker: int, workers: int) -> Iterator[Arrival]:
        if workers > 1 and learn:
            raise ConfigError("replay: ids learned from answers need one worker (workers=1)")
        # Each run of the phase (an A/B round) learns its own ids afresh.
        ids = IdMap(table=dict(plan.rules.ids))
        for item, endpoint, offset in prefetched(planned(worker, workers)):
            # Built when sent: by then the answers that teach its ids are in (if they
            # came in time), and one dropped (the generator behind) costs nothing more.
            yield Arrival(
                offset=offset,
                endpoint=endpoint,
                data=_builder(item, plan.rules, ids, host),
                expect=item.response.status if item.response is not None else None,
                on_answer=answered(item, ids),
            )

    scenario = Scenario(
        *(Request(name=n, build=httpx.Request("GET", url.join("/"))) for n in plan.names)
    )
    rate = plan.requests / plan.duration
    phase = ReplayPhase(
        name=name,
        duration=LEAD + plan.duration,
        start_rate=rate,
        end_rate=rate,
        role=role,
        schedule=schedule,
        requests=plan.requests,
        source=f"{plan.capture.path.name} at {plan.pace.describe()}",
    )
    return scenario, phase
