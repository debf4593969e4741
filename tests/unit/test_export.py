"""``--perf-prometheus-port``: perfsuite's own numbers, live, equal to the run's."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from .conftest import debian_binary, free_port, prometheus_api, prometheus_server

pytest_plugins = ["pytester"]

# One phase, so that every second belongs to it; 90 % answered, 10 % HTTP 500.
TESTS = """
import json, os, time
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from perfsuite import Request, Scenario

def build(ctx):
    path = "/status/500" if ctx.rng.random() < 0.1 else "/ok"
    return ctx.get(path)

@pytest.mark.perf
@pytest.mark.slo(error_rate="20%")
def test_live(perf_run, perf_phases):
    scenario = Scenario(Request(name="get", build=build))
    result = perf_run(scenario, perf_phases.constant(200, "3s"), target=os.environ["TARGET"])
    text = httpx.get(f"http://127.0.0.1:{os.environ['EXPORT_PORT']}/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    measured = result.measured()

    def get(name, **labels):
        labels.update(endpoint="get", phase="steady", test="test_live.py::test_live")
        return samples[(name, tuple(sorted(labels.items())))]

    assert get("perfsuite_requests_total", outcome="ok") == measured.ok
    failed = get("perfsuite_requests_total", outcome="failed")
    assert failed == measured.requests - measured.ok > 0
    p99 = get("perfsuite_request_duration_quantile_seconds", quantile="0.99")
    assert p99 == measured.latency.p99 / 1000
    assert get("perfsuite_request_duration_seconds_count") == measured.requests
    Path = __import__("pathlib").Path
    Path(os.environ["RESULT_FILE"]).write_text(json.dumps(
        {"requests": measured.requests, "ok": measured.ok, "p99_s": measured.latency.p99 / 1000}
    ))
    time.sleep(float(os.environ.get("LINGER", "0")))  # for a Prometheus's last scrape
"""


@pytest.fixture
def live_project(
    pytester: pytest.Pytester, target_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, Path]:
    pytester.makepyfile(test_live=TESTS)
    port = free_port()
    result_file = tmp_path / "result.json"
    monkeypatch.setenv("EXPORT_PORT", str(port))
    monkeypatch.setenv("RESULT_FILE", str(result_file))
    return port, result_file


@pytest.mark.parametrize("workers", [1, 2])
def test_the_live_numbers_are_the_runs(
    pytester: pytest.Pytester, live_project: tuple[int, Path], workers: int
) -> None:
    # Two workers: their seconds come through their pipes, and add up to the run's.
    pytester.makepyprojecttoml(f"[tool.perfsuite.load]\nworkers = {workers}\n")
    port, result_file = live_project
    result = pytester.runpytest_subprocess(
        "-m", "perf", "--perf-profile=full", f"--perf-prometheus-port={port}", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*live metrics at http://127.0.0.1:{port}/metrics*"])
    assert json.loads(result_file.read_text())["requests"] > 500
    # Nothing listens once the session is over.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_port_in_use_is_a_usage_error(
    pytester: pytest.Pytester, live_project: tuple[int, Path]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = pytester.runpytest_subprocess("-m", "perf", f"--perf-prometheus-port={taken}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--perf-prometheus-port {taken}: cannot listen:*"])
    bad = pytester.runpytest_subprocess("-m", "perf", "--perf-prometheus-port=http")
    bad.stderr.fnmatch_lines(["*--perf-prometheus-port: expected a TCP port*"])


def test_prometheus_scrapes_the_same_numbers(
    pytester: pytest.Pytester,
    live_project: tuple[int, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    binary = debian_binary("prometheus", "this test has Prometheus scrape perfsuite")
    port, result_file = live_project
    monkeypatch.setenv("LINGER", "3")  # Prometheus scrapes once a second
    (tmp_path / "prometheus").mkdir()
    with prometheus_server(binary, tmp_path / "prometheus", f"127.0.0.1:{port}") as url:
        result = pytester.runpytest_subprocess(
            "-m", "perf", "--perf-profile=full", f"--perf-prometheus-port={port}"
        )
        result.assert_outcomes(passed=1)
        run = json.loads(result_file.read_text())
        # The last values Prometheus stored (looking back over the run).
        total = prometheus_api(
            url, "query", query="sum(last_over_time(perfsuite_requests_total[1m]))"
        )
        p99 = prometheus_api(
            url,
            "query",
            query='last_over_time(perfsuite_request_duration_quantile_seconds{quantile="0.99"}[1m])',
        )
    assert float(total["result"][0]["value"][1]) == run["requests"]
    assert float(p99["result"][0]["value"][1]) == pytest.approx(run["p99_s"], rel=1e-9)
