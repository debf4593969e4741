"""A/B runs: the base build beside the candidate, in paired rounds.

``--perf-ab=REF`` checks REF out into a temporary git worktree and runs the
base build's service from there, with the same configuration, on its own
copy of the seeded database; ``--perf-ab-url`` takes a base service that
already runs. Each perf test then runs in pairs of rounds: both builds get
the same phases and the same scenario seed, in an order drawn by a seeded
generator, each pair on freshly started processes, so that a process's
placement (its memory layout, its core, its neighbours) is drawn again for
every pair instead of being reported as a regression.

Each round is watched as an ordinary load is: its cost per request on its
build's database, and, with replicas, their lag (the replicas are both
builds', each build's copy of the database replicating there; a round begins
once they have applied the rounds before it).

A pair in which the load generator saturated (the machine, not a build, was
measured) is run again, at most once per five pairs; past that the test
fails as any saturated load does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from perfsuite.config import PerfConfig, ServiceConfig
from perfsuite.errors import ConfigError, LoadGeneratorSaturated, PerfsuiteWarning, ServiceError
from perfsuite.load import LoadResult
from perfsuite.probes.replica_lag import ReplicaLagWatch
from perfsuite.provision import MySQLServer
from perfsuite.provision.databases import copied_database
from perfsuite.provision.worktree import git_worktree, resolve_ref
from perfsuite.session.cost import CostMeter, CostProbes
from perfsuite.session.provisioning import Provisioning, started
from perfsuite.session.watchers import LoadWatchers
from perfsuite.stats.cost import RequestCost
from perfsuite.stats.lag import ReplicaLag

__all__ = ["SIDES", "ABOptions", "Base", "Pairs", "Round", "RunOne", "run_pairs"]

SIDES = ("base", "candidate")
# Runs one round's load against a build's URL, telling its watchers when it began.
RunOne = Callable[[str, LoadWatchers], LoadResult]
BASE_DATABASE_SUFFIX = "_ab_base"


@dataclass(frozen=True, kw_only=True)
class ABOptions:
    """What ``--perf-ab*`` asked for."""

    ref: str | None = None
    url: str | None = None
    pairs: int = 10
    base_env: Mapping[str, str] = field(default_factory=dict)  # set for the base build only

    @property
    def enabled(self) -> bool:
        """Is this an A/B session?"""
        return self.ref is not None or self.url is not None

    def check(self, root: Path) -> None:
        """Refuse bad input before anything starts."""
        if self.ref is not None and self.url is not None:
            raise ConfigError("--perf-ab and --perf-ab-url: give one base build, not both")
        if self.pairs < 3:
            raise ConfigError(f"--perf-ab-pairs: at least 3 pairs are needed, got {self.pairs}")
        if self.ref is not None:
            resolve_ref(root, self.ref)


@dataclass(frozen=True, kw_only=True)
class Base:
    """The base build, ready to be started (or running, at a URL)."""

    label: str  # "origin/main (1a2b3c4)", or the URL
    service: ServiceConfig | None = None
    server: MySQLServer | None = None
    url: str | None = None


@dataclass(kw_only=True)
class Pairs:
    """The rounds of one load of one test: ``base[i]`` was paired with ``candidate[i]``."""

    base_label: str
    base: list[LoadResult] = field(default_factory=list)
    candidate: list[LoadResult] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # which side ran first in each pair
    # Each round's cost per request, when the digests could be read (None: not measured).
    base_cost: list[RequestCost | None] = field(default_factory=list)
    candidate_cost: list[RequestCost | None] = field(default_factory=list)
    # Each round's replica lag, when the replicas were watched (None: not measured).
    base_lag: list[ReplicaLag | None] = field(default_factory=list)
    candidate_lag: list[ReplicaLag | None] = field(default_factory=list)
    # Pairs run again because the generator saturated in one of their rounds: why.
    redone: list[str] = field(default_factory=list)


@contextlib.contextmanager
def prepared_base(options: ABOptions, config: PerfConfig, server: MySQLServer) -> Iterator[Base]:
    """The base build: its worktree and its copy of the database, removed afterwards."""
    if options.url is not None:
        yield Base(label=options.url, url=options.url.rstrip("/"))
        return
    assert options.ref is not None
    cfg = config.service
    if cfg is None or cfg.kind != "command":
        raise ConfigError(
            "--perf-ab runs the base build from a git worktree with "
            "[tool.perfsuite.service] command; for an image or a running service, start "
            "the base build yourself and give --perf-ab-url"
        )
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(
            started("the base build's worktree", git_worktree(config.rootdir, options.ref))
        )
        copy = stack.enter_context(
            started(
                "the base build's database",
                copied_database(server, server.database + BASE_DATABASE_SUFFIX),
            )
        )
        try:
            cwd = tree.path / cfg.cwd.relative_to(config.rootdir.resolve())
        except ValueError:
            cwd = cfg.cwd  # outside the project: the same folder for both builds
        base_cfg = dataclasses.replace(cfg, cwd=cwd, env={**cfg.env, **options.base_env})
        yield Base(label=tree.label, service=base_cfg, server=copy)


def run_pairs(
    options: ABOptions,
    base: Base,
    provisioning: Provisioning,
    candidate_server: MySQLServer,
    run_one: RunOne,
    *,
    seed: str,
    partial: list[Pairs] | None = None,
    costs: CostProbes | None = None,
    lag: Callable[[], ReplicaLagWatch | None] | None = None,
) -> Pairs:
    """Run ``options.pairs`` pairs of rounds, each pair on fresh processes of both builds.

    ``partial``: the pairs are appended to it first, so that the pairs run
    before a Ctrl-C are not lost. ``costs``: measure each round's cost on its
    build's database (and its service's CPU). ``lag``: a watch of the replicas'
    lag for each round (the replicas are both builds': each build's copy of the
    database replicates there); a base build at a URL has none.
    """
    rng = random.Random(zlib.crc32(seed.encode()))
    pairs = Pairs(base_label=base.label)
    if partial is not None:
        partial.append(pairs)
    redos = max(1, options.pairs // 5)
    while len(pairs.base) < options.pairs:
        order = list(SIDES)
        rng.shuffle(order)
        try:
            done = _pair(order, base, provisioning, candidate_server, run_one, costs, lag)
        except LoadGeneratorSaturated as exc:
            if len(pairs.redone) >= redos:
                raise
            why = str(exc).splitlines()[0]
            pairs.redone.append(why)
            warnings.warn(PerfsuiteWarning(f"A/B: a pair run again: {why}"), stacklevel=2)
            continue
        for side in order:
            _refuse_a_failing_build(side, base.label, done[side].result)
        # Only whole pairs count: a round whose partner never ran is no pair.
        pairs.base.append(done["base"].result)
        pairs.candidate.append(done["candidate"].result)
        pairs.base_cost.append(done["base"].cost)
        pairs.candidate_cost.append(done["candidate"].cost)
        pairs.base_lag.append(done["base"].lag)
        pairs.candidate_lag.append(done["candidate"].lag)
        pairs.order.append(order[0])
    return pairs


def _pair(
    order: list[str],
    base: Base,
    provisioning: Provisioning,
    candidate_server: MySQLServer,
    run_one: RunOne,
    costs: CostProbes | None,
    lag: Callable[[], ReplicaLagWatch | None] | None,
) -> dict[str, Round]:
    """One pair of rounds, in ``order``, on freshly started services of both builds."""
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        meters: dict[str, CostMeter | None] = {}
        for side in order:
            if side == "base" and base.url is not None:
                urls[side] = base.url
                meters[side] = None  # its database is not ours to read
                continue
            server = base.server if side == "base" else candidate_server
            assert server is not None
            service = stack.enter_context(
                provisioning.start_service(
                    server,
                    config=base.service if side == "base" else None,
                    what=f"the {side} build's service",
                    track=False,
                )
            )
            urls[side] = service.base_url
            meters[side] = costs.meter(server, service, sample_cpu=True) if costs else None
        out = {}
        for side in order:
            ours = lag is not None and (side != "base" or base.url is None)
            watchers = LoadWatchers(meter=meters[side], lag=lag() if ours and lag else None)
            out[side] = _round(run_one, urls[side], watchers)
        return out


@dataclass(frozen=True)
class Round:
    """One build's round: its result, its cost per request and its replicas' lag
    (None: not measured)."""

    result: LoadResult
    cost: RequestCost | None
    lag: ReplicaLag | None


def _round(run_one: RunOne, url: str, watchers: LoadWatchers) -> Round:
    """One build's round, watched (its cost, its lag) where they can be read."""
    watchers.start()
    result = None
    try:
        result = run_one(url, watchers)
    finally:
        watched = watchers.stop(result)
    return Round(result, watched.cost, watched.lag)


def _refuse_a_failing_build(side: str, label: str, result: LoadResult) -> None:
    """A build that fails every request of an endpoint (a 404, say) is not measured."""
    for endpoint in result.endpoints:
        summary = result.measured(endpoint)
        if summary.requests and summary.errors == summary.requests:
            which = f"the base build ({label})" if side == "base" else "the candidate build"
            kinds = ", ".join(f"{k}: {n}" for k, n in summary.errors_by_kind.items())
            raise ServiceError(
                f"{which} failed every request to {endpoint} ({kinds}): it cannot be compared"
            )
