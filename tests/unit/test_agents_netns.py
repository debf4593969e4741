"""Load agents on separate "hosts": two network namespaces the test makes, an sshd
in each, the target in a third. One agent's link is slow one way (a relay of the
test's delays what the coordinator sends it; this kernel has no ``tc netem``):
its clock offset is estimated within the bound it states, a start is refused
when that bound is over ``max_clock_uncertainty``, and with the bound raised,
both agents start within it of the shared instant."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import execnet
import httpx
import psutil
import pytest

from perfsuite import Request, Scenario
from perfsuite.errors import LoadError
from perfsuite.load import EngineOptions, OpenPhase
from perfsuite.load.agents import parse_tx, run_agents
from perfsuite.load.agents.bundle import make_bundle
from perfsuite.load.agents.coordinator import _clocks, _connect, _prepare

from .conftest import SERVER
from .netns import Namespaces, namespaces_or_skip
from .relay import SlowRelay
from .sshd import client_config, make_keys, server_config, sshd_or_skip, wait_listening

pytestmark = pytest.mark.exclusive

DELAY_S = 0.020  # the slow link's one-way delay, coordinator -> agent b


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Namespaces, str, list[str]]]:
    """Namespaces a, b (an sshd each) and s (the target server): the net, the
    target's URL, and the two agents' specs (b's through the slow relay)."""
    sshd = sshd_or_skip()
    with namespaces_or_skip(["a", "b", "s"]) as net:
        make_keys(tmp_path)
        for name in ("a", "b"):
            config = server_config(tmp_path, name, net.addr[name], 22)
            proc = net.popen(name, [sshd, "-D", "-e", "-f", str(config)])
            wait_listening(net.addr[name], 22, proc)
        server = net.popen(
            "s",
            [sys.executable, str(SERVER), "8080", "--host", net.addr["s"]],
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None
        server.stdout.readline()  # "listening 8080"
        relay = SlowRelay((net.addr["b"], 22), DELAY_S)
        try:
            client = client_config(
                tmp_path, {"hosta": (net.addr["a"], 22), "hostb": ("127.0.0.1", relay.port)}
            )
            specs = [
                f"ssh=host{name}//ssh_config={client}//python={sys.executable}"
                for name in ("a", "b")
            ]
            yield net, f"http://{net.addr['s']}:8080", specs
        finally:
            relay.close()


def test_the_offset_over_a_slow_link_is_within_its_bound_and_the_start_too(
    hosts: tuple[Namespaces, str, list[str]],
) -> None:
    net, url, specs = hosts
    options = EngineOptions(allowed_hosts=(net.addr["s"],))
    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", url + "/ok")))
    phases = [OpenPhase(name="p", duration=2.0, start_rate=200, end_rate=200)]

    # The clocks: one machine's CLOCK_MONOTONIC, so the true offset is 0 for both.
    group = execnet.Group()
    try:
        agents = _connect(group, parse_tx(specs), make_bundle())
        _prepare(agents, url, scenario, phases, options, live=False)
        _clocks(agents, 1_000_000_000)
    finally:
        group.terminate(timeout=5)
    a, b = (agent.clock for agent in agents)
    assert a is not None
    assert b is not None
    assert {agent.host for agent in agents} == {socket.gethostname()}
    for clock in (a, b):
        assert abs(clock.offset_ns) <= clock.uncertainty_ns, clock
    # The slow link's trip is at least its delay, and its offset is off by about
    # half of it (the delay is all on one leg): within the bound, near its edge.
    assert b.uncertainty_ns >= DELAY_S / 2 * 1e9
    assert abs(b.offset_ns) > DELAY_S / 4 * 1e9, b
    assert a.uncertainty_ns < 5_000_000, a

    # Refused at the default bound (5 ms), with the numbers.
    with pytest.raises(LoadError, match=r"agent 1 .*cannot be told to within 5\.0 ms: "):
        run_agents(url, scenario, phases, specs, options=options)

    # Allowed a 50 ms bound: one load, both agents starting within it of the instant.
    httpx.get(url + "/reset")
    result = run_agents(url, scenario, phases, specs, options=options, max_clock_uncertainty=0.05)
    assert result.measured().requests == result.measured().ok == 400
    peers = httpx.get(url + "/peers").json()
    first = {addr: min(t for t, p in peers if p == addr) for addr in {p for _, p in peers}}
    assert set(first) == {net.addr["a"], net.addr["b"]}
    # Arrival 0 is a's, arrival 1 (5 ms later) b's: b's start is off by its offset error.
    skew = first[net.addr["b"]] - first[net.addr["a"]] - 0.005
    print(f"clock b {b.describe()}; b's first request {skew * 1e3:+.1f} ms off the schedule")
    assert abs(skew) <= b.uncertainty_ns / 1e9 + 0.005

    # Nothing left: no agent in either namespace once the loads are over.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _agents_in(net):
        time.sleep(0.1)
    assert not _agents_in(net)


def _agents_in(net: Namespaces) -> list[str]:
    """Python processes in the agents' namespaces (sshd's sessions end with them)."""
    left = []
    for name in ("a", "b"):
        out = subprocess.run(["ip", "netns", "pids", net.ns[name]], capture_output=True, text=True)
        for pid in out.stdout.split():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "python" in psutil.Process(int(pid)).name():
                    left.append(pid)
    return left
