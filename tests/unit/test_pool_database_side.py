"""The pool check without the service's gauges: what the database side alone can say.

The example service with its ``leak`` fault: the payment callback's error path
begins a transaction, rolls it back and never returns its connection, which
then sleeps in MySQL exactly like an idle one. Each inner session runs a
real MariaDB and the real service.
"""

from __future__ import annotations

import pytest

from .conftest import ORDER_PROJECT

pytest_plugins = ["pytester"]
# Inner sessions with their own servers and loads: not next to a latency test.
pytestmark = pytest.mark.exclusive

SETTINGS = """env = {{ ORDER_SERVICE_MARK = "pool-db-side" }}
pass_env = ["ORDER_SERVICE_FAULT", "POOL_MIN_SIZE"]

[tool.perfsuite.pool]
timeout = "2s"
{pool}

[tool.perfsuite.profiles.asis]
duration_scale = 1.0
rate_scale = 1.0
"""

TESTS = """
import os, signal
import pytest
from perfsuite import Request, Scenario

UNKNOWN = {"order_id": 99999999, "payment_id": "p", "amount_cents": 1}
# With ORDER_SERVICE_FAULT=leak, each of these keeps a pooled connection forever.
LEAKS = Scenario(Request(name="leaks", build=lambda ctx: ctx.post("/payments/callback",
                 json=UNKNOWN), status={404}))
HEALTH = Scenario(Request(name="health", build=lambda ctx: ctx.get("/health")))

@pytest.mark.perf
def test_1_healthy(perf_run, perf_phases):
    perf_run(HEALTH, perf_phases.constant(rate=100, duration="2s"))

@pytest.mark.perf
def test_2_leaks_three(perf_run, perf_phases):
    perf_run(LEAKS, perf_phases.constant(rate=3, duration="1s"))

@pytest.mark.perf
def test_3_healthy_after_a_leak(perf_run, perf_phases):
    perf_run(HEALTH, perf_phases.constant(rate=100, duration="2s"))

@pytest.mark.perf
def test_4_leak_flood(perf_run, perf_phases):
    # The issue's run: 40 requests a second for 4 s into a pool of 10.
    perf_run(LEAKS, perf_phases.constant(rate=40, duration="4s"))

@pytest.mark.perf
def test_5_body_fails_and_the_check_cannot_run(perf_run, perf_phases, perf_service):
    perf_run(HEALTH, perf_phases.constant(rate=50, duration="1s"))
    os.kill(perf_service.pid, signal.SIGKILL)  # its gauges cannot be read any more
    assert False, "the body's own failure"
"""


def _session(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    pool: str,
    select: str,
    fault: str = "leak",
) -> pytest.RunResult:
    pytester.makepyprojecttoml(ORDER_PROJECT + SETTINGS.format(pool=pool))
    pytester.makepyfile(test_pool_inner=TESTS)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("ORDER_SERVICE_FAULT", fault)
    return pytester.runpytest_subprocess(
        "-m", "perf", "-k", select, "--perf-profile=asis", "-rA", "-p", "no:cacheprovider"
    )


def _section(result: pytest.RunResult, test: str) -> str:
    """The report of one test (pytest's -rA sections, from its header on)."""
    text = result.stdout.str()
    start = text.index(f"_ {test} _")
    ends = [i for i in (text.find("\n_", start + 1), text.find("\n=", start + 1)) if i > 0]
    return text[start : min(ends, default=len(text))]


def test_with_gauges_a_leak_fails_its_test_and_not_the_next(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _session(
        pytester, monkeypatch, 'metrics = "order-service"', "test_1 or test_2 or test_3"
    )
    result.assert_outcomes(passed=2, failed=1)
    assert "the pool reports 3 connection(s) still in use" in _section(result, "test_2_leaks_three")
    after = _section(result, "test_3_healthy_after_a_leak")
    assert "pool back to idle" in after
    assert "as many as before the load (an earlier test's)" in after


def test_a_pool_declared_in_turn_shows_the_leak_without_gauges(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _session(pytester, monkeypatch, 'hands_out = "in-turn"', "test_1 or test_2 or test_3")
    result.assert_outcomes(passed=2, failed=1)
    healthy = _section(result, "test_1_healthy")
    assert "pool back to idle" in healthy
    assert "ran a statement for the" in healthy
    leak = _section(result, "test_2_leaks_three")
    assert "POOL DID NOT RETURN TO IDLE" in leak
    assert "3 of " in leak
    assert "never returned (leaked)" in leak
    # Test 1's leak is not held against test 3: those connections ran nothing all through it.
    after = _section(result, "test_3_healthy_after_a_leak")
    assert "pool back to idle" in after
    assert "3 others ran nothing since before the load" in after


def test_without_gauges_the_seed_leak_is_never_called_idle_and_fails_on_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _session(pytester, monkeypatch, "", "flood")
    result.assert_outcomes(failed=1)
    report = _section(result, "test_4_leak_flood")
    # Most requests waited for a connection that never came: the default error-rate
    # objective fails the run, though no SLO was declared.
    assert "SLO violated: error_rate" in report
    assert "exceeds SLO at most 1.000%" in report
    # The database side sees ten idle connections: it says it cannot judge.
    assert "pool back to idle" not in report
    assert "pool: cannot judge from the database side" in report


def test_a_wrong_probe_user_is_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _session(pytester, monkeypatch, 'user = "nobody"', "test_1", fault="")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no connection of user 'nobody' was seen*"])


def test_a_pool_that_keeps_more_than_max_idle_open_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fifteen connections open before the load and after it: the pool's minimum
    # idle, not a leak (max_idle stays at its default, 10).
    monkeypatch.setenv("POOL_MIN_SIZE", "15")
    monkeypatch.setenv("POOL_SIZE", "20")
    result = _session(pytester, monkeypatch, 'hands_out = "in-turn"', "test_1", fault="")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*the service's connections before 15, after 15*"])


def test_a_failing_body_is_reported_even_when_the_check_cannot_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _session(pytester, monkeypatch, 'metrics = "order-service"', "test_5", fault="")
    result.assert_outcomes(failed=1)
    report = _section(result, "test_5_body_fails_and_the_check_cannot_run")
    assert "AssertionError: the body's own failure" in report
    assert "pool check not run: the pool metrics endpoint" in report
