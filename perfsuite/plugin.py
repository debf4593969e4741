"""The pytest plugin: hooks and fixtures only, each a few lines.

The work is done by :class:`perfsuite.session.PerfSession`, registered in
``pytest_configure``; see the README for the options and fixtures.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from perfsuite.config import Profile, parse_mysql_choice
from perfsuite.errors import ConfigError, PerfsuiteError, PerfsuiteWarning
from perfsuite.gate import FAIL_ON, TestVerdict
from perfsuite.load import LoadResult, Phases, Scenario
from perfsuite.load.progress import LiveLine
from perfsuite.probes.pool import PoolVerdict, PoolWatch
from perfsuite.probes.resources import ResourceSeries
from perfsuite.provision import MySQLServer, Service
from perfsuite.report.terminal import render_table
from perfsuite.session import PerfSession, perf_lock
from perfsuite.store.runs import entry_for_test

_SESSION_KEY = pytest.StashKey[PerfSession]()
RESULTS_KEY = pytest.StashKey[list[LoadResult]]()
VERDICT_KEY = pytest.StashKey[TestVerdict]()
WATCHES_KEY = pytest.StashKey[list[PoolWatch]]()
POOL_KEY = pytest.StashKey[PoolVerdict]()
RESOURCES_KEY = pytest.StashKey[list[ResourceSeries]]()
_NO_POOL_MARKER = "no_pool_check: skip the check that the connection pool returns to idle"
_SLO_MARKER = (
    "slo(p95='200ms', p99=..., mean=..., max=..., error_rate='0.1%', min_rps=950, "
    "endpoint=None, phase=None): service level objectives of a perf test"
)
_MARKER = "perf: a performance test; deselected unless selected with -m (e.g. pytest -m perf)"


def _mysql_arg(value: str) -> str:
    try:
        parse_mysql_choice(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _fail_on_arg(value: str) -> frozenset[str]:
    chosen = frozenset(v.strip() for v in value.split(",") if v.strip())
    if value.strip() == "none":
        return frozenset({"none"})
    if not chosen or not chosen <= set(FAIL_ON):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {', '.join(FAIL_ON)} (or none), got {value!r}"
        )
    return chosen


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfsuite", "performance tests (perfsuite)")
    group.addoption(
        "--perf-profile",
        dest="perf_profile",
        metavar="NAME",
        help="scale of the load phases: smoke, ci (default) or full, or a profile of "
        "[tool.perfsuite.profiles]",
    )
    group.addoption(
        "--perf-mysql",
        dest="perf_mysql",
        metavar="PROVIDER",
        type=_mysql_arg,
        help="MySQL for the tests: auto (default: a container if Docker answers, else a "
        "local process), process, container, or mysql://user:pass@host:port/db",
    )
    group.addoption(
        "--perf-mysql-image",
        dest="perf_mysql_image",
        metavar="IMAGE",
        help="image of the container provider (default mysql:8.4)",
    )
    group.addoption(
        "--perf-save-baseline",
        dest="perf_save_baseline",
        action="store_true",
        help="store each perf test's run as its newest baseline run",
    )
    group.addoption(
        "--perf-compare",
        dest="perf_compare",
        action="store_true",
        help="compare each perf test with its stored baseline runs",
    )
    group.addoption(
        "--perf-baseline-dir",
        dest="perf_baseline_dir",
        metavar="DIR",
        help="where baselines are stored (default baselines/, or [tool.perfsuite.baseline] dir)",
    )
    group.addoption(
        "--perf-fail-on",
        dest="perf_fail_on",
        metavar="LIST",
        type=_fail_on_arg,
        help="what fails a perf test: slo,regression (default both), one of them, or none",
    )
    group.addoption(
        "--perf-confirm",
        dest="perf_confirm",
        action="store_true",
        help="rerun a test that regressed once; keep the regression only if the rerun agrees",
    )
    group.addoption(
        "--perf-markdown",
        dest="perf_markdown",
        metavar="FILE",
        help="write a Markdown summary for pull requests (also appended to $GITHUB_STEP_SUMMARY)",
    )
    group.addoption(
        "--perf-reports-dir",
        dest="perf_reports_dir",
        metavar="DIR",
        help="where run records go (default reports/; records in DIR/runs/)",
    )
    group.addoption(
        "--perf-history",
        dest="perf_history",
        metavar="URL_OR_PATH",
        help="the history database: a SQLite path or a SQLAlchemy URL, 'none' to keep no "
        "history (default: $PERFSUITE_HISTORY, else [tool.perfsuite] history, else "
        "reports/history.sqlite)",
    )
    parser.addini("perf_profile", "default of --perf-profile", default=None)
    parser.addini("perf_mysql", "default of --perf-mysql", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)
    config.addinivalue_line("markers", _SLO_MARKER)
    config.addinivalue_line("markers", _NO_POOL_MARKER)
    try:
        session = PerfSession(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"perfsuite: {exc}") from None
    config.stash[_SESSION_KEY] = session
    config.pluginmanager.register(session, "perfsuite-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[_SESSION_KEY].header()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Perf tests take minutes and start servers: plain `pytest` leaves them out;
    # any -m expression (`-m perf`, `-m "perf and not slow"`) decides instead.
    if config.option.markexpr:
        return
    perf = [item for item in items if item.get_closest_marker("perf")]
    if perf:
        config.hook.pytest_deselected(items=perf)
        items[:] = [item for item in items if not item.get_closest_marker("perf")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    # Perf tests never overlap on one machine (xdist workers, parallel sessions):
    # they would steal each other's CPU. The judging runs only if the body passed.
    lock = perf_lock(item.config.stash[_SESSION_KEY]) if item.get_closest_marker("perf") else None
    try:
        try:
            yield
        except BaseException:
            # The body failed: still say whether the pool leaked (the report
            # section carries it), then let the body's failure stand.
            if not isinstance(sys.exc_info()[1], KeyboardInterrupt):
                _pool_failures(item)
            raise
        failures = _pool_failures(item) + _gate_failures(item)
    finally:
        for watch in item.stash.get(WATCHES_KEY, []):
            watch.close()
        _record_properties(item)
        if lock is not None:
            lock.close()
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def _record_properties(item: pytest.Item) -> None:
    # JUnit XML properties (what record_property does), so CI systems show the numbers.
    for result in item.stash.get(RESULTS_KEY, []):
        for endpoint in result.endpoints:
            m = result.measured(endpoint)
            for name, value in (
                ("requests", m.requests),
                ("errors", m.errors),
                ("error_rate", round(m.error_rate, 6)),
                ("rps", round(m.achieved_rps, 3)),
                ("p50_ms", round(m.latency.p50, 3)),
                ("p95_ms", round(m.latency.p95, 3)),
                ("p99_ms", round(m.latency.p99, 3)),
                ("mean_ms", round(m.latency.mean, 3)),
            ):
                item.user_properties.append((f"perf.{endpoint}.{name}", value))
    verdict = item.stash.get(VERDICT_KEY, None)
    if verdict is not None:
        for r in verdict.slo:
            item.user_properties.append(
                (f"perf.slo.{r.objective.metric}", "pass" if r.passed else "fail")
            )
        for where, comparisons in verdict.comparisons.items():
            for c in comparisons:
                item.user_properties.append((f"perf.{where}.{c.metric}.verdict", c.verdict))
    pool = item.stash.get(POOL_KEY, None)
    if pool is not None:
        item.user_properties.append(("perf.pool", "idle" if pool.ok else "leak"))


def _pool_failures(item: pytest.Item) -> list[str]:
    watches = item.stash.get(WATCHES_KEY, [])
    if not watches:
        return []
    verdict = watches[-1].wait_idle()
    item.stash[POOL_KEY] = verdict
    return [] if verdict.ok else ["connection pool did not return to idle:\n" + verdict.report()]


def _gate_failures(item: pytest.Item) -> list[str]:
    session = item.config.stash[_SESSION_KEY]
    results = item.stash.get(RESULTS_KEY, [])
    marks = [dict(m.kwargs) for m in item.iter_markers("slo")]
    if not results and not marks:
        return []

    def rerun() -> list[LoadResult]:
        item.stash[RESULTS_KEY] = []
        item.runtest()
        return item.stash.get(RESULTS_KEY, [])

    resources = item.stash.get(RESOURCES_KEY, [])
    verdict = session.judge(
        session.test_id(item.path, item.nodeid), results, marks, rerun, resources
    )
    item.stash[VERDICT_KEY] = verdict
    for warning in verdict.warnings:
        warnings.warn(PerfsuiteWarning(f"{item.nodeid}: {warning}"), stacklevel=1)
    return verdict.failures(session.fail_on)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, PerfsuiteError):
        report.longrepr = PerfSession.short_error(call.excinfo.value)
    results = item.stash.get(RESULTS_KEY, [])
    if report.when == "call" and results:
        report.sections.append(
            ("perfsuite: load", "\n\n".join(result.describe() for result in results))
        )
    verdict = item.stash.get(VERDICT_KEY, None)
    if report.when == "call" and verdict is not None:
        report.sections.append(("perfsuite: gate", verdict.report()))
    pool = item.stash.get(POOL_KEY, None)
    if report.when == "call" and pool is not None:
        report.sections.append(("perfsuite: pool", pool.report()))
    if report.when == "call" and (results or verdict is not None):
        # On the report, so that pytest-xdist ships it from a worker to the controller.
        try:
            report.perfsuite_entry = _entry(item, report.outcome)  # type: ignore[attr-defined]
        except Exception:  # a fault of ours fails this test, loudly, not the whole session
            report.outcome = "failed"
            report.longrepr = "perfsuite: cannot record this test's results\n" + (
                traceback.format_exc()
            )
    if report.failed:
        logs = item.config.stash[_SESSION_KEY].service_log_tail()
        if logs:
            report.sections.append(("perfsuite: service log (last lines)", logs))
    return report


@pytest.fixture(scope="session")
def perf_session(pytestconfig: pytest.Config) -> PerfSession:
    """The perfsuite session object (config, provider choice, lifecycles)."""
    return pytestconfig.stash[_SESSION_KEY]


@pytest.fixture(scope="session")
def perf_profile(perf_session: PerfSession) -> Profile:
    """The active profile: scales durations and rates of the load phases."""
    return perf_session.config.profile


@pytest.fixture(scope="session")
def perf_mysql(perf_session: PerfSession) -> Iterator[MySQLServer]:
    """The provisioned MySQL server, with the configured SQL files loaded."""
    with perf_session.mysql() as server:
        yield server


@pytest.fixture(scope="session")
def perf_seed(perf_session: PerfSession, perf_mysql: MySQLServer) -> None:
    """Seed data: runs ``[tool.perfsuite] seed``; override it to seed your own way."""
    perf_session.seed(perf_mysql)


@pytest.fixture(scope="session")
def perf_service(
    perf_session: PerfSession, perf_mysql: MySQLServer, perf_seed: None
) -> Iterator[Service]:
    """The service under test, started after MySQL and the seed, healthy."""
    with perf_session.start_service(perf_mysql) as service:
        yield service


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


@pytest.fixture
def perf_run(
    request: pytest.FixtureRequest, perf_session: PerfSession
) -> Callable[..., LoadResult]:
    """``perf_run(scenario, phases, target=None)``: run the load and return its result.

    The target defaults to the ``perf_service`` fixture's URL.
    """

    def run(scenario: Scenario, phases: Any, *, target: str | None = None) -> LoadResult:
        watch = sampler = None
        if target is None:
            target = request.getfixturevalue("perf_service").base_url
            # The pool and the process are only ours to watch when the load went to our service.
            disabled = request.node.get_closest_marker("no_pool_check") is not None
            watch = perf_session.pool_watch(disabled=disabled)
            sampler = perf_session.resource_sampler()
        live = _live_line(request.config)
        if watch is not None:
            request.node.stash.setdefault(WATCHES_KEY, []).append(watch)
            watch.start()
        if sampler is not None:
            sampler.start()
        try:
            result = perf_session.run_load(scenario, phases, target=target, progress=live)
        finally:
            live.close()
            if sampler is not None:
                request.node.stash.setdefault(RESOURCES_KEY, []).append(sampler.stop())
            if watch is not None:
                watch.stop()
        request.node.stash.setdefault(RESULTS_KEY, []).append(result)
        return result

    return run


def _entry(item: pytest.Item, outcome: str) -> dict[str, Any]:
    session = item.config.stash[_SESSION_KEY]
    verdict = item.stash.get(VERDICT_KEY, None)
    pool = item.stash.get(POOL_KEY, None)
    results: list[LoadResult] = item.stash.get(RESULTS_KEY, [])
    return entry_for_test(
        test_id=session.test_id(item.path, item.nodeid),
        outcome=outcome,
        results=results,
        slo=verdict.slo if verdict else (),
        comparisons=verdict.comparisons if verdict else None,
        warnings=verdict.warnings if verdict else (),
        growth=[
            {"per_minute": s.per_minute, "low": s.low, "high": s.high, "too_fast": bad}
            for s, bad in (verdict.growth if verdict else [])
        ],
        pool=None
        if pool is None
        else {
            "ok": pool.ok,
            "reasons": pool.reasons,
            "report": pool.report(),
            "series": pool.series(),
        },
        resources=[r.as_json() for r in item.stash.get(RESOURCES_KEY, [])],
    )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(_SESSION_KEY, None)
    if session is None or not session.entries:
        return
    text = render_table(
        session.entries,
        # Not a terminal (CI logs): wide enough that no column is cut.
        width=terminalreporter._tw.fullwidth if terminalreporter._tw.hasmarkup else 160,
        color=terminalreporter._tw.hasmarkup,
    )
    terminalreporter.write(text)
    for path in session.finish():
        terminalreporter.write_line(f"perfsuite: wrote {path}")
