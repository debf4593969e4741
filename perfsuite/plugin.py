"""The pytest plugin: hooks only, each a few lines; the fixtures are in ``fixtures.py``.

The work is done by :class:`perfsuite.session.PerfSession`, registered in
``pytest_configure``; see the README for the options and fixtures.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Generator
from typing import Any

import pytest

from perfsuite.errors import ConfigError, PerfsuiteError, PromQLError
from perfsuite.report.lag import lag_text
from perfsuite.report.statements import statements_text
from perfsuite.report.terminal import (
    render_cost_table,
    render_diff_table,
    render_interrupted,
    render_stale_table,
    render_table,
)
from perfsuite.session import PerfSession, perf_lock
from perfsuite.session.metrics import expectations_of
from perfsuite.session.profiling import hottest_text
from perfsuite.signals import cleanup_shield, note_interrupt
from perfsuite.store.runs import encode_cost
from perfsuite.testitem import (
    COST_KEY,
    DIFFS_KEY,
    EXPECT_KEY,
    EXPECTATIONS_KEY,
    GROWTH_KEY,
    POOL_KEY,
    RESULTS_KEY,
    SESSION_KEY,
    VERDICT_KEY,
    WATCHES_KEY,
    entry,
    expect_failures,
    gate_failures,
    growth_failures,
    keep_profiles,
    lag_of,
    pool_failures,
    record_properties,
)

# The fixtures and the command-line options: plugins of their own, loaded with this one.
pytest_plugins = ["perfsuite.fixtures", "perfsuite.options"]
_NO_POOL_MARKER = "no_pool_check: skip the check that the connection pool returns to idle"
_SLO_MARKER = (
    "slo(p95='200ms', p99=..., p99_ok=..., mean=..., max=..., error_rate='0.1%', "
    "min_rps=950, endpoint=None, phase=None): service level objectives of a perf test "
    "(latency over every request that ended; _ok: the successful ones)"
)
_MARKER = "perf: a performance test; deselected unless selected with -m (e.g. pytest -m perf)"
_EXPECT_MARKER = (
    "expect('max_over_time(pool_waiting[30s]) == 0', phase=None): a PromQL comparison that "
    "must hold at every second of the phase (default: the measured phases), on the metrics "
    "scraped during the load"
)

_FLAMEGRAPH_MARKER = (
    "flamegraph: keep this perf test's CPU profile of the service (a flame graph in the "
    "report) even when it passes"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)
    config.addinivalue_line("markers", _SLO_MARKER)
    config.addinivalue_line("markers", _NO_POOL_MARKER)
    config.addinivalue_line("markers", _EXPECT_MARKER)
    config.addinivalue_line("markers", _FLAMEGRAPH_MARKER)
    try:
        session = PerfSession(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"perfsuite: {exc}") from None
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session.records, "perfsuite-records")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[SESSION_KEY].header()


@pytest.hookimpl(trylast=True)  # after -m and -k: count the perf tests that will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Perf tests take minutes and start servers: plain `pytest` leaves them out;
    # any -m expression (`-m perf`, `-m "perf and not slow"`) decides instead.
    perf = [item for item in items if item.get_closest_marker("perf")]
    if not config.option.markexpr and perf:
        config.hook.pytest_deselected(items=perf)
        items[:] = [item for item in items if not item.get_closest_marker("perf")]
        perf = []
    # The gate's false-alarm rate is the session's: split over the perf tests run.
    config.stash[SESSION_KEY].judging.tests = max(len(perf), 1)
    # Expectations are parsed now: a typo fails at start-up, not after the load.
    for item in perf:
        try:
            item.stash[EXPECTATIONS_KEY] = expectations_of(item)
        except PromQLError as exc:
            raise pytest.UsageError(f"perfsuite: {item.nodeid}: {exc}") from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    # Perf tests never overlap on one machine (xdist workers, parallel sessions):
    # they would steal each other's CPU. The judging runs only if the body passed.
    is_perf = item.get_closest_marker("perf") is not None
    with perf_lock() if is_perf else contextlib.nullcontext():
        try:
            try:
                yield
            except KeyboardInterrupt:
                raise
            except BaseException:
                # The body failed: still say whether the pool leaked (the report
                # section carries it), then let the body's failure stand, even if
                # the check itself cannot run (its error is only noted).
                try:
                    pool_failures(item)
                except PerfsuiteError as exc:
                    item.add_report_section("call", "perfsuite: pool", f"pool check not run: {exc}")
                raise
            failures = (
                pool_failures(item)
                + growth_failures(item)
                + expect_failures(item)
                + gate_failures(item)
            )
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM, in the load or in the checks after it: no
            # verdict (the user wants out); what the load measured goes into
            # the run record, marked as interrupted.
            _keep_interrupted(item)
            raise
        finally:
            for watch in item.stash.get(WATCHES_KEY, []):
                watch.close()
            record_properties(item)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def _keep_interrupted(item: pytest.Item) -> None:
    session = item.config.stash[SESSION_KEY]
    results = item.stash.get(RESULTS_KEY, [])
    # No report follows an interrupt, so nothing would carry it from an xdist worker.
    if results and not session.records.is_worker:
        session.records.add(entry(item, "interrupted"))
        session.records.interrupted.append((item.nodeid, [r.describe() for r in results]))


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
    expected = item.stash.get(EXPECT_KEY, [])
    if report.when == "call" and expected:
        report.sections.append(("perfsuite: metrics", "\n".join(v.report() for _, v in expected)))
    diffs = item.stash.get(DIFFS_KEY, [])
    if report.when == "call" and diffs:
        text = "\n".join(line for d in diffs for line in d.report())
        report.sections.append(("perfsuite: replayed answers compared", text))
    lags = [lag.as_json() for lag in lag_of(item) if lag is not None]
    if report.when == "call" and lags:
        text = "\n\n".join(lag_text(lag) for lag in lags)
        report.sections.append(("perfsuite: replica lag", text))
    growth = item.stash.get(GROWTH_KEY, [])
    if report.when == "call" and growth:
        report.sections.append(("perfsuite: growth", "\n".join(v.text() for _, v in growth)))
    costs = item.stash.get(COST_KEY, {})
    if report.when == "call" and (results or verdict is not None):
        # On the report, so that pytest-xdist ships it from a worker to the controller.
        try:
            if costs:
                text = "\n\n".join(statements_text(encode_cost(costs[i])) for i in sorted(costs))
                report.sections.append(("perfsuite: cost (top statements)", text))
            kept = keep_profiles(item, failed=report.failed)
            if kept:
                report.sections.append(
                    ("perfsuite: profile (hottest functions)", hottest_text(kept))
                )
            report.perfsuite_entry = entry(item, report.outcome)  # type: ignore[attr-defined]
        except Exception:  # a fault of ours fails this test, loudly, not the whole session
            report.outcome = "failed"
            report.longrepr = "perfsuite: cannot record this test's results\n" + (
                traceback.format_exc()
            )
    if report.failed:
        logs = item.config.stash[SESSION_KEY].provisioning.service_log_tail()
        if logs:
            report.sections.append(("perfsuite: service log (last lines)", logs))
    return report


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    # Whatever raised it: from now on, what perfsuite stops gets a short grace.
    note_interrupt()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.records.entries:
        return
    for nodeid, described in session.records.interrupted:
        terminalreporter.write(render_interrupted(nodeid, described))
    # Not a terminal (CI logs): wide enough that no column is cut.
    width = terminalreporter._tw.fullwidth if terminalreporter._tw.hasmarkup else 160
    color = terminalreporter._tw.hasmarkup
    terminalreporter.write(render_table(session.records.entries, width=width, color=color))
    terminalreporter.write(render_cost_table(session.records.entries, width=width, color=color))
    terminalreporter.write(render_diff_table(session.records.entries, width=width, color=color))
    terminalreporter.write(render_stale_table(session.records.entries, width=width, color=color))
    with cleanup_shield("writing the run record and the history"):
        written, errors = session.finish()
    for path in written:
        terminalreporter.write_line(f"perfsuite: wrote {path}")
    for error in errors:
        terminalreporter.write_line(f"perfsuite: could not write {error}", red=True, bold=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside the terminal's summary
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    yield
    perf = session.config.stash.get(SESSION_KEY, None)
    if perf is None:
        return
    if perf.finished is None and perf.records.entries:  # no summary (--no-summary, -p no:terminal)
        with cleanup_shield("writing the run record and the history"):
            _, errors = perf.finish()
        for error in errors:
            sys.stderr.write(f"perfsuite: could not write {error}\n")
    # Results that could not be kept fail the run, which had to keep them.
    if perf.finished and perf.finished[1] and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
