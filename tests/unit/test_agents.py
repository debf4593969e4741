"""Load from several execnet agents: clocks, one shared start, exact merging,
an agent lost, Ctrl-C (popen gateways: processes on this machine)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from perfsuite import Request, Scenario
from perfsuite.errors import AgentLost, ConfigError, LoadError
from perfsuite.load import EngineOptions, OpenPhase, Progress
from perfsuite.load.agents import estimate_offset, parse_tx, run_agents
from perfsuite.load.agents.bundle import make_bundle
from perfsuite.load.agents.coordinator import _clocks, _connect, _prepare, new_group
from perfsuite.load.parallel import merge_parts
from perfsuite.stats.hdr import (
    BIN_MIDDLE_US,
    BINS,
    decode,
    dense_percentiles,
    hdr_indices,
    new_histogram,
    record_many,
)

from .conftest import REPO, Server, free_port, signal_and_wait, start_in_own_group
from .sshd import client_config, make_keys, server_config, sshd_or_skip, wait_listening

# Agents are load: two processes beside the other xdist worker's perf runs would
# saturate their generators (the gate's inner runs were flagged so, in CI).
pytestmark = pytest.mark.exclusive


_BEFORE: set[int] = set()  # this process's children when the test began


@pytest.fixture(autouse=True)
def _children_before() -> None:
    """What ran before the test (the module's HTTP server, and a session's MariaDB
    or service of another test in this worker) is not an agent left behind."""
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))


def _agents_left() -> list[psutil.Process]:
    """This process's children that the test started and left running."""
    left = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            if proc.pid not in _BEFORE and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
    return left


def test_the_spelling_is_pytest_xdists() -> None:
    assert [s.popen for s in parse_tx(["3*popen"])] == [True] * 3
    (ssh,) = parse_tx(["ssh=-p 2222 root@127.0.0.1//python=/usr/bin/python3"])
    assert (ssh.ssh, ssh.python) == ("-p 2222 root@127.0.0.1", "/usr/bin/python3")
    assert parse_tx(["socket=127.0.0.1:8888"])[0].socket == "127.0.0.1:8888"
    with pytest.raises(ConfigError, match="expected popen, ssh="):
        parse_tx(["vagrant"])
    with pytest.raises(ConfigError, match="must be >= 1"):
        parse_tx(["0*popen"])
    with pytest.raises(ConfigError, match="no gateway"):
        parse_tx([])


def test_the_offset_is_within_its_bound_whatever_the_paths() -> None:
    """Round trips whose two legs differ (heavy-tailed, one leg often much slower,
    a queue now and then), not the estimator's symmetric model: the error never
    exceeds the uncertainty it states, and one fast trip is enough to make it small."""
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(5_000):
        true_offset = int(rng.integers(-(10**12), 10**12))
        trips = []
        t = int(rng.integers(0, 10**15))
        for _ in range(16):
            out = int(rng.pareto(1.5) * 50_000) + 20_000  # ns: 20 us and a heavy tail
            back = int(rng.pareto(1.2) * 200_000) + 20_000  # the slower leg
            if rng.random() < 0.1:
                back += int(rng.exponential(5e6))  # a queue behind other traffic
            trips.append((t, t + out + true_offset, t + out + back))
            t += out + back + int(rng.integers(0, 10**6))
        clock = estimate_offset(trips)
        error = abs(clock.offset_ns - true_offset)
        assert error <= clock.uncertainty_ns, (clock, true_offset)
        worst = max(worst, error / clock.uncertainty_ns)
    assert worst > 0.5  # the bound is not loose by construction: asymmetry reaches it
    with pytest.raises(ValueError, match="no round trip"):
        estimate_offset([])


