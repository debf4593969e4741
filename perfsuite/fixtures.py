"""The plugin's fixtures; each hands over to the session (see the README's table)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from perfsuite.config import Profile
from perfsuite.errors import ConfigError, Interrupted
from perfsuite.load import LoadResult, Phases, Scenario
from perfsuite.load.progress import LiveLine
from perfsuite.provision import MySQLServer, Service
from perfsuite.session import PerfSession
from perfsuite.session.ab import Base, Pairs, prepared_base, run_pairs
from perfsuite.session.watchers import LoadWatchers, Watched
from perfsuite.testitem import (
    AB_KEY,
    COST_KEY,
    DIFFS_KEY,
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
    "perf_replay",
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

        def one(url: str, watchers: LoadWatchers) -> LoadResult:
            return perf_session.loads.run(
                scenario, phases, target=url, progress=live, watchers=watchers
            )

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
                    lag=perf_session.loads.lag_watch,
                )
        finally:
            live.close()
        results = stash.setdefault(RESULTS_KEY, [])
        rounds = zip(pairs.candidate, pairs.candidate_cost, pairs.candidate_lag, strict=True)
        for result, cost, lag in rounds:
            results.append(result)
            if cost is not None:
                stash.setdefault(COST_KEY, {})[len(results) - 1] = cost
            if lag is not None:  # the candidate's lag, for its SLOs and its run record
                stash.setdefault(WATCHED_KEY, {})[len(results) - 1] = Watched(lag=lag)
        return pairs.candidate[-1]

    return run


BASE = "base"  # perf_replay(compare=BASE): the A/B session's base build is the reference


@pytest.fixture
def perf_replay(
    request: pytest.FixtureRequest, perf_session: PerfSession, perf_run: Callable[..., LoadResult]
) -> Callable[..., LoadResult]:
    """``perf_replay(capture, *, speed=1, max_gap=None, rate=None, rules=None, target=None,
    allow_writes_to=None, compare=None, name="replay")``: replay a capture file (or a
    read one) and return the result, as ``perf_run`` does (SLOs, the gate and the checks
    apply). ``compare``: a reference URL or ``"recorded"``; the differences go to the
    run record and ``@pytest.mark.slo(diff_rate=...)`` judges them. In an A/B session,
    ``compare="base"``: the replay runs once against the candidate, the base build (on
    its own copy of the database) answering each request twice beside it.

    Writes (``Rules(allow_writes=True)``) go only to our own service on a MySQL that
    perfsuite started, or to a target named again in ``allow_writes_to``.
    """
    from perfsuite.replay import Capture, read_capture
    from perfsuite.replay.compare import Comparer
    from perfsuite.replay.normalise import Rules
    from perfsuite.replay.schedule import Pace, plan_replay, replay_phase

    def replay(
        capture: Capture | str | Any,
        *,
        speed: float = 1.0,
        max_gap: float | None = None,
        rate: float | None = None,
        rules: Rules | None = None,
        target: str | None = None,
        allow_writes_to: str | None = None,
        compare: str | None = None,
        name: str = "replay",
    ) -> LoadResult:
        rules = rules or Rules()
        if rules.allow_writes:
            _check_writes(target, allow_writes_to)
        _check_compare(compare)
        read = capture if isinstance(capture, Capture) else read_capture(capture)
        plan = plan_replay(read, rules, Pace(speed=speed, max_gap=max_gap, rate=rate))
        url = target or request.getfixturevalue("perf_service").base_url
        with contextlib.ExitStack() as stack:
            reference = stack.enter_context(_base_url()) if compare == BASE else compare
            comparer = Comparer(plan, reference, url) if reference is not None else None
            try:
                scenario, phase = replay_phase(
                    plan, url, name=name, on_answer=comparer.told if comparer else None
                )
                # In an A/B session a compared replay runs once, against the candidate
                # (not in pairs of rounds): its URL is given.
                return perf_run(scenario, phase, target=url if compare == BASE else target)
            finally:
                if comparer is not None:
                    request.node.stash.setdefault(DIFFS_KEY, []).append(comparer.close())

    def _check_compare(compare: str | None) -> None:
        if compare is None:
            return
        if perf_session.config.load.workers > 1:
            raise ConfigError("perf_replay(compare=...) needs one worker (workers = 1)")
        ab = perf_session.ab.enabled
        if compare == BASE and not ab:
            raise ConfigError(
                f"perf_replay(compare={BASE!r}) needs an A/B session (--perf-ab or "
                "--perf-ab-url): the base build answers beside the candidate"
            )
        if compare != BASE and ab:
            raise ConfigError(
                f"perf_replay(compare={compare!r}) in an A/B session: use compare={BASE!r} "
                "(the base build is the reference)"
            )

    @contextlib.contextmanager
    def _base_url() -> Iterator[str]:
        """The A/B session's base build, answering beside the candidate for this replay."""
        base: Base = request.getfixturevalue("perf_ab_base")
        if base.url is not None:
            yield base.url
            return
        assert base.server is not None
        with perf_session.provisioning.start_service(
            base.server, config=base.service, what="the base build's service", track=False
        ) as service:
            yield service.base_url

    def _check_writes(target: str | None, allowed: str | None) -> None:
        if target is None:
            server = request.getfixturevalue("perf_mysql")
            if server.provider != "url":
                return  # our service, on a database we made and will throw away
            why = "its MySQL is a given URL, not one perfsuite started"
        else:
            if allowed == target:
                return
            why = f"the target {target} is not named in allow_writes_to"
        raise ConfigError(f"replay with allow_writes refused: {why}")

    return replay
