"""The gate as users meet it: SLO markers, baselines, comparisons (pytester)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfsuite import ConfigError
from perfsuite.stats.slo import evaluate_diffs, parse_slo
from perfsuite.store.baselines import file_name

pytest_plugins = ["pytester"]


pytestmark = pytest.mark.usefixtures("target_env")


# 2.4-second loads: the gate's plumbing, judged on 1-second blocks (10 are the default).
PYPROJECT = """
[tool.perfsuite]
[tool.perfsuite.profiles.quick]
duration_scale = 0.004
rate_scale = 0.2
[tool.perfsuite.baseline]
min_blocks = 2
alpha = 0.001  # the same build's comparison must not fail this suite 1 % of the time
"""

TESTS = """
import os
import httpx
import pytest
from perfsuite import Request, Scenario

PATH = os.environ.get("QUERY_PATH", "/sleep/2")

@pytest.mark.perf
@pytest.mark.slo(p95=os.environ.get("P95", "500ms"), error_rate="0.1%")
def test_query(perf_run, perf_phases):
    query = Request(name="query", build=httpx.Request("GET", os.environ["TARGET"] + PATH))
    perf_run(Scenario(query), perf_phases.constant(1000, "10m"), target=os.environ["TARGET"])
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.makepyfile(test_user=TESTS)
    return pytester


def run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest_subprocess("-m", "perf", "--perf-profile=quick", "-rA", *args)


def test_slo_violation_reads_like_a_report(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ok   SLO p95 of all endpoints, all measured phases: *"])
    monkeypatch.setenv("P95", "1ms")
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SLO violated: p95 of all endpoints, all measured phases: * ms "
            "(95 % CI * ms to * ms) exceeds SLO at most 1.00 ms*"
        ]
    )