def test_agents_on_this_machine_share_its_clock(server: Server) -> None:
    """popen agents read the same CLOCK_MONOTONIC: the true offset is 0, and the
    estimate is within its stated uncertainty of it (a real measurement)."""
    group = new_group()
    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", server.url + "/ok")))
    phases = [OpenPhase(name="p", duration=1.0, start_rate=10, end_rate=10)]
    try:
        agents = _connect(group, parse_tx(["2*popen"]), make_bundle())
        _prepare(agents, server.url, scenario, phases, EngineOptions(), live=False)
        _clocks(agents, 5_000_000)
        for agent in agents:
            assert agent.clock is not None
            assert agent.pid != os.getpid()
            assert abs(agent.clock.offset_ns) <= agent.clock.uncertainty_ns, agent.clock
            assert agent.clock.uncertainty_ns < 5_000_000
    finally:
        group.terminate(timeout=5)
    assert not _agents_left()


def test_an_agent_runs_in_its_main_thread_whatever_its_spec_sets(server: Server) -> None:
    """A spec's ``env:`` is set by a setup of execnet's own before the agent's code;
    on a busy machine execnet's default model then ran the agent in another thread,
    where it cannot ignore Ctrl-C (CI lost an agent so). Two hogs keep it busy."""
    hogs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time\nend = time.time() + 60\nwhile time.time() < end: pass",
            ]
        )
        for _ in range(2)
    ]
    try:
        for _ in range(4):
            group = new_group()
            try:
                agents = _connect(group, parse_tx(["6*popen//env:PERFSUITE_X=1"]), make_bundle())
                assert len({a.pid for a in agents}) == 6
            finally:
                group.terminate(timeout=5)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert not _agents_left()


SHIPPED = """
import os
import httpx

def build(ctx):
    return httpx.Request("GET", os.environ["AGENT_TARGET"] + "/ok")

def shipped(status, body):
    # True only on an agent that imported this module from the code it was sent.
    return __file__.startswith(os.environ["PERFSUITE_AGENT_CACHE"])
"""


def _other_host_python() -> str:
    """Debian's python3 with this interpreter's dependencies but not perfsuite (a
    folder on PYTHONPATH: its .pth files, the editable install's, are not read):
    an agent host with perfsuite's dependencies installed and nothing else."""
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("needs Debian's python3 (a second interpreter) for another host's")
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"Debian's python3 is {version}, not this interpreter's version")
    return python


