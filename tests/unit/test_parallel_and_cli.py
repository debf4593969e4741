"""Multi-process mode and ``perfsuite run``, against the local test server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from perfsuite import ConfigError, Request, Scenario
from perfsuite.load import ClosedPhase, OpenPhase
from perfsuite.load.parallel import run_parallel, split_phases, split_users
from perfsuite.load.scenario import Context
from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.hdr import decode, encode, merge, new_histogram, record_many

from .conftest import Server, signal_and_wait, start_in_own_group

# Loads timed in this process and by the CLI: none runs next to another load.
# Rates, and the time Ctrl-C takes: alone on the machine.
pytestmark = [pytest.mark.usefixtures("quiet"), pytest.mark.exclusive]


def test_split_phases() -> None:
    phases = [
        OpenPhase(name="o", duration=1, start_rate=100, end_rate=300),
        ClosedPhase(name="c", duration=1, users=7),
    ]
    shares = [split_phases(phases, 3, i) for i in range(3)]
    # Open phases whole: each worker takes every third arrival of the one schedule.
    assert [s[0] for s in shares] == [phases[0]] * 3
    assert sorted(s[1].users for s in shares) == [2, 2, 3]
    with pytest.raises(ConfigError, match="2 users cannot be split over 3 workers"):
        split_phases([ClosedPhase(name="c", duration=1, users=2)], 3, 0)
    # Agents of different sizes: one user each, the rest by their cores.
    weighted = [split_phases(phases, 2, i, [6, 2])[1].users for i in range(2)]
    assert weighted == [5, 2]
    assert split_users(100, [4, 2]) == [66, 34]
    assert split_users(3, [8, 1, 1]) == [1, 1, 1]
    for users in range(3, 40):  # evenly as before when the agents are alike
        assert split_users(users, [1, 1, 1]) == [
            users // 3 + (1 if i < users % 3 else 0) for i in range(3)
        ]


def test_two_workers_add_up(server: Server) -> None:
    server.reset()
    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", server.url + "/ok")))
    phases = [OpenPhase(name="p", duration=2.0, start_rate=1000, end_rate=1000)]
    result = run_parallel(server.url, scenario, phases, workers=2)
    m = result.measured()
    assert m.requests == 2000
    assert m.latency.count == 2000  # every answer is in the merged histogram
    assert server.stats()["count"] == 2000
    assert result.phases[0].target_rate == 1000
    assert sum(s.requests for s in result.seconds) == 2000
    assert result.ended[-1][1] == 2000  # the workers' counts of ended requests, added
    blocks = result.blockset()
    assert int(blocks.requests.sum()) == 2000
    assert int(blocks.counts.sum()) == 2000
    assert blocks.metric("p99") == pytest.approx(m.latency.p99)
    # Per-second percentiles are those of the workers' bins added up, not the highest.
    first = BlockSet.from_blocks([b for b in result.cells[0].blocks if b.t == 0])
    second = next(s for s in result.seconds if s.t == 0)
    assert second.requests == int(first.counts.sum())
    assert second.p99 == first.metric("p99")
    # The workers interleave: arrival i is worker i mod 2's, so the server sees
    # one request every millisecond, not two at once every two.
    gaps = np.diff(sorted(server.arrivals()))
    assert float(np.mean(gaps < 0.0003)) < 0.25  # in lockstep, half of them would be


def slow_build(ctx: Context) -> httpx.Request:
    """A builder that takes 0.2 ms: 4,096 requests built ahead take about a second."""
    until = time.perf_counter() + 0.0002
    while time.perf_counter() < until:
        pass
    return ctx.get("/ok")


def test_workers_start_together_once_built(server: Server) -> None:
    """Each worker builds its requests ahead before the start is set: none is late
    at the start however long that takes (it was set 0.3 s ahead, before they
    forked, and their first sends left up to a second late)."""
    scenario = Scenario(Request(name="slow", build=slow_build))
    phases = [OpenPhase(name="p", duration=1.0, start_rate=100, end_rate=100)]
    starts: list[int] = []
    began = time.perf_counter_ns()
    result = run_parallel(server.url, scenario, phases, workers=2, on_start=starts.append)
    assert starts[0] - began > 500_000_000  # set once both had built (> 0.5 s here)
    assert result.measured().requests == 100
    # Before: about half of them late (by up to the build's second). Now none, but
    # for a send or two that a busy machine delays.
    assert result.late <= 5, result.describe()


def test_histogram_merge_is_exact() -> None:
    rng = np.random.default_rng(3)
    a_values = rng.lognormal(8, 1, 50_000).astype(np.int64) + 1
    b_values = rng.lognormal(9, 0.5, 30_000).astype(np.int64) + 1
    a, b, both = new_histogram(), new_histogram(), new_histogram()
    record_many(a, a_values)
    record_many(b, b_values)
    record_many(both, np.concatenate([a_values, b_values]))
    merged = merge([decode(encode(a)), decode(encode(b))])  # as the workers send them
    assert np.array_equal(np.ctypeslib.as_array(merged.counts), np.ctypeslib.as_array(both.counts))
    for q in (50, 90, 99, 99.9, 100):
        assert merged.get_value_at_percentile(q) == both.get_value_at_percentile(q)


def _perfsuite() -> str:
    path = shutil.which("perfsuite")
    assert path
    return path


def test_cli_run_writes_the_json_summary(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = subprocess.run(
        [
            _perfsuite(),
            "run",
            server.url + "/ok",
            "--rate",
            "500",
            "--duration",
            "2s",
            "--json",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "run          request" in result.stdout
    data = json.loads(out.read_text())
    assert data["requests"] == data["answered"] == data["ok"] == 1000
    assert data["errors"] == 0
    assert data["ok_rps"] == pytest.approx(500)
    for key in ("latency_ms", "latency_ok_ms", "service_time_ms"):
        assert set(data[key]) >= {"p50", "p90", "p95", "p99", "p999", "max"}
        assert all(isinstance(v, float) for v in data[key].values())
        assert data[key]["p50"] <= data[key]["p99"] <= data[key]["max"]


def test_cli_run_over_https(tls_server: Server, tmp_path: Path) -> None:
    assert tls_server.ca is not None
    runs = {}
    for name, flags in {
        "cacert": ["--cacert", str(tls_server.ca)],
        "insecure": ["--insecure"],
        "default": [],
    }.items():
        out = tmp_path / f"{name}.json"
        subprocess.run(
            [
                _perfsuite(),
                "run",
                tls_server.url + "/ok",
                "--rate",
                "100",
                "--duration",
                "1s",
                *flags,
                "--json",
                str(out),
                "-q",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        runs[name] = json.loads(out.read_text())
    assert runs["cacert"]["ok"] == runs["insecure"]["ok"] == 100
    assert runs["default"]["errors_by_kind"]["connect"] == 100  # the test's CA is not trusted


def test_cli_run_closed_model_and_workers(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    subprocess.run(
        [
            _perfsuite(),
            "run",
            server.url + "/ok",
            "--concurrency",
            "4",
            "--workers",
            "2",
            "--duration",
            "1s",
            "--json",
            str(out),
            "-q",
        ],
        check=True,
        capture_output=True,
    )
    data = json.loads(out.read_text())
    assert data["model"] == "closed"
    assert data["requests"] > 100
    assert data["errors"] == 0


def test_cli_run_refuses_remote_targets() -> None:
    result = subprocess.run(
        [_perfsuite(), "run", "http://192.0.2.1/", "--rate", "10", "--duration", "1s"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "refusing to send load to '192.0.2.1'" in result.stderr


def test_cli_run_needs_a_model(server: Server) -> None:
    result = subprocess.run([_perfsuite(), "run", server.url], capture_output=True, text=True)
    assert result.returncode == 2
    assert "give exactly one of --rate" in result.stderr


def test_cli_run_stops_on_ctrl_c_with_what_it_measured(server: Server, tmp_path: Path) -> None:
    # A minute at 500 req/s over two workers, Ctrl-C to the process group after a moment.
    server.reset()
    out = tmp_path / "run.json"
    proc = start_in_own_group(
        [_perfsuite(), "run", server.url + "/ok", "--rate", "500", "--duration", "60s",
         "--workers", "2", "--json", str(out), "-q"],
        cwd=tmp_path, env=dict(os.environ),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while server.stats()["count"] < 500 and time.monotonic() < deadline:
        time.sleep(0.1)
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == 130, output
    assert seconds < 5.0, output
    assert "INTERRUPTED: interrupted by SIGINT after" in output
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    assert 500 <= data["requests"] < 500 * 30
    assert data["errors"] == 0  # what was cut off is abandoned, not failed
    seen = server.stats()["count"]
    time.sleep(1.0)
    assert server.stats()["count"] == seen  # no worker goes on sending
