"""CPU and memory of the service during the load: sampling, SLOs, growth."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from perfsuite import ConfigError
from perfsuite.config import load_config
from perfsuite.probes.resources import ResourceSampler
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
        sampler.start()
        time.sleep(3)
        series = sampler.stop()
    finally:
        burner.kill()
        burner.wait()
    assert len(series.cpu) >= 8
    assert np.mean(series.cpu[2:]) > 50  # a busy loop: most of one core
    assert series.rss_mib[-1] > series.rss_mib[0] + 20
    slope = theil_sen(series.seconds, series.rss_mib)
    assert slope is not None
    assert slope.low > 0


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
