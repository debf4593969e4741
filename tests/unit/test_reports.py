"""Run records, JUnit properties and the terminal summary (pytester)."""

from __future__ import annotations

import itertools
import json
import socket
import xml.etree.ElementTree as ET

import pytest

from perfsuite.store.history import History, history_url

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("target_env")

TESTS = """
import os
import httpx
import pytest
from perfsuite import Request, Scenario

@pytest.mark.perf
@pytest.mark.slo(p95="500ms")
def test_query(perf_run, perf_phases):
    query = Request(name="query", build=httpx.Request("GET", os.environ["TARGET"] + "/ok"))
    perf_run(Scenario(query), perf_phases.constant(1000, "10m"), target=os.environ["TARGET"])

def test_plain():
    pass
"""


def test_run_record_junit_and_terminal_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.perfsuite]\n")
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess(
        "-m", "perf or not perf", "--perf-profile=smoke", "--junitxml=junit.xml"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test * endpoint * ok/s * p50 ms * p95 ms * p99 ms * errors * SLO * compared * pool*",
            "*test_query * query * steady * 100 * pass * - * - *",
            "perfsuite: wrote *reports/runs/*.json",
        ]
    )
    (record_path,) = (pytester.path / "reports" / "runs").glob("*.json")
    record = json.loads(record_path.read_text())
    assert (record["schema"], record["kind"], record["profile"]) == (1, "perfsuite-run", "smoke")
    assert set(record["fingerprint"]) >= {"cpu", "cores", "python", "perfsuite"}
    (entry,) = record["tests"]  # the plain test ran no load: no entry
    assert entry["id"] == "test_user.py::test_query"
    assert entry["outcome"] == "passed"
    # The declared objective, and perfsuite's default one on the error rate.
    assert {s["metric"]: s["passed"] for s in entry["slo"]} == {"p95": True, "error_rate": True}
    (cell,) = [c for c in entry["loads"][0]["cells"] if c["phase"] == "steady"]
    assert cell["summary"]["requests"] == 600
    assert cell["latency"].startswith("HISTFAA")  # the standard HDR encoding

    root = ET.parse(pytester.path / "junit.xml").getroot()
    props = {
        p.get("name"): p.get("value")
        for case in root.iter("testcase")
        if case.get("name") == "test_query"
        for p in case.iter("property")
    }
    assert props["perf.query.requests"] == "600"
    assert props["perf.query.errors"] == "0"
    assert float(props["perf.query.p95_ms"]) > 0
    assert props["perf.slo.p95"] == "pass"


def test_a_history_that_cannot_be_written_fails_the_run_and_loses_nothing_else(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyprojecttoml("[tool.perfsuite]\n")
    pytester.makepyfile(test_user=TESTS)
    with socket.socket() as sock:  # a port where no database answers
        sock.bind(("127.0.0.1", 0))
        dead = f"mysql+pymysql://app:hunter2-secret@127.0.0.1:{sock.getsockname()[1]}/h"
    result = pytester.runpytest_subprocess(
        "-m", "perf", "--perf-profile=smoke", f"--perf-history={dead}", "--perf-markdown=pr.md"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    assert "perfsuite: could not write the history mysql+pymysql://app:***@" in output
    assert "hunter2-secret" not in output
    # The run record and the Markdown summary are written all the same.
    assert list((pytester.path / "reports" / "runs").glob("*.json"))
    assert "test_query" in (pytester.path / "pr.md").read_text()


def test_nothing_written_without_perf_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=TESTS)
    pytester.runpytest().assert_outcomes(passed=1, deselected=1)
    assert not (pytester.path / "reports").exists()


XDIST_TESTS = """
import os, pathlib, time
import httpx
import pytest
from perfsuite import Request, Scenario

def _load(perf_run, perf_phases, name):
    log = pathlib.Path(os.environ["SPANS"])
    start = time.time()
    query = Request(name=name, build=httpx.Request("GET", os.environ["TARGET"] + "/ok"))
    perf_run(Scenario(query), perf_phases.constant(1000, "2m"), target=os.environ["TARGET"])
    with log.open("a") as fh:
        fh.write(f"{start} {time.time()}\\n")

@pytest.mark.perf
def test_one(perf_run, perf_phases):
    _load(perf_run, perf_phases, "one")

@pytest.mark.perf
def test_two(perf_run, perf_phases):
    _load(perf_run, perf_phases, "two")

@pytest.mark.perf
def test_three(perf_run, perf_phases):
    _load(perf_run, perf_phases, "three")
"""


def test_xdist_serialises_perf_tests_and_reports_them_all(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = pytester.path / "spans.txt"
    monkeypatch.setenv("SPANS", str(spans))
    pytester.makepyprojecttoml("[tool.perfsuite]\n")
    pytester.makepyfile(test_user=XDIST_TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-m", "perf", "--perf-profile=smoke")
    result.assert_outcomes(passed=3)
    intervals = sorted(tuple(map(float, line.split())) for line in spans.read_text().splitlines())
    assert len(intervals) == 3
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end - 0.05, f"perf tests overlapped: {intervals}"
    # Results from both workers reach the controller's table and record.
    for name in ("one", "two", "three"):  # in the order the workers finished them
        result.stdout.fnmatch_lines([f"*test_{name} * {name} *"])
    (record,) = (pytester.path / "reports" / "runs").glob("*.json")
    tests = {t["id"] for t in json.loads(record.read_text())["tests"]}
    assert tests == {f"test_user.py::test_{n}" for n in ("one", "two", "three")}
    # ... and the history (one run, written by the controller) and so the report.
    with History(history_url("reports/history.sqlite", pytester.path)) as history:
        (run,) = history.runs()
        points = history.points([run.id])
    assert {(p.test, p.endpoint) for p in points if p.metric == "p99"} == {
        (f"test_user.py::test_{n}", n) for n in ("one", "two", "three")
    }