@pytest.mark.exclusive  # verdicts on 2-second loads: no neighbour may move them
def test_baseline_then_compare(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(5):
        run(project, "--perf-save-baseline").assert_outcomes(passed=1)
    path = project.path / "baselines" / file_name("test_user.py::test_query")
    stored = json.loads(path.read_text())
    assert stored["schema"] == 4
    assert len(stored["runs"]) == 5
    # The first run had nothing to be compared with; the others were compared quietly.
    assert [r["judged"] for r in stored["runs"]][:2] == [None, "same"]
    assert set(stored["runs"][0]["fingerprint"]) == {
        "cpu",
        "cores",
        "python",
        "perfsuite",
        "profile",
        "provider",
    }
    same = run(project, "--perf-compare")
    same.assert_outcomes(passed=1)
    assert "regressed" not in same.stdout.str()
    # Over the 5 stored runs, or 4 when a busy machine made one of them a step that
    # the level leaves out (perfsuite.stats.levels, tested on its own).
    same.stdout.fnmatch_lines(
        ["*baseline comparison, query:*", "*p95 *prediction interval over [45] runs, *spread*"]
    )

    monkeypatch.setenv("QUERY_PATH", "/sleep/40")  # 20 times slower
    summary = project.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    slow = run(project, "--perf-compare", "--perf-markdown=pr.md")
    slow.assert_outcomes(failed=1)
    # A regression is rerun by default, and kept because the rerun agreed.
    slow.stdout.fnmatch_lines(["*regression in query: p50 regressed: *", "*confirmed by a rerun*"])
    # The pull-request summary: the regression expanded, the table one line each.
    markdown = (project.path / "pr.md").read_text()
    assert "**1 problem(s)**" in markdown
    assert "- 🔴 **query** p50 regressed: " in markdown
    assert "| `test_query` | query |" in markdown
    assert "| regressed |" in markdown
    assert summary.read_text() == markdown
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")

    # --perf-fail-on=slo: the regression is reported, not fatal.
    run(project, "--perf-compare", "--perf-fail-on=slo").assert_outcomes(passed=1)

    # --perf-no-confirm: no rerun.
    unconfirmed = run(project, "--perf-compare", "--perf-no-confirm")
    unconfirmed.assert_outcomes(failed=1)
    assert "confirmed by a rerun" not in unconfirmed.stdout.str()

    # Saved anyway (say, on main), the slow run is marked and kept out of the level
    # it left: the next run of the fast build is compared with the fast runs.
    run(project, "--perf-save-baseline").assert_outcomes(passed=1)
    assert json.loads(path.read_text())["runs"][-1]["judged"] == "regressed"
    monkeypatch.delenv("QUERY_PATH")
    fast = run(project, "--perf-compare")
    fast.assert_outcomes(passed=1)
    fast.stdout.fnmatch_lines(["*p95 *prediction interval over [45] runs, *"])


def test_other_environment_gives_no_verdict(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(project, "--perf-save-baseline").assert_outcomes(passed=1)
    path = project.path / "baselines" / file_name("test_user.py::test_query")
    data = json.loads(path.read_text())
    data["runs"][0]["fingerprint"]["cpu"] = "Some Other CPU"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("QUERY_PATH", "/sleep/40")
    result = run(project, "--perf-compare")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*warning: the baseline was measured elsewhere (cpu: 'Some Other CPU' -> *"]
    )


def test_window_keeps_the_newest_runs(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(PYPROJECT + "window = 2\n")
    for _ in range(3):
        run(project, "--perf-save-baseline").assert_outcomes(passed=1)
    path = project.path / "baselines" / file_name("test_user.py::test_query")
    assert len(json.loads(path.read_text())["runs"]) == 2


def test_a_schema_1_file_is_read(project: pytest.Pytester) -> None:
    for _ in range(3):
        run(project, "--perf-save-baseline").assert_outcomes(passed=1)
    path = project.path / "baselines" / file_name("test_user.py::test_query")
    data = json.loads(path.read_text())
    data["schema"] = 1
    for r in data["runs"]:
        del r["judged"], r["confirmed"]
    path.write_text(json.dumps(data))
    result = run(project, "--perf-compare")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*p95 *prediction interval over 3 runs, *"])


def test_newer_schema_is_refused(project: pytest.Pytester) -> None:
    folder = project.path / "baselines"
    folder.mkdir()
    (folder / "test_user.py.test_query.json").write_text(
        json.dumps({"schema": 99, "kind": "perfsuite-baseline", "runs": []})
    )
    result = run(project, "--perf-compare")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*StoreError: *has schema 99, newer than this perfsuite*"])


def test_bad_options_and_objectives(project: pytest.Pytester) -> None:
    result = project.runpytest("--perf-fail-on=slo,speed")
    result.stderr.fnmatch_lines(
        ["*--perf-fail-on: expected a comma-separated subset of slo, regression*"]
    )
    project.makepyprojecttoml(PYPROJECT + "\n[tool.perfsuite.slo]\np95 = 'fast'\n")
    result = project.runpytest()
    result.stderr.fnmatch_lines(["*p95: expected a latency like '200ms'*"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"p95": "200 parsecs"}, "expected a latency"),
        ({"p95": -3}, "must be positive"),
        ({"error_rate": "120%"}, "within 0..100 %"),
        ({"min_rps": "many"}, "positive number of req/s"),
        ({"p42": "1ms"}, "unknown objective 'p42'"),
        ({"endpoint": "x"}, "no objective given"),
        ({"diff_rate": "1%", "phase": "steady"}, "answers are compared per replay"),
    ],
)
def test_slo_parsing_is_strict(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_slo(values)


def test_slo_units() -> None:
    parsed = {
        o.metric: o.limit
        for o in parse_slo(
            {
                "p95": "200ms",
                "p99": "0.5s",
                "p50": "1500us",
                "mean": 20,
                "error_rate": "0.1%",
                "min_rps": "950/s",
            }
        )
    }
    assert parsed == {
        "p95": 200.0,
        "p99": 500.0,
        "p50": 1.5,
        "mean": 20.0,
        "error_rate": 0.001,
        "rps": 950.0,
    }


def test_diff_rate_is_judged_on_the_counts_with_an_exact_interval() -> None:
    objectives = parse_slo({"diff_rate": "1%"}) + parse_slo({"diff_rate": "1%", "endpoint": "b"})
    overall, only_b = evaluate_diffs(objectives, {"a": (0, 200), "b": (2, 100)})
    assert (overall.measured, overall.passed) == (2 / 300, True)
    assert (only_b.measured, only_b.passed) == (0.02, False)
    # Clopper-Pearson for 2 of 100: 0.24 % to 7.04 %.
    assert (round(only_b.low, 4), round(only_b.high, 4)) == (0.0024, 0.0704)
    (none,) = evaluate_diffs(parse_slo({"diff_rate": "1%"}), {"a": (0, 0)})
    assert not none.passed  # nothing compared meets no objective
    assert "diff_rate of the answers of b compared: 2.000% (95 % CI 0.243% to 7.038%)" in (
        only_b.describe()
    )


def test_file_names(tmp_path: Path) -> None:
    name = file_name("tests/perf/test_x.py::test_y[a b]")
    assert name.startswith("tests-perf-test_x.py.test_y-a-b-")
    assert name.endswith(".json")
    assert len(file_name("t::" + "x" * 400)) < 140
