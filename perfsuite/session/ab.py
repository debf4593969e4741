"""A/B runs: the base build beside the candidate, in paired rounds.

``--perf-ab=REF`` checks REF out into a temporary git worktree and runs the
base build's service from there, with the same configuration, on its own
copy of the seeded database; ``--perf-ab-url`` takes a base service that
already runs. Each perf test then runs in pairs of rounds: both builds get
the same phases and the same scenario seed, in an order drawn by a seeded
generator, each pair on freshly started processes, so that a process's
placement (its memory layout, its core, its neighbours) is drawn again for
every pair instead of being reported as a regression.

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
from perfsuite.provision import MySQLServer
from perfsuite.provision.databases import copied_database
from perfsuite.provision.worktree import git_worktree, resolve_ref
from perfsuite.session.cost import CostMeter, CostProbes
from perfsuite.session.provisioning import Provisioning, started
from perfsuite.stats.cost import RequestCost

__all__ = ["SIDES", "ABOptions", "Base", "Pairs", "run_pairs"]

SIDES = ("base", "candidate")
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
    run_one: Callable[[str], LoadResult],
    *,
    seed: str,
    partial: list[Pairs] | None = None,
    costs: CostProbes | None = None,
) -> Pairs:
    """Run ``options.pairs`` pairs of rounds, each pair on fresh processes of both builds.

    ``partial``: the pairs are appended to it first, so that the pairs run
    before a Ctrl-C are not lost. ``costs``: measure each round's cost on its
    build's database (and its service's CPU).
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
            done = _pair(order, base, provisioning, candidate_server, run_one, costs)
        except LoadGeneratorSaturated as exc:
            if len(pairs.redone) >= redos:
                raise
            why = str(exc).splitlines()[0]
            pairs.redone.append(why)
            warnings.warn(PerfsuiteWarning(f"A/B: a pair run again: {why}"), stacklevel=2)
            continue
        for side in order:
            _refuse_a_failing_build(side, base.label, done[side][0])
        # Only whole pairs count: a round whose partner never ran is no pair.
        pairs.base.append(done["base"][0])
        pairs.candidate.append(done["candidate"][0])
        pairs.base_cost.append(done["base"][1])
        pairs.candidate_cost.append(done["candidate"][1])
        pairs.order.append(order[0])
    return pairs


def _pair(
    order: list[str],
    base: Base,
    provisioning: Provisioning,
    candidate_server: MySQLServer,
    run_one: Callable[[str], LoadResult],
    costs: CostProbes | None,
) -> dict[str, tuple[LoadResult, RequestCost | None]]:
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
        return {side: _round(run_one, urls[side], meters[side]) for side in order}


def _round(
    run_one: Callable[[str], LoadResult], url: str, meter: CostMeter | None
) -> tuple[LoadResult, RequestCost | None]:
    """One build's round, with its cost when it can be read."""
    if meter is None:
        return run_one(url), None
    meter.start()
    result = None
    try:
        result = run_one(url)
    finally:
        cost = meter.stop(result)
    return result, cost


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
