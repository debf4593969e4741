"""The result of a load run: per phase x endpoint cells, and views over them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from perfsuite.load.phases import OpenPhase, Phase
from perfsuite.load.recorder import ERROR_KINDS, Recorder, Second, SecondBins
from perfsuite.stats.blocks import Block, BlockSet, merge_blocks
from perfsuite.stats.hdr import Percentiles, merge, percentiles

__all__ = ["Cell", "LoadResult", "PhaseInfo", "Summary", "cells_of", "phase_infos"]


@dataclass(frozen=True, kw_only=True)
class PhaseInfo:
    """A phase as it ran: name, role, model, offset from the run start, duration."""

    name: str
    role: str
    model: str  # "open" or "closed"
    description: str
    start: float
    duration: float
    target_rate: float | None = None  # mean arrival rate (open)
    users: int | None = None  # virtual users (closed)
    planned: float  # the duration asked for (more than ``duration`` when interrupted)


@dataclass(frozen=True, kw_only=True)
class Cell:
    """What one endpoint did in one phase."""

    phase: str
    endpoint: str
    requests: int  # scheduled: answered, failed or dropped
    latency: HdrHistogram = field(repr=False)  # every request that ended (not dropped)
    latency_ok: HdrHistogram = field(repr=False)  # the successful ones
    service_time: HdrHistogram = field(repr=False)  # from the actual send, those sent
    errors: Mapping[str, int]
    statuses: Mapping[int, int]
    blocks: tuple[Block, ...] = field(default=(), repr=False)
    # A journey's own endpoint: whole runs of its steps, which have cells of their
    # own; left out of a selection of all endpoints, so no request counts twice.
    journey: bool = False
    # Successes that did not hold the write before them (None: no ``stale=`` predicate).
    stale: int | None = None

    @property
    def answered(self) -> int:
        """Responses received, whatever their status (some may still count as errors)."""
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        """Successful requests: answered, status accepted, check passed."""
        return int(self.latency_ok.get_total_count())


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Numbers over a selection of cells (e.g. all measured phases of an endpoint).

    ``requests`` were scheduled; each either succeeded (``ok``) or failed
    (``errors``, by kind). ``answered`` got a response, whatever its status.
    ``latency`` covers every request that ended (answered, timed out, failed:
    dropped ones were never sent), ``latency_ok`` the successes alone.
    """

    requests: int
    answered: int
    ok: int
    errors: int
    errors_by_kind: Mapping[str, int]
    duration: float
    latency: Percentiles
    latency_ok: Percentiles
    service_time: Percentiles
    # Of the requests with a ``stale=`` predicate: stale reads, and their successes
    # (None: no request of the selection has one).
    stale: int | None = None
    stale_of: int = 0

    @property
    def error_rate(self) -> float:
        """Errors / requests (0 when nothing was sent)."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def stale_rate(self) -> float:
        """Stale reads / successes of the requests with a ``stale=`` predicate (NaN: none)."""
        return self.stale / self.stale_of if self.stale is not None and self.stale_of else math.nan

    @property
    def dropped(self) -> int:
        """Requests never sent (the generator's queue was full): errors without a latency."""
        return self.errors_by_kind.get("dropped", 0)

    @property
    def ok_rps(self) -> float:
        """Successful requests per second over the selected phases (what ``min_rps`` judges)."""
        return self.ok / self.duration if self.duration else 0.0

    @property
    def answered_rps(self) -> float:
        """Responses (any status) per second over the selected phases."""
        return self.answered / self.duration if self.duration else 0.0

    @property
    def mean_ms(self) -> float:
        """Mean latency (every request that ended), in ms."""
        return self.latency.mean


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    """Everything a run measured; ``measured()`` sums the phases that count for SLOs."""

    target: str
    phases: tuple[PhaseInfo, ...]
    cells: tuple[Cell, ...]
    seconds: tuple[Second, ...]
    late: int
    late_generator: int
    dropped: int
    wall_time: float
    generator_cpu: float  # CPU seconds of the generator / wall seconds
    loop_lag_p99_ms: float
    connections_opened: int
    saturated: bool
    saturation_reason: str = ""
    stop_reason: str = ""
    interrupted: bool = False  # Ctrl-C or SIGTERM cut the phases short (see stop_reason)
    abandoned: int = 0  # in flight or queued when interrupted: not counted anywhere
    # Per second, the longest the event loop was held up (ms): how late its timers woke.
    loop_stalls_ms: tuple[float, ...] = ()
    max_connections: int = 0  # the limit the run had (0: not known)
    at_limit: int = 0  # requests that queued because every one of max_connections was busy
    queue_wait_max_ms: float = 0.0  # the longest wait of a queued request for a connection
    unsolicited: int = 0  # responses nobody asked for (their connections were closed)
    truncated: int = 0  # bodies longer than max_body: checked on their first max_body bytes
    check_exceptions: Mapping[str, int] = field(default_factory=dict)  # "name: Error: text" -> n
    connect_failures: Mapping[str, int] = field(default_factory=dict)  # why connects failed
    second_bins: tuple[SecondBins, ...] = field(default=(), repr=False)  # per-second latency bins
    # (seconds from the start, requests ended by then): every 50 ms, journeys' own apart.
    ended: tuple[tuple[float, int], ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        m = self.measured()
        return (
            f"<LoadResult {self.target} {m.requests} requests, {m.errors} errors, "
            f"{m.ok_rps:.0f} ok/s, p99 {m.latency.p99:.2f} ms>"
        )

    @property
    def limit_note(self) -> str:
        """What it says when ``max_connections`` capped the load (k6's "insufficient VUs")."""
        if not self.at_limit:
            return ""
        return (
            f"max_connections ({self.max_connections}) limited the load: {self.at_limit} "
            f"request(s) queued for a connection while all {self.max_connections} were busy "
            f"(longest wait {self.queue_wait_max_ms:,.1f} ms, counted in their latency); "
            "the service held that many requests at once: raise max_connections to offer "
            "it the schedule's full concurrency"
        )

    @property
    def endpoints(self) -> list[str]:
        """The endpoint (request) names, in scenario order."""
        seen: dict[str, None] = {}
        for cell in self.cells:
            seen.setdefault(cell.endpoint, None)
        return list(seen)

    def _select(
        self, endpoint: str | None, phase: str | None, roles: Iterable[str]
    ) -> tuple[list[Cell], float]:
        roles = set(roles)
        names = {p.name for p in self.phases}
        if phase is not None and phase not in names:
            raise KeyError(f"no phase {phase!r} (phases: {sorted(names)})")
        if endpoint is not None and endpoint not in self.endpoints:
            raise KeyError(f"no endpoint {endpoint!r} (endpoints: {self.endpoints})")
        chosen = {
            p.name for p in self.phases if (phase is None and p.role in roles) or p.name == phase
        }
        cells = [
            c
            for c in self.cells
            if c.phase in chosen
            and (c.endpoint == endpoint if endpoint is not None else not c.journey)
        ]
        duration = sum(p.duration for p in self.phases if p.name in chosen)
        return cells, duration

    def summary(
        self,
        endpoint: str | None = None,
        phase: str | None = None,
        roles: Iterable[str] = ("measure",),
    ) -> Summary:
        """Numbers for one endpoint and/or phase (default: all measured phases)."""
        cells, duration = self._select(endpoint, phase, roles)
        errors = {kind: sum(c.errors[kind] for c in cells) for kind in ERROR_KINDS}
        judged = [c for c in cells if c.stale is not None]
        return Summary(
            requests=sum(c.requests for c in cells),
            answered=sum(c.answered for c in cells),
            ok=sum(c.ok for c in cells),
            errors=sum(errors.values()),
            errors_by_kind=errors,
            duration=duration,
            latency=percentiles(merge(c.latency for c in cells)),
            latency_ok=percentiles(merge(c.latency_ok for c in cells)),
            service_time=percentiles(merge(c.service_time for c in cells)),
            stale=None if not judged else sum(c.stale or 0 for c in judged),
            stale_of=sum(c.ok for c in judged),
        )

    def measured(self, endpoint: str | None = None) -> Summary:
        """All measured phases (warm-up and cool-down excluded)."""
        return self.summary(endpoint=endpoint)

    def blockset(
        self,
        endpoint: str | None = None,
        phase: str | None = None,
        roles: Iterable[str] = ("measure",),
        *,
        max_blocks: int = 30,
    ) -> BlockSet:
        """The selection's samples as blocks of time, for the statistics."""
        cells, _ = self._select(endpoint, phase, roles)
        per_phase: dict[str, list[Block]] = {}
        for cell in cells:
            per_phase.setdefault(cell.phase, []).extend(cell.blocks)
        blocks: list[Block] = []
        for phase_blocks in per_phase.values():
            blocks.extend(merge_blocks(phase_blocks, same_span=True))
        return BlockSet.from_blocks(merge_blocks(blocks, same_span=False), max_blocks=max_blocks)

    def histogram(
        self, endpoint: str | None = None, phase: str | None = None, *, service: bool = False
    ) -> HdrHistogram:
        """The merged latency (or service-time) histogram of a selection, in µs."""
        cells, _ = self._select(endpoint, phase, ("measure",))
        return merge(c.service_time if service else c.latency for c in cells)

    def describe(self) -> str:
        """A readable multi-line summary, per phase and endpoint."""
        lines = [f"target {self.target}, wall {self.wall_time:.1f} s"]
        header = (
            f"{'phase':<12} {'endpoint':<18} {'req':>8} {'ok':>8} {'err':>6} {'ok/s':>8} "
            f"{'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  latency (ms) from"
        )
        lines.append(header)
        for p in self.phases:
            # Open model: from the intended send time (no coordinated omission);
            # closed model: a user waits for its answer, so from the actual send.
            origin = "intended send" if p.model == "open" else "actual send"
            for ep in self.endpoints:
                s = self.summary(endpoint=ep, phase=p.name)
                if not s.requests:
                    continue
                lines.append(
                    f"{p.name:<12} {ep:<18} {s.requests:>8} {s.ok:>8} {s.errors:>6} "
                    f"{s.ok_rps:>8.1f} {_ms(s.latency.p50)} {_ms(s.latency.p95)} "
                    f"{_ms(s.latency.p99)} {_ms(s.latency.max)}  {origin}"
                )
        lines.append(
            "latency covers every request that ended: answered (any status), "
            "timed out (at the timeout), failed (when it failed); dropped ones have none"
        )
        lines.append(
            f"late {self.late} (generator {self.late_generator}), dropped {self.dropped}, "
            f"connections {self.connections_opened}, generator CPU {self.generator_cpu:.0%}, "
            f"loop lag p99 {self.loop_lag_p99_ms:.1f} ms, "
            f"longest loop stall {max(self.loop_stalls_ms, default=0.0):.1f} ms"
        )
        if self.limit_note:
            lines.append(self.limit_note)
        if self.unsolicited or self.truncated:
            lines.append(
                f"unsolicited responses {self.unsolicited} (connections closed), "
                f"bodies over max_body {self.truncated}"
            )
        for text, n in self.connect_failures.items():
            lines.append(f"connect failed ({n}x): {text}")
        for text, n in self.check_exceptions.items():
            lines.append(f"check raised ({n}x): {text}")
        if self.saturated:
            lines.append(f"LOAD GENERATOR SATURATED: {self.saturation_reason}")
        if self.interrupted:
            planned = sum(p.planned for p in self.phases)
            ran = sum(p.duration for p in self.phases)
            lines.append(
                f"INTERRUPTED: {self.stop_reason} after {ran:.1f} s of {planned:g} s; "
                f"{self.abandoned} request(s) in flight or queued were abandoned (not counted)"
            )
        return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{value:>8.2f}" if not math.isnan(value) else f"{'-':>8}"


def phase_infos(
    phases: list[Phase], starts: list[float], *, ran_for: float | None = None
) -> tuple[PhaseInfo, ...]:
    """Describe the phases as they ran, with their offsets from the run start.

    ``ran_for``: the run was stopped after that many seconds; each phase's
    duration is then the part of it that ran (0 for those never reached).
    """
    infos = []
    for phase, start in zip(phases, starts, strict=True):
        is_open = isinstance(phase, OpenPhase)
        duration = phase.duration
        if ran_for is not None:
            duration = min(duration, max(0.0, ran_for - start))
        infos.append(
            PhaseInfo(
                name=phase.name,
                role=phase.role,
                model="open" if is_open else "closed",
                description=phase.describe(),
                start=start,
                duration=duration,
                planned=phase.duration,
                target_rate=(phase.start_rate + phase.end_rate) / 2
                if isinstance(phase, OpenPhase)
                else None,
                users=None if isinstance(phase, OpenPhase) else phase.users,
            )
        )
    return tuple(infos)


def cells_of(
    recorder: Recorder,
    phase_names: list[str],
    journeys: frozenset[int] = frozenset(),
    stale: frozenset[int] = frozenset(),
) -> tuple[Cell, ...]:
    """The recorder's samples as cells, phase by phase, endpoint by endpoint
    (``journeys``: the endpoints that are whole journeys; ``stale``: those with a
    ``stale`` predicate)."""
    cells = []
    n = recorder.n_endpoints
    for i, phase in enumerate(phase_names):
        for ep, name in enumerate(recorder.endpoints):
            c = i * n + ep
            cells.append(
                Cell(
                    phase=phase,
                    endpoint=name,
                    requests=recorder.requests[c],
                    latency=recorder.latency[c],
                    latency_ok=recorder.latency_ok[c],
                    service_time=recorder.service[c],
                    errors=dict(zip(ERROR_KINDS, recorder.errors[c], strict=True)),
                    statuses=dict(recorder.statuses[c]),
                    blocks=tuple(merge_blocks(recorder.blocks[c], same_span=True)),
                    journey=ep in journeys,
                    stale=recorder.stale[c] if ep in stale else None,
                )
            )
    return tuple(cells)
