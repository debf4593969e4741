"""A busy machine: its regressions are not believed, and the report says who was busy."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfsuite import ConfigError
from perfsuite.config import load_config
from perfsuite.probes.machine import MachineLoad, MachineSampler, busy_reason

from .conftest import assert_passed

pytest_plugins = ["pytester"]

# A CPU hog that stops on its own (bounded, whatever happens to the test).
_HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


@contextlib.contextmanager
def hogs(n: int, seconds: float) -> Iterator[None]:
    """``n`` busy processes that are not descendants of the code under test."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _HOG.format(seconds=seconds)]) for _ in range(n)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.exclusive  # the other xdist worker's tests are a neighbour too
def test_the_sampler_tells_our_processes_from_a_neighbours() -> None:
    sampler = MachineSampler(local=True)
    sampler.start()
    # Our own child: ours, however busy it is.
    subprocess.run([sys.executable, "-c", _HOG.format(seconds=1.5)], check=True)
    ours = sampler.stop()
    assert ours is not None
    assert ours.others_cores is not None
    assert ours.cores == os.cpu_count()
    assert 0.0 <= ours.steal < 1.0

    # A process of someone else's (started by a shell that then exits): a neighbour.
    sampler = MachineSampler(local=True)
    sampler.start()
    code = _HOG.format(seconds=1.5)
    subprocess.run(["sh", "-c", f'{sys.executable} -c "$0" &', code], check=True)
    time.sleep(1.8)
    theirs = sampler.stop()
    assert theirs is not None
    assert theirs.others_cores is not None
    print(f"own child: {ours.describe()}; a neighbour: {theirs.describe()}")
    assert theirs.others_cores > ours.others_cores + 0.5

    # Not all local: the rest of the machine cannot be told from the service.
    remote = MachineSampler(local=False)
    remote.start()
    far = remote.stop()
    assert far is not None
    assert far.others_cores is None
    assert "other processes not known" in far.describe()


def test_busy_reason_names_what_was_over_its_limit() -> None:
    quiet = MachineLoad(seconds=10, cores=2, others_cores=0.02, steal=0.001)
    assert busy_reason(quiet, max_others=0.25, max_steal=0.05) == ""
    neighbour = MachineLoad(seconds=10, cores=2, others_cores=0.9, steal=0.08)
    why = busy_reason(neighbour, max_others=0.25, max_steal=0.05)
    assert "other processes used 0.90 cores (limit 0.25)" in why
    assert "the hypervisor took 8.0% of the CPUs (limit 5%)" in why
    unknown = MachineLoad(seconds=10, cores=2, others_cores=None, steal=0.0)
    assert busy_reason(unknown, max_others=0.25, max_steal=0.05) == ""
    assert MachineLoad.from_json(neighbour.as_json()) == neighbour


def test_the_limits_are_configured_and_checked(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"baseline": {"max_other_cores": 1, "max_steal": "10%"}})
    assert config.baseline.max_other_cores == 1.0
    assert config.baseline.max_steal == 0.1
    with pytest.raises(ConfigError, match="max_other_cores: expected a number of cores >= 0"):
        load_config(tmp_path, {"baseline": {"max_other_cores": -1}})
    with pytest.raises(ConfigError, match="max_steal: expected a fraction"):
        load_config(tmp_path, {"baseline": {"max_steal": 2}})


SERVICE = """
import http.server, os, sys, time
DELAY = float(os.environ.get("DELAY_MS", "0")) / 1000
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path != "/health":
            time.sleep(DELAY)
        # One write: headers and body apart would wait out Nagle and a delayed ACK.
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@pytest.mark.exclusive  # the baselines must be measured on a quiet machine
def test_a_regression_on_a_busy_machine_is_not_believed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(svc=SERVICE)
    pytester.makepyprojecttoml(
        f"""
        [tool.perfsuite]
        mysql = "process"
        [tool.perfsuite.service]
        command = "{{python}} {pytester.path}/svc.py {{port}}"
        health = "/health"
        [tool.perfsuite.pool]
        check = false
        [tool.perfsuite.profiles.quick]
        duration_scale = 0.005
        rate_scale = 0.1
        [tool.perfsuite.baseline]
        min_blocks = 2
        # Four 3-second baselines (df 3): at the default alpha of 1 %, a CI run once
        # judged even +1,900 % inconclusive on their spread, and the guard had nothing
        # to discount. The gate's own power is tested elsewhere.
        alpha = 0.05
        """
    )
    pytester.makepyfile(
        test_busy="""
        import pytest
        from perfsuite import Request, Scenario

        @pytest.mark.perf
        def test_get(perf_run, perf_phases):
            scenario = Scenario(Request(name="get", build=lambda ctx: ctx.get("/x")))
            perf_run(scenario, perf_phases.constant(1000, "10m"))
        """
    )

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-m", "perf", "--perf-profile=quick", "-rA", *args)

    for _ in range(4):
        assert_passed(run("--perf-save-baseline"))
    saved = json.loads(next((pytester.path / "reports" / "runs").glob("*.json")).read_text())
    quiet = MachineLoad.from_json(saved["tests"][0]["machine"][0])
    assert quiet.others_cores is not None
    assert quiet.others_cores < 0.25, quiet

    # A build 20 ms slower (twenty times the median), measured beside two busy cores:
    # the numbers are kept, the regression is not believed, and the report says why.
    monkeypatch.setenv("DELAY_MS", "20")
    with hogs(2, seconds=60):
        busy = run("--perf-compare")
    assert_passed(busy)
    # Which latency metric crosses first varies from run to run; one of them must.
    assert re.search(
        r"(p50|p95|p99|mean) inconclusive: [\d.]+ -> [\d.]+ ms, \+[\d.]+% .* not believed, "
        r"the machine was busy: other processes used [\d.]+ cores \(limit 0\.25\)",
        busy.stdout.str(),
    ), busy.stdout.str()
    busy.stdout.fnmatch_lines(
        [
            "*machine: other processes * cores, steal *",
            "*the load ran on a busy machine (other processes used * cores*): "
            "regressions not believed*",
        ]
    )
    assert " regressed:" not in busy.stdout.str()