def test_the_code_is_shipped_and_cached_on_an_agent_without_it(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents on an interpreter that lacks perfsuite and the scenario's module get
    both from the coordinator, keep them in a cache keyed by their hash, and run
    them; a second load sends nothing."""
    import sysconfig

    python = _other_host_python()
    project, cache = tmp_path / "project", tmp_path / "cache"
    project.mkdir()
    name = f"shipped_{os.getpid()}"
    (project / f"{name}.py").write_text(SHIPPED)
    monkeypatch.syspath_prepend(str(project))
    module = __import__(name)
    monkeypatch.setenv("AGENT_TARGET", server.url)
    deps = sysconfig.get_paths()["purelib"]
    # (execnet's env: keys are set once the interpreter runs: too late for its path)
    spec = f"2*popen//python=env PYTHONPATH={deps} {python}//env:PERFSUITE_AGENT_CACHE={cache}"
    scenario = Scenario(Request(name="s", build=module.build, check=module.shipped))
    phases = [OpenPhase(name="p", duration=1.0, start_rate=200, end_rate=200)]
    server.reset()
    first = run_agents(server.url, scenario, phases, [spec])
    assert first.measured().requests == first.measured().ok == 200  # every check passed
    (folder,) = [p for p in cache.iterdir()]  # one bundle, no half-written one left
    assert folder.name == make_bundle().digest
    assert (folder / "perfsuite" / "load" / "engine.py").exists()
    assert (folder / f"{name}.py").read_text() == SHIPPED
    written = (folder / ".complete").read_text()
    second = run_agents(server.url, scenario, phases, [spec])
    assert second.measured().ok == 200
    assert (folder / ".complete").read_text() == written  # taken from the cache
    assert server.stats()["count"] == 400
    assert not _agents_left()


NEEDS_A_DEPENDENCY = """
import os
import httpx
import prometheus_client  # needed by this module only: perfsuite's load never imports it

def build(ctx):
    return httpx.Request("GET", os.environ["AGENT_TARGET"] + "/ok")

def shipped(status, body):
    # True only where prometheus_client came from the distributions' cache.
    return prometheus_client.__file__.startswith(os.environ["PERFSUITE_AGENT_CACHE"])
"""


def _bare_python_or_skip() -> str:
    """Debian's python3, as a host with python3 and nothing installed for perfsuite."""
    python = _other_host_python()
    probe = "import numpy, httpx, hdrh, httptools, psutil, prometheus_client"
    if subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        pytest.skip(f"{python} has perfsuite's dependencies of its own")
    return python


def test_an_agent_without_the_dependencies_gets_them_shipped_and_cached(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host with python3 alone: each distribution it lacks (perfsuite's, and the
    scenario module's own when it is unpickled) is sent whole, cached by the hash
    of its RECORD, and imported from there; a second load sends nothing."""
    python = _bare_python_or_skip()
    project, cache = tmp_path / "project", tmp_path / "cache"
    project.mkdir()
    name = f"needs_dep_{os.getpid()}"
    (project / f"{name}.py").write_text(NEEDS_A_DEPENDENCY)
    monkeypatch.syspath_prepend(str(project))
    module = __import__(name)
    monkeypatch.setenv("AGENT_TARGET", server.url)
    spec = f"2*popen//python={python}//env:PERFSUITE_AGENT_CACHE={cache}"
    scenario = Scenario(Request(name="s", build=module.build, check=module.shipped))
    phases = [OpenPhase(name="p", duration=1.0, start_rate=100, end_rate=100)]
    server.reset()
    first = run_agents(server.url, scenario, phases, [spec])
    assert first.measured().requests == first.measured().ok == 100  # every check passed
    deps = {p.name: p for p in (cache / ".deps").iterdir()}
    assert not [n for n in deps if n.startswith(".")]  # no half-written one left
    sent = {
        d.name.split("-")[0].lower() for folder in deps.values() for d in folder.glob("*.dist-info")
    }
    # The compiled ones (same interpreter, same platform) and the scenario's own.
    assert {"numpy", "hdrhistogram", "httptools", "psutil", "httpx", "prometheus_client"} <= sent
    written = {n: (f / ".complete").read_text() for n, f in deps.items()}
    second = run_agents(server.url, scenario, phases, [spec])
    assert second.measured().ok == 100
    assert {n: (f / ".complete").read_text() for n, f in deps.items()} == written
    assert sorted(p.name for p in (cache / ".deps").iterdir()) == sorted(deps)
    assert server.stats()["count"] == 200
    assert not _agents_left()


def _another_python_or_skip() -> str:
    """A CPython of another minor version (pyenv's), whose ABI differs from ours."""
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for minor in (12, 13, 10):
        if f"3.{minor}" == mine:
            continue
        # pyenv's shims exist for versions not selected: take the interpreters themselves.
        found = [
            *sorted(Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/python3.{minor}")),
            *[Path(p) for p in [shutil.which(f"python3.{minor}")] if p],
        ]
        for python in found:
            if subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0:
                return str(python)
    pytest.skip("needs a CPython of another minor version (an agent of another ABI)")


def test_an_agent_of_another_interpreter_is_told_what_it_needs(
    server: Server, tmp_path: Path
) -> None:
    """Pure-Python distributions go to any agent; one with compiled code does not
    go to another interpreter's, and the error names it, both platforms, and the
    command that installs it there."""
    python = _another_python_or_skip()
    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", server.url + "/ok")))
    phases = [OpenPhase(name="p", duration=1.0, start_rate=10, end_rate=10)]
    spec = f"popen//python={python}//env:PERFSUITE_AGENT_CACHE={tmp_path / 'cache'}"
    with pytest.raises(LoadError) as caught:
        run_agents(server.url, scenario, phases, [spec])
    text = str(caught.value)
    assert "cannot run perfsuite: ModuleNotFoundError: No module named" in text, text
    assert "holds compiled code built for cpython-3" in text, text
    assert "python3 -m pip install '" in text, text
    assert not _agents_left()


def test_two_agents_make_one_load(server: Server) -> None:
    server.reset()
    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", server.url + "/ok")))
    phases = [OpenPhase(name="p", duration=2.0, start_rate=1000, end_rate=1000)]
    starts: list[int] = []
    lines: list[Progress] = []
    result = run_agents(
        server.url, scenario, phases, ["2*popen"], on_start=starts.append, progress=lines.append
    )
    m = result.measured()
    assert m.requests == m.latency.count == 2000  # the union is the one schedule
    assert server.stats()["count"] == 2000
    assert result.ended[-1][1] == 2000
    assert starts
    assert starts[0] < time.perf_counter_ns()
    # The live line: the first agent's seconds, scaled by the two agents.
    assert lines
    assert all(line.rps % 2 == 0 for line in lines)
    assert max(line.rps for line in lines) > 500
    # Arrival i is agent i mod 2's: one request every millisecond, not two at once.
    gaps = np.diff(sorted(server.arrivals()))
    assert float(np.mean(gaps < 0.0003)) < 0.25, np.percentile(gaps, [10, 50, 90])
    assert not _agents_left()


def _samples(counts: np.ndarray) -> np.ndarray:
    """Values (us) that fall in each HDR bin as often as ``counts`` says."""
    index = np.flatnonzero(counts)
    return np.repeat(BIN_MIDDLE_US[index], counts[index].astype(np.int64))


def test_four_agents_keep_the_schedule_and_merge_exactly(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four agents, one ramp: the server sees the one schedule (arrival k at its
    intended time, not four at once), and every merged histogram, per phase and
    per second, is bin for bin the one a single process records from all of the
    agents' samples."""
    from perfsuite.load.agents import coordinator

    parts: list[dict[str, Any]] = []

    def keep(got: list[dict[str, Any]]) -> Any:
        parts.extend(got)
        return merge_parts(got)

    monkeypatch.setattr(coordinator, "merge_parts", keep)
    server.reset()
    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", server.url + "/ok")))
    phase = OpenPhase(name="ramp", duration=3.0, start_rate=100, end_rate=500)
    starts: list[int] = []
    result = run_agents(server.url, scenario, [phase], ["4*popen"], on_start=starts.append)
    assert len(parts) == 4
    n = phase.expected_requests
    assert result.measured().requests == n == 900
    # The server's clock is this one's (CLOCK_MONOTONIC): arrival k against the
    # schedule's k-th time. A request cannot arrive before its time; it arrives
    # after it by the network and the send path, the same for all four agents.
    arrivals = np.sort(np.array(server.arrivals()))
    intended = starts[0] / 1e9 + np.array(list(phase.offsets()))
    assert len(arrivals) == n
    behind_ms = (arrivals - intended) * 1e3
    print(f"arrival - intended, ms: p1/p50/p99/max {np.percentile(behind_ms, [1, 50, 99, 100])}")
    assert np.percentile(behind_ms, 1) > -1.0, np.percentile(behind_ms, [0, 1, 50, 99])
    assert np.percentile(behind_ms, 99) < 10.0, np.percentile(behind_ms, [0, 1, 50, 99])
    # In lockstep, three of every four gaps would be ~0; the schedule's are >= 2 ms.
    gaps_ms = np.diff(arrivals) * 1e3
    assert float(np.mean(gaps_ms < 0.5)) < 0.1, np.percentile(gaps_ms, [10, 50, 90])

    # Per phase: the merged histogram against one recorded from every sample.
    (cell,) = result.cells
    for name in ("latency", "latency_ok", "service_time"):
        single = new_histogram()
        for part in parts:
            (row,) = part["cells"]
            record_many(single, _samples(np.ctypeslib.as_array(decode(row[name]).counts)))
        merged = getattr(cell, name)
        assert np.array_equal(
            np.ctypeslib.as_array(merged.counts), np.ctypeslib.as_array(single.counts)
        ), name
        for q in (50, 90, 99, 99.9, 100):
            assert merged.get_value_at_percentile(q) == single.get_value_at_percentile(q)
    assert cell.latency.get_total_count() == n
    # Per second: the same, from the bins each agent sent of that second.
    singles: dict[int, np.ndarray] = {}
    for part in parts:
        for t, _ep, index, counts in part["second_bins"]:
            values = np.repeat(BIN_MIDDLE_US[index], counts)
            got = singles.setdefault(t, np.zeros(BINS, dtype=np.int64))
            np.add.at(got, hdr_indices(values), 1)
    assert sorted(singles) == sorted(t for t, *_ in result.second_bins)
    for t, _ep, index, counts in result.second_bins:
        assert np.array_equal(np.flatnonzero(singles[t]), index), t
        assert np.array_equal(singles[t][index], counts), t
        (second,) = [s for s in result.seconds if s.t == t]
        assert [second.p50, second.p95, second.p99] == dense_percentiles(singles[t], (50, 95, 99))
        assert second.requests == int(counts.sum())
    assert not _agents_left()


def test_a_scenario_that_cannot_be_sent_is_named(server: Server) -> None:
    scenario = Scenario(Request(name="l", build=lambda ctx: ctx.get("/ok")))
    phases = [OpenPhase(name="p", duration=1.0, start_rate=10, end_rate=10)]
    with pytest.raises(ConfigError, match=r"lambda.*top level of a module"):
        run_agents(server.url, scenario, phases, ["popen"])
    with pytest.raises(ConfigError, match="loopback"):
        run_agents("http://192.0.2.1:80", scenario, phases, ["popen"])
    assert not _agents_left()


_BUILT = [0]


def dying(ctx: object) -> httpx.Request:
    """The first agent to build its 200th request after the 4,096 it builds ahead
    (a second into the load, whenever that begins) dies as if killed."""
    flag = Path(os.environ["AGENT_DIES_FLAG"])
    _BUILT[0] += 1
    if _BUILT[0] == 4096 + 200:
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return httpx.Request("GET", os.environ["AGENT_TARGET"] + "/ok")


def test_an_agent_lost_fails_the_load_and_leaves_nothing(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_DIES_FLAG", str(tmp_path / "died"))
    monkeypatch.setenv("AGENT_TARGET", server.url)
    scenario = Scenario(Request(name="d", build=dying))
    phases = [OpenPhase(name="p", duration=20.0, start_rate=200, end_rate=200)]
    began = time.monotonic()
    with pytest.raises(AgentLost, match=r"agent \d \(popen, pid \d+ on .*\) lost at t = ") as lost:
        run_agents(server.url, scenario, phases, ["2*popen"])
    assert time.monotonic() - began < 15  # not the phase's 20 s
    assert (tmp_path / "died").exists()
    # The other agent was stopped and sent back what it measured: kept, and said.
    assert lost.value.result is not None
    kept = lost.value.result.measured().requests
    assert kept > 0
    assert f"the other agents sent {kept} requests" in str(lost.value)
    assert not _agents_left()


AGENTS_RUN = """
import sys, httpx
from perfsuite import Request, Scenario
from perfsuite.errors import Interrupted
from perfsuite.load import EngineOptions, OpenPhase
from perfsuite.load.agents import run_agents
scenario = Scenario(Request(name="ok", build=httpx.Request("GET", sys.argv[1] + "/ok")))
phases = [OpenPhase(name="p", duration=60.0, start_rate=200, end_rate=200)]
try:
    run_agents(sys.argv[1], scenario, phases, ["2*popen"])
except Interrupted as exc:
    print("interrupted", exc.result.measured().requests, flush=True)
    sys.exit(2)
"""


def test_ctrl_c_stops_every_agent_with_what_they_measured(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "agents_run.py"
    script.write_text(AGENTS_RUN)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = start_in_own_group([sys.executable, str(script), server.url], cwd=tmp_path, env=env)
    time.sleep(4)  # the agents started and sending
    agents = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(agents) >= 2
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == 2, output
    assert seconds < 5, output
    requests = int(output.split("interrupted")[1].split()[0])
    assert 200 < requests < 200 * 10, output  # what both sent before the stop
    assert not [pid for pid in agents if psutil.pid_exists(pid)]


USER_TESTS = """
import contextlib
import json
import os
import pytest
from perfsuite import Request, Scenario

def get_ok(ctx):
    return ctx.get("/ok")

@pytest.mark.perf
def test_agents(perf_run, perf_phases):
    scenario = Scenario(Request(name="ok", build=get_ok))
    result = perf_run(scenario, perf_phases.constant(5000, "2m"), target=os.environ["TARGET"])
    print("REQUESTS", result.measured().requests, "ENDED", result.ended[-1][1])
"""


@pytest.mark.usefixtures("target_env")
@pytest.mark.parametrize("where", ["option", "pyproject"])
def test_a_perf_test_loads_from_agents(pytester: pytest.Pytester, where: str) -> None:
    """``--perf-tx 2*popen`` or ``tx = "2*popen"``: the test's own function is
    imported by each agent, and the load is one (smoke: 500 req/s for 1.2 s)."""
    pytester.makepyfile(test_user=USER_TESTS)
    args = ["-m", "perf", "-s", "--perf-profile=smoke", "-p", "no:cacheprovider"]
    if where == "option":
        args.append("--perf-tx=2*popen")
    else:
        pytester.makepyprojecttoml('[tool.perfsuite.load]\ntx = "2*popen"\n')
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*REQUESTS 600 ENDED 600*"])


def test_agents_config_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.perfsuite.load]\ntx = ["2*popen"]\nworkers = 2\n')
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-m", "perf", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        ["*give workers (forked processes) or tx (execnet agents), not both*"]
    )
    pytester.makepyprojecttoml('[tool.perfsuite.load]\ntx = "vagrant"\n')
    result = pytester.runpytest_subprocess("-m", "perf", "-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*[[]tool.perfsuite.load[]].tx: load agents 'vagrant'*"])


def test_cli_run_from_agents(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    done = subprocess.run(
        [shutil.which("perfsuite") or "perfsuite", "run", server.url + "/ok", "--rate", "400",
         "--duration", "2s", "--tx", "2*popen", "--json", str(out), "-q"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(out.read_text())["requests"] == 800
    both = subprocess.run(
        [shutil.which("perfsuite") or "perfsuite", "run", server.url + "/ok", "--rate", "10",
         "--duration", "1s", "--tx", "popen", "--workers", "2"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert both.returncode != 0
    assert (
        "give --workers (forked processes) or --tx (execnet agents), not both"
        in both.stdout + both.stderr
    )


LONG_TESTS = """
import os
import pytest
from perfsuite import Request, Scenario

def get_ok(ctx):
    return ctx.get("/ok")

@pytest.mark.perf
def test_long(perf_run, perf_phases):
    perf_run(Scenario(Request(name="ok", build=get_ok)), perf_phases.constant(200, "60s"),
             target=os.environ["TARGET"])
"""


def test_ctrl_c_in_a_perf_session_with_agents(server: Server, tmp_path: Path) -> None:
    """As a terminal sends it: SIGINT to pytest's process group while two agents
    send; pytest ends interrupted (2) within seconds and no agent is left."""
    (tmp_path / "test_long.py").write_text(LONG_TESTS)
    (tmp_path / "pyproject.toml").write_text('[tool.perfsuite.load]\ntx = "2*popen"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "TARGET": server.url,
           "DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # fmt: skip
    argv = [sys.executable, "-m", "pytest", "-m", "perf", "-p", "no:cacheprovider",
            "--perf-profile=full", "-q"]  # fmt: skip
    proc = start_in_own_group(argv, cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    agents: list[int] = []
    while time.monotonic() < deadline and len(agents) < 2:
        time.sleep(0.5)
        agents = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    time.sleep(2)  # sending
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == 2, output
    assert seconds < 10, output
    assert "interrupted" in output
    assert not [pid for pid in agents if psutil.pid_exists(pid)]


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[str]:
    """An OpenSSH server the test starts on a free loopback port, with a host key
    and a client key it makes: the spec of an agent reached through it."""
    sshd = sshd_or_skip()
    make_keys(tmp_path)
    port = free_port()
    config = server_config(tmp_path, "local", "127.0.0.1", port)
    client = client_config(tmp_path, {"perfagent": ("127.0.0.1", port)})
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)])
    try:
        wait_listening("127.0.0.1", port, proc)
        yield f"ssh=perfagent//ssh_config={client}//python={sys.executable}"
    finally:
        sessions = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        proc.wait(timeout=10)
        for child in sessions:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def test_agents_over_ssh(server: Server, ssh_agent: str) -> None:
    """Two agents reached through a real sshd: their clocks measured, one load
    merged, and their sessions gone once it is over."""
    server.reset()
    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", server.url + "/ok")))
    phases = [OpenPhase(name="p", duration=1.0, start_rate=400, end_rate=400)]
    result = run_agents(server.url, scenario, phases, [f"2*{ssh_agent}"])
    assert result.measured().requests == 400
    assert server.stats()["count"] == 400
    assert not result.saturated

    def agents() -> list[psutil.Process]:  # the sshd's sessions' processes, not the sshd's
        return [p for p in _agents_left() if p.name() != "sshd"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and agents():
        time.sleep(0.1)
    assert not agents()


def test_an_ssh_agent_cut_off_mid_run(server: Server, ssh_agent: str) -> None:
    """One agent's ssh connection is cut (its sshd session killed) while both send:
    the load fails naming it within seconds, the other's measurements are kept,
    and no agent is left running on the "remote" side."""
    import threading

    scenario = Scenario(Request(name="ok", build=httpx.Request("GET", server.url + "/ok")))
    phases = [OpenPhase(name="p", duration=30.0, start_rate=200, end_rate=200)]
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            run_agents(server.url, scenario, phases, [f"2*{ssh_agent}"])
        except BaseException as exc:  # what the test looks at
            outcome.append(exc)

    def agents() -> list[psutil.Process]:  # the agents' Pythons, under sshd sessions
        return [p for p in _agents_left() if p.name() != "sshd" and "python" in p.name()]

    thread = threading.Thread(target=run, daemon=True)
    server.reset()
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.stats()["count"] < 400:
        time.sleep(0.1)  # both agents sending
    assert len(agents()) == 2, _agents_left()
    (daemon,) = [p for p in psutil.Process().children() if p.name() == "sshd"]
    session = daemon.children()[0]  # one agent's connection, its sshd processes
    cut = time.monotonic()
    for proc in [session, *session.children(recursive=True)]:
        if proc.name() == "sshd":  # the connection gone, as a cable pulled
            proc.kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert time.monotonic() - cut < 15  # not the phase's 30 s
    (exc,) = outcome
    assert isinstance(exc, AgentLost), repr(exc)
    assert "lost at t = " in str(exc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and agents():
        time.sleep(0.1)
    assert not agents()
