"""CPU and memory of the service during the load: sampling, SLOs, growth."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from perfsuite import ConfigError
from perfsuite.config import load_config
from perfsuite.probes.resources import DockerStatsSampler, ResourceSampler
from perfsuite.stats.trend import theil_sen

pytest_plugins = ["pytester"]


def test_theil_sen_ignores_spikes() -> None:
    t = list(np.arange(0.0, 120.0, 1.0))
    rss = [100 + 0.5 * x / 60 * 60 for x in t]  # +30 MB/min
    rss[10] += 400  # a GC spike
    rss[70] -= 300
    slope = theil_sen(t, rss)
    assert slope is not None
    assert slope.per_minute == pytest.approx(30.0, rel=0.01)
    assert slope.low <= 30.0 <= slope.high
    assert theil_sen([0, 1, 2], [1, 2, 3]) is None


def _tree_cpu(pid: int) -> float:
    """The ground truth: CPU seconds of the process and the children it reaped."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def test_sampler_sees_cpu_and_memory_of_a_real_process() -> None:
    burner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nkeep = []\nend = time.time() + 4\n"
            "while time.time() < end:\n"
            "    keep.append(bytearray(2_000_000))\n"
            "    t = time.time()\n"
            "    while time.time() - t < 0.05: pass\n",
        ]
    )
    try:
        sampler = ResourceSampler(burner.pid, interval=0.25)
        start = _tree_cpu(burner.pid)
        sampler.start()
        time.sleep(3)
        series = sampler.stop()
        used = _tree_cpu(burner.pid) - start
    finally:
        burner.kill()
        burner.wait()
    assert len(series.cpu) >= 8
    # What the samples add up to is what the process used (whatever else the machine
    # ran meanwhile: no share of a core is assumed).
    assert series.cpu_seconds == pytest.approx(used, abs=0.05)
    sampled = sum(c / 100 * 0.25 for c in series.cpu)
    assert sampled == pytest.approx(used, rel=0.2, abs=0.1)
    assert series.rss_mib[-1] > series.rss_mib[0] + 20
    slope = theil_sen(series.seconds, series.rss_mib)
    assert slope is not None
    assert slope.low > 0


# A parent that starts, one after another, children that burn CPU for 0.6 s and exit
# (it reaps each): none of them is alive at a sample for long, all of their time counts.
SPAWNER = """
import subprocess, sys, time
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass"
for _ in range(3):
    subprocess.run([sys.executable, "-c", burn])
time.sleep(60)
"""


def test_children_that_come_and_go_between_samples_are_counted() -> None:
    parent = subprocess.Popen([sys.executable, "-c", SPAWNER])
    try:
        sampler = ResourceSampler(parent.pid, interval=0.5)
        sampler.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if psutil.Process(parent.pid).cpu_times().children_user >= 1.5:
                break
            time.sleep(0.1)
        time.sleep(0.6)
        series = sampler.stop()
    finally:
        parent.kill()
        parent.wait()
    assert series.cpu_seconds is not None
    assert series.cpu_seconds >= 1.7  # three children of 0.6 s each, and their start-up
    assert sum(c / 100 * 0.5 for c in series.cpu) >= 1.5


# A parent touches 200 MB, then forks four children that only sleep: the pages are
# shared (copy on write). RSS would count them five times, PSS once.
FORKER = """
import os, time
data = bytearray(200 * 2**20)
for i in range(0, len(data), 4096):
    data[i] = 1
for _ in range(4):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
print("forked", flush=True)
time.sleep(60)
"""


def test_memory_of_forked_workers_is_not_counted_once_per_worker() -> None:
    parent = subprocess.Popen([sys.executable, "-c", FORKER], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "forked"
        sampler = ResourceSampler(parent.pid, interval=0.2)
        sampler.start()
        time.sleep(0.7)
        series = sampler.stop()
        rss = (
            sum(
                p.memory_info().rss
                for p in [psutil.Process(parent.pid), *psutil.Process(parent.pid).children()]
            )
            / 2**20
        )
    finally:
        for child in psutil.Process(parent.pid).children():
            child.kill()
        parent.kill()
        parent.wait()
    assert rss > 900  # five processes, each resident on the same 200 MB
    assert 190 < series.rss_mib[-1] < 300


MIB = 2**20


class _Container:
    def __init__(self, stats: dict[str, int]) -> None:
        self._stats = stats

    def stats(self, stream: bool, one_shot: bool) -> dict[str, object]:
        return {
            "cpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0},
            "memory_stats": {"usage": 500 * 2**20, "stats": self._stats},
        }


@pytest.mark.parametrize(
    ("stats", "mib"),
    [
        # cgroup v1: the hierarchical inactive page cache, as `docker stats` reads it
        ({"total_inactive_file": 100 * MIB, "inactive_file": 10 * MIB, "cache": 300 * MIB}, 400),
        ({"inactive_file": 50 * MIB}, 450),  # cgroup v2
        ({}, 500),
    ],
)  # fmt: skip
def test_container_memory_is_read_as_docker_stats_reads_it(
    stats: dict[str, int], mib: float
) -> None:
    assert DockerStatsSampler(_Container(stats))._read()[3] == pytest.approx(mib)


def test_resource_config(tmp_path) -> None:
    config = load_config(
        tmp_path, {"resources": {"cpu_limit": 1, "memory_limit": "2GB", "max_growth": "5MB/min"}}
    )
    assert config.resources.cpu_limit == 1.0
    assert config.resources.memory_limit_mib == 2048.0
    assert config.resources.max_growth_mib_per_min == 5.0
    with pytest.raises(ConfigError, match="max_growth: expected a size like '10MB/min'"):
        load_config(tmp_path, {"resources": {"max_growth": "5MB"}})


GROWING_SERVICE = """
import http.server, sys
keep = []
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path != "/health":
            keep.append(bytearray(200_000))  # a leak: 200 kB a request, kept forever
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_memory_growth_and_cpu_slo_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(growing=GROWING_SERVICE)
    pytester.makepyprojecttoml(
        f"""
        [tool.perfsuite]
        mysql = "process"
        [tool.perfsuite.service]
        command = "{{python}} {pytester.path}/growing.py {{port}}"
        [tool.perfsuite.pool]
        check = false
        [tool.perfsuite.resources]
        max_growth = "20MB/min"
        """
    )
    pytester.makepyfile(
        test_grow="""
        import pytest
        from perfsuite import Request, Scenario

        @pytest.mark.perf
        @pytest.mark.slo(memory="90%")
        def test_grow(perf_run, perf_phases):
            scenario = Scenario(Request(name="get", build=lambda ctx: ctx.get("/x")))
            perf_run(scenario, perf_phases.constant(1000, "10m"))
        """
    )
    result = pytester.runpytest_subprocess("-m", "perf", "--perf-profile=smoke", "-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memory grows +* MB/min (95 % CI +* to +*) over * samples*"])
    result.stdout.fnmatch_lines(["*ok   SLO memory of the service during the load: *"])
