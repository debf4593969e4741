"""``perf_run`` and ``perf_phases`` as a user's tests see them (pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


pytestmark = pytest.mark.usefixtures("target_env")


TESTS = """
import os, time
import httpx
import pytest
from perfsuite import Request, Scenario

OK = Scenario(Request(name="ok", build=httpx.Request("GET", os.environ["TARGET"] + "/ok")))

@pytest.mark.perf
def test_scaled(perf_phases):
    phase = perf_phases.constant(rate=1000, duration="10m")
    print("PHASE", phase.describe())
    ramp = perf_phases.stairs(start=100, step=100, steps=3, hold="1m")
    print("STAIRS", [p.name for p in ramp], [p.describe() for p in ramp])

@pytest.mark.perf
def test_run(perf_run, perf_phases):
    result = perf_run(OK, [perf_phases.warmup(100, "10s"), perf_phases.constant(1000, "1m")],
                      target=os.environ["TARGET"])
    assert result.measured().requests == 60
    assert result.summary(phase="warmup", roles=()).requests == 5
    assert result.measured().latency.p99 > 1000, "fail on purpose to show the load section"

def slow(status, body):
    time.sleep(0.02)
    return True

@pytest.mark.perf
def test_saturated(perf_run, perf_phases):
    scenario = Scenario(Request(name="ok", build=OK.requests[0].build, check=slow))
    perf_run(scenario, perf_phases.constant(2000, "1m"), target=os.environ["TARGET"])

@pytest.mark.perf
def test_remote(perf_run, perf_phases):
    perf_run(OK, perf_phases.constant(10, "1m"), target="http://203.0.113.9:80")
"""


def test_phases_follow_the_profile(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess(
        "-m", "perf", "-s", "-k", "scaled", "--perf-profile=smoke"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*PHASE 100 req/s for 6s*",
            "*STAIRS ?'stairs-1', 'stairs-2', 'stairs-3'? ?'10 req/s for 0.6s', "
            "'20 req/s for 0.6s', '30 req/s for 0.6s'?",
        ]
    )


def test_run_result_and_load_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess("-m", "perf", "-k", "test_run", "--perf-profile=smoke")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*fail on purpose*",
            "*- perfsuite: load -*",
            "phase * endpoint * req * ok * err * ok/s*",
            "warmup * ok * 5 * 0 *",
            "steady * ok * 60 * 0 *",
        ]
    )


def test_saturation_is_an_error_not_a_verdict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess("-m", "perf", "-k", "saturated", "--perf-profile=smoke")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*perfsuite: LoadGeneratorSaturated: load generator saturated: "
            "*the generator, not the service*"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_remote_target_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess("-m", "perf", "-k", "remote")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*perfsuite: ConfigError: refusing to send load to '203.0.113.9'*"]
    )


def test_allowed_hosts_and_load_config(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.perfsuite]
        allowed_hosts = ["perf-target.internal"]
        [tool.perfsuite.load]
        max_connections = 64
        timeout = "2s"
        max_duration = "1h"
        workers = 2
        """
    )
    pytester.makepyfile(
        """
        import os
        import httpx
        from perfsuite import Request, Scenario

        def test_options(perf_session):
            o = perf_session.loads.engine_options()
            assert o.allowed_hosts == ("perf-target.internal",)
            assert (o.max_connections, o.timeout, o.max_duration) == (64, 2.0, 3600.0)

        def test_two_workers(perf_run, perf_phases):
            ok = Request(name="ok", build=httpx.Request("GET", os.environ["TARGET"] + "/ok"))
            result = perf_run(Scenario(ok), perf_phases.constant(1000, "1m"),
                              target=os.environ["TARGET"])
            assert result.measured().requests == 60
            assert result.phases[0].target_rate == 100
        """
    )
    pytester.runpytest("--perf-profile=smoke").assert_outcomes(passed=2)
    pytester.makepyprojecttoml(
        """
        [tool.perfsuite.load]
        max_conections = 64
        """
    )
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*unknown key 'max_conections' in ?tool.perfsuite.load?*"])
