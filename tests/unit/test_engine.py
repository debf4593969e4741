"""The load engine against real local servers (a subprocess on loopback)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from perfsuite import ConfigError, LoadError, Request, Scenario, run_load
from perfsuite.load import ClosedPhase, EngineOptions, OpenPhase
from perfsuite.load.safety import check_target

from .conftest import Server

# Every test here times a load in this process: none runs next to another load.
# Their per-second counts and latencies: alone on the machine.
pytestmark = [pytest.mark.usefixtures("quiet"), pytest.mark.exclusive]


def get(name: str, path: str, **kwargs: object) -> Request:
    return Request(name=name, build=httpx.Request("GET", "http://127.0.0.1" + path), **kwargs)


def constant(rate: float, duration: float, name: str = "steady", **kw: object) -> OpenPhase:
    return OpenPhase(name=name, duration=duration, start_rate=rate, end_rate=rate, **kw)


def test_open_loop_holds_1000_per_second(server: Server) -> None:
    server.reset()
    result = run_load(server.url, Scenario(get("ok", "/ok")), [constant(1000, 5.0)])
    stats = server.stats()
    m = result.measured()
    assert m.requests == 5000
    assert m.errors == 0
    assert stats["count"] == 5000
    # The rate the server saw, between its first and last arrival.
    seen = (stats["count"] - 1) / (stats["last"] - stats["first"])
    assert seen == pytest.approx(1000, rel=0.01)
    # And second by second, as the per-second series recorded it.
    full = [s.requests for s in result.seconds if 0 < s.t < 4]
    assert all(abs(n - 1000) <= 10 for n in full), full


def test_ramp_schedule() -> None:
    phase = OpenPhase(name="ramp", duration=10, start_rate=100, end_rate=1000)
    offsets = list(phase.offsets())
    assert len(offsets) == 5500
    first_second = sum(1 for t in offsets if t < 1)
    last_second = sum(1 for t in offsets if t >= 9)
    assert first_second == pytest.approx(145, abs=1)  # 100 + 45
    assert last_second == pytest.approx(955, abs=1)
    assert offsets == sorted(offsets)


def test_latency_counts_from_the_intended_send_time(server: Server) -> None:
    # Stop the server for 0.6 s mid-run (SIGSTOP, as a GC pause would): the
    # requests scheduled meanwhile wait for a connection, so their latency
    # shows the stall while their service time (from the actual send) does not.
    def stall() -> None:
        time.sleep(1.0)
        os.kill(server.proc.pid, signal.SIGSTOP)
        time.sleep(0.6)
        os.kill(server.proc.pid, signal.SIGCONT)

    staller = threading.Thread(target=stall)
    staller.start()
    result = run_load(
        server.url,
        Scenario(get("ok", "/ok")),
        [constant(500, 3.0)],
        options=EngineOptions(max_connections=2),
    )
    staller.join()
    m = result.measured()
    assert m.errors == 0
    assert m.latency.p99 >= 300.0  # the stall, seen from the schedule
    assert m.latency.max >= 500.0
    assert m.service_time.p99 < m.latency.p99 / 3  # the stall, hidden from send-time clocks
    assert result.late > 100
    assert not result.saturated  # a stalled service is not the generator's fault


def test_closed_model_respects_concurrency(server: Server) -> None:
    server.reset()
    phase = ClosedPhase(name="users", duration=2.0, users=8)
    result = run_load(server.url, Scenario(get("slow", "/sleep/20")), [phase])
    stats = server.stats()
    assert stats["max_inflight"] == 8
    m = result.measured()
    assert m.errors == 0
    # 8 users, each ~20 ms a request, for 2 s: about 800 requests, never more than 8 at once.
    assert 400 < m.requests <= 8 * 2.0 / 0.020 + 8


def test_closed_model_think_time(server: Server) -> None:
    server.reset()
    phase = ClosedPhase(name="users", duration=2.0, users=4, think_time=0.1)
    result = run_load(server.url, Scenario(get("ok", "/ok")), [phase])
    # Each user: request, then 100 ms thinking: at most ~20 requests per user.
    assert result.measured().requests <= 4 * 21
    assert server.stats()["max_inflight"] <= 4


def test_phases_and_endpoints_are_kept_apart(server: Server) -> None:
    scenario = Scenario(get("a", "/ok", weight=3), get("b", "/body/x", weight=1))
    phases = [
        constant(100, 1.0, name="warm", role="warmup"),
        constant(200, 1.0, name="one"),
        constant(400, 1.0, name="two"),
    ]
    result = run_load(server.url, scenario, phases)
    counts = {(c.phase, c.endpoint): c.requests for c in result.cells}
    assert sum(v for (p, _), v in counts.items() if p == "warm") == 100
    assert sum(v for (p, _), v in counts.items() if p == "one") == 200
    assert sum(v for (p, _), v in counts.items() if p == "two") == 400
    assert counts["two", "a"] > 2 * counts["two", "b"]  # 3:1 weights
    assert result.measured().requests == 600  # the warm-up is not measured
    assert result.summary(phase="warm", roles=()).requests == 100
    assert result.summary(endpoint="b").requests == counts["one", "b"] + counts["two", "b"]
    with pytest.raises(KeyError, match="no phase 'three'"):
        result.summary(phase="three")


def test_errors_are_categorised(server: Server) -> None:
    scenario = Scenario(
        get("fine", "/ok"),
        get("failing", "/status/503"),
        get("hanging", "/hang"),
        get("dropping", "/drop"),
        get("wrong", "/body/nope", check=lambda status, body: body == b"yes"),
    )
    result = run_load(
        server.url,
        scenario,
        [constant(100, 1.0)],
        options=EngineOptions(timeout=0.3),
    )
    kinds = {ep: result.measured(ep).errors_by_kind for ep in result.endpoints}
    sent = {ep: result.measured(ep).requests for ep in result.endpoints}
    assert kinds["fine"] == dict.fromkeys(kinds["fine"], 0)
    assert kinds["failing"]["status"] == sent["failing"] > 0
    assert kinds["hanging"]["timeout"] == sent["hanging"] > 0
    assert kinds["dropping"]["closed"] == sent["dropping"] > 0
    assert kinds["wrong"]["check"] == sent["wrong"] > 0
    assert result.cells[1].statuses == {503: sent["failing"]}


def test_connect_errors() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        result = run_load(f"http://127.0.0.1:{port}", Scenario(get("x", "/")), [constant(50, 1.0)])
    m = result.measured()
    assert m.requests == 50
    assert m.errors_by_kind["connect"] == 50


def test_reconnects_when_the_server_closes_keepalive(server: Server) -> None:
    # The server closes every connection after 1,000 answers (like nginx), and
    # /close after every answer: nothing may be lost or counted twice.
    server.reset()
    scenario = Scenario(get("ok", "/ok", weight=9), get("close", "/close", weight=1))
    result = run_load(server.url, scenario, [constant(2000, 2.0)])
    m = result.measured()
    assert m.requests == 4000
    assert m.errors == 0
    assert server.stats()["count"] == 4000
    assert result.connections_opened > 300


def test_max_requests_is_a_hard_cap(server: Server) -> None:
    result = run_load(
        server.url,
        Scenario(get("ok", "/ok")),
        [constant(1000, 5.0)],
        options=EngineOptions(max_requests=300),
    )
    assert result.measured().requests == 300
    assert result.stop_reason == "max_requests (300) reached"
    assert result.wall_time < 4.0  # it stopped instead of running its 5 s


def test_saturated_generator_is_flagged(server: Server) -> None:
    def slow_check(status: int, body: bytes) -> bool:
        time.sleep(0.02)  # blocks the event loop: the generator falls behind
        return True

    result = run_load(
        server.url, Scenario(get("ok", "/ok", check=slow_check)), [constant(200, 1.0)]
    )
    assert result.saturated
    assert "the generator, not the service, was the bottleneck" in result.saturation_reason


def test_non_local_targets_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"refusing to send load to '10\.1\.2\.3'"):
        run_load("http://10.1.2.3:80", Scenario(get("x", "/")), [constant(10, 1.0)])
    with pytest.raises(ConfigError, match=r"refusing to send load to 'example\.com'"):
        check_target("http://example.com/")
    assert check_target("http://[::1]:8080/") == ("::1", 8080)
    assert check_target("http://localhost:81") == ("localhost", 81)
    assert check_target("http://svc.internal:80", ["svc.internal"]) == ("svc.internal", 80)
    with pytest.raises(ConfigError, match="must be an http:// URL"):
        check_target("ftp://127.0.0.1/")


def test_phase_limits() -> None:
    with pytest.raises(ConfigError, match="more than max_duration"):
        run_load(
            "http://127.0.0.1:9",
            Scenario(get("x", "/")),
            [constant(10, 100.0)],
            options=EngineOptions(max_duration=60),
        )
    with pytest.raises(ConfigError, match="phase names must be unique"):
        run_load(
            "http://127.0.0.1:9",
            Scenario(get("x", "/")),
            [constant(10, 1.0), constant(10, 1.0)],
        )


NOFILE_PROBE = """
import resource, sys
from perfsuite.errors import LoadError
from perfsuite.load.safety import raise_nofile

try:
    print(raise_nofile(int(sys.argv[1])))
except LoadError as exc:
    print("ERROR", exc)
"""


NR_OPEN = int(Path("/proc/sys/fs/nr_open").read_text())


@pytest.mark.parametrize(("hard", "needed"), [(4096, 1000), (512, NR_OPEN + 64)])
def test_nofile_is_raised_to_the_hard_limit(hard: int, needed: int) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    out = subprocess.run(
        [sys.executable, "-c", NOFILE_PROBE, str(needed)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if needed <= hard:
        assert out == str(hard)
    else:
        assert out.startswith(f"ERROR {needed} file descriptors are needed")
        assert "hard limit RLIMIT_NOFILE is 512" in out


def test_load_error_is_a_perfsuite_error() -> None:
    from perfsuite import PerfsuiteError

    assert issubclass(LoadError, PerfsuiteError)
