"""The plugin's fixtures; each hands over to the session (see the README's table)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from perfsuite.config import Profile
from perfsuite.errors import Interrupted
from perfsuite.load import LoadResult, Phases, Scenario
from perfsuite.load.progress import LiveLine
from perfsuite.provision import MySQLServer, Service
from perfsuite.session import PerfSession
from perfsuite.session.ab import Base, Pairs, prepared_base, run_pairs
from perfsuite.testitem import (
    AB_KEY,
    COST_KEY,
    EXPECTATIONS_KEY,
    RESOURCES_KEY,
    RESULTS_KEY,
    SESSION_KEY,
    WATCHED_KEY,
    WATCHES_KEY,
)

__all__ = [
    "perf_ab_base",
    "perf_mysql",
    "perf_phases",
    "perf_profile",
    "perf_run",
    "perf_seed",
    "perf_service",
    "perf_session",
]


@pytest.fixture(scope="session")
def perf_session(pytestconfig: pytest.Config) -> PerfSession:
    """The perfsuite session object (config, provider choice, lifecycles)."""
    return pytestconfig.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def perf_profile(perf_session: PerfSession) -> Profile:
    """The active profile: scales durations and rates of the load phases."""
    return perf_session.config.profile


@pytest.fixture(scope="session")
def perf_mysql(perf_session: PerfSession) -> Iterator[MySQLServer]:
    """The provisioned MySQL server, with the configured SQL files loaded."""
    with perf_session.provisioning.mysql() as server:
        yield server


@pytest.fixture(scope="session")
def perf_seed(perf_session: PerfSession, perf_mysql: MySQLServer) -> None:
    """Seed data: runs ``[tool.perfsuite] seed``; override it to seed your own way."""
    perf_session.provisioning.seed(perf_mysql)


@pytest.fixture(scope="session")
def perf_service(
    perf_session: PerfSession, perf_mysql: MySQLServer, perf_seed: None
) -> Iterator[Service]:
    """The service under test, started after MySQL and the seed, healthy."""
    with perf_session.provisioning.start_service(perf_mysql) as service:
        yield service


@pytest.fixture(scope="session")
def perf_ab_base(
    perf_session: PerfSession, perf_mysql: MySQLServer, perf_seed: None
) -> Iterator[Base | None]:
    """A/B sessions: the base build, ready to start (its worktree, its copy of the
    seeded database); ``None`` in other sessions."""
    if not perf_session.ab.enabled:
        yield None
        return
    with prepared_base(perf_session.ab, perf_session.config, perf_mysql) as base:
        yield base


@pytest.fixture(scope="session")
def perf_phases(perf_profile: Profile) -> Phases:
    """Builds load phases written for ``full``, scaled to the active profile."""
    return Phases(perf_profile)


def _live_line(config: pytest.Config) -> LiveLine:
    capman = config.pluginmanager.getplugin("capturemanager")

    def wrap(draw: Callable[[], None]) -> None:
        if capman is None:
            draw()
            return
        with capman.global_and_fixture_disabled():
            draw()

    return LiveLine(sys.__stderr__ or sys.stderr, enabled=config.get_verbosity() >= 0, wrap=wrap)


@contextlib.contextmanager
def _keeping_partial(stash: pytest.Stash, pairs: list[Pairs] | None = None) -> Iterator[None]:
    """On Ctrl-C, keep what the load measured so far for the run's summary (with A/B,
    the candidate's whole rounds, then its interrupted one)."""
    try:
        yield
    except Interrupted as exc:
        kept = stash.setdefault(RESULTS_KEY, [])
        if pairs:
            kept.extend(pairs[-1].candidate)
        if exc.result is not None:
            kept.append(exc.result)
        raise


@pytest.fixture
def perf_run(
    request: pytest.FixtureRequest, perf_session: PerfSession
) -> Callable[..., LoadResult]:
    """``perf_run(scenario, phases, target=None)``: run the load and return its result.

    The target defaults to the ``perf_service`` fixture's URL.
    """
    stash = request.node.stash

    def run(scenario: Scenario, phases: Any, *, target: str | None = None) -> LoadResult:
        if target is None and perf_session.ab.enabled:
            return run_ab(scenario, phases)
        loads = perf_session.loads
        watchers = None
        if target is None:
            target = request.getfixturevalue("perf_service").base_url
            # The pool and the process are only ours to watch when the load went to our service.
            watchers = loads.watchers(
                phases,
                stash.get(EXPECTATIONS_KEY, []),
                pool_check=request.node.get_closest_marker("no_pool_check") is None,
                keep_profile=perf_session.takes_profiles(),
            )
        live = _live_line(request.config)
        if loads.exporter is not None:
            loads.exporter.start_load(perf_session.test_id(request.node.path, request.node.nodeid))
        if watchers is not None:
            if watchers.pool is not None:
                stash.setdefault(WATCHES_KEY, []).append(watchers.pool)
            watchers.start()
        result = None
        try:
            with _keeping_partial(stash):
                result = loads.run(
                    scenario, phases, target=target, progress=live, watchers=watchers
                )
        finally:
            live.close()
            watched = watchers.stop(result) if watchers is not None else None
            if watched is not None and watched.series is not None:
                stash.setdefault(RESOURCES_KEY, []).append(watched.series)
        results = stash.setdefault(RESULTS_KEY, [])
        results.append(result)
        if watched is not None:  # keyed by the load's place among the test's results
            index = len(results) - 1
            stash.setdefault(WATCHED_KEY, {})[index] = watched
            if watched.cost is not None:
                stash.setdefault(COST_KEY, {})[index] = watched.cost
        return result

    def run_ab(scenario: Scenario, phases: Any) -> LoadResult:
        base = request.getfixturevalue("perf_ab_base")
        server = request.getfixturevalue("perf_mysql")
        live = _live_line(request.config)
        done = stash.setdefault(AB_KEY, [])

        def one(url: str) -> LoadResult:
            return perf_session.loads.run(scenario, phases, target=url, progress=live)

        try:
            with _keeping_partial(stash, done):
                pairs = run_pairs(
                    perf_session.ab,
                    base,
                    perf_session.provisioning,
                    server,
                    one,
                    seed=f"{request.node.nodeid} {len(done)}",
                    partial=done,
                    costs=perf_session.loads.costs,
                )
        finally:
            live.close()
        results = stash.setdefault(RESULTS_KEY, [])
        for result, cost in zip(pairs.candidate, pairs.candidate_cost, strict=True):
            results.append(result)
            if cost is not None:
                stash.setdefault(COST_KEY, {})[len(results) - 1] = cost
        return pairs.candidate[-1]

    return run
