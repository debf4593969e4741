"""Replicas through the plugin: the lag of every perf test reported, recorded and
judged against ``replica_lag_p99`` (a pytester session with a primary and a replica)."""

from __future__ import annotations

import json
import subprocess

import pytest

pytest_plugins = ["pytester"]

# A perf session of its own (servers, a load, the lag timed): nothing else beside.
pytestmark = pytest.mark.exclusive


_LAG_SERVICE = """
import http.server, os, sys, pymysql
from urllib.parse import urlsplit, unquote

url = urlsplit(os.environ["PERFSUITE_MYSQL_URL"])
replica = urlsplit(os.environ["PERFSUITE_MYSQL_REPLICA_URL"])
assert replica.port != url.port and replica.password == url.password

def connect():
    return pymysql.connect(host=url.hostname, port=url.port, user=unquote(url.username),
                           password=unquote(url.password), database=url.path[1:],
                           autocommit=True)

db = connect()
db.cursor().execute("CREATE TABLE IF NOT EXISTS hits (id INT AUTO_INCREMENT PRIMARY KEY)")

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/health":
            db.cursor().execute("INSERT INTO hits () VALUES ()")
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _project(pytester: pytest.Pytester, delay: int) -> None:
    """The writing service with one replica, ``delay`` seconds behind (MASTER_DELAY)."""
    pytester.makepyprojecttoml(
        f"""
        [tool.perfsuite]
        mysql = "process"
        replicas = 1
        [tool.perfsuite.replication]
        delay = {delay}
        [tool.perfsuite.service]
        command = "{{python}} {pytester.path}/svc.py {{port}}"
        health = "/health"
        [tool.perfsuite.pool]
        check = false
        """
    )


def test_a_lag_slo_is_judged_reported_and_recorded(pytester: pytest.Pytester) -> None:
    """A service that writes under load, one replica: the lag is reported per phase,
    recorded per second, and ``replica_lag_p99`` is judged; with the replica one
    second behind (MASTER_DELAY), the same objective fails and says by how much."""
    pytester.makepyfile(svc=_LAG_SERVICE)
    pytester.makepyfile(
        test_lag="""
        import pytest
        from perfsuite import Request, Scenario

        @pytest.mark.perf
        @pytest.mark.slo(replica_lag_p99="200ms")
        def test_writes(perf_run, perf_phases, perf_mysql):
            assert len(perf_mysql.replicas) == 1
            scenario = Scenario(Request(name="write", build=lambda ctx: ctx.get("/w")))
            perf_run(scenario, perf_phases.constant(50, "3s"))
        """
    )

    def run(delay: int) -> tuple[pytest.RunResult, dict[str, object]]:
        _project(pytester, delay)
        result = pytester.runpytest_subprocess(
            "-m", "perf", "--perf-profile=full", "-rA", "-p", "no:cacheprovider"
        )
        runs = sorted((pytester.path / "reports" / "runs").glob("*.json"))
        return result, json.loads(runs[-1].read_text())

    quick, record = run(0)
    quick.assert_outcomes(passed=1)
    quick.stdout.fnmatch_lines(
        [
            "ok   SLO replica_lag_p99 of the slowest replica, all measured phases: * within SLO*",
            "*perfsuite: replica lag*",
            "replica 1 (127.0.0.1:*), steady (measure): * heartbeats, lag p50 * ms, *",
        ]
    )
    (test,) = record["tests"]  # type: ignore[index]
    (lag,) = test["replica_lag"]
    (phase,) = lag["phases"]
    assert phase["heartbeats"] >= 25
    assert phase["p99"] < 200
    assert {s["t"] for s in lag["seconds"]} >= {0, 1, 2}

    # 2 s, not 1: MariaDB applies MASTER_DELAY against its clock difference with the
    # primary in whole seconds, read when the replica connects, which can be 1 s off
    # (a CI run's 1 s delay came out as none).
    slow, record = run(2)
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(
        [
            "*SLO violated: replica_lag_p99 of the slowest replica, all measured phases: "
            "*,* ms exceeds SLO at most 200.00 ms*"
        ]
    )


def test_a_replica_that_falls_behind_is_a_regression_against_its_baselines(
    pytester: pytest.Pytester,
) -> None:
    """Three baseline runs with a replica that keeps up, then: the same again is no
    regression of its lag; the replica seconds behind (MASTER_DELAY) regresses
    p50, and the percentiles with too few heartbeats above them say so."""
    pytester.makepyfile(svc=_LAG_SERVICE)
    pytester.makepyfile(
        test_lag="""
        import pytest
        from perfsuite import Request, Scenario

        @pytest.mark.perf
        def test_writes(perf_run, perf_phases):
            scenario = Scenario(Request(name="write", build=lambda ctx: ctx.get("/w")))
            perf_run(scenario, perf_phases.constant(50, "10s"))
        """
    )

    def run(delay: int, *args: str) -> pytest.RunResult:
        _project(pytester, delay)
        return pytester.runpytest_subprocess(
            "-m", "perf", "--perf-profile=full", "-rA", "-p", "no:cacheprovider",
            "--perf-fail-on=regression", *args,
        )  # fmt: skip

    for _ in range(3):
        run(0, "--perf-save-baseline").assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").glob("*.json")
    stored = json.loads(path.read_text())
    assert stored["schema"] == 4
    assert all(len(r["lag"][0]) == 1 for r in stored["runs"])  # the one replica's blocks

    same = run(0, "--perf-compare")
    same.assert_outcomes(passed=1)
    assert "regression in replica 1 lag" not in same.stdout.str()
    same.stdout.fnmatch_lines(
        [
            "baseline comparison, replica 1 lag:",
            "  p50 unchanged: *",
            "  p95 inconclusive: too few heartbeats to judge (* in a run; 400 are needed*",
            "  p99 inconclusive: too few heartbeats to judge (* in a run; 2,000 are needed*",
        ]
    )

    behind = run(2, "--perf-compare")  # 2 s: see the test above
    behind.assert_outcomes(failed=1)
    behind.stdout.fnmatch_lines(["*regression in replica 1 lag: p50 regressed: * -> * ms, +*"])
    # Each run's lag is a point of the history: the trend report draws it per replica.
    report = subprocess.run(
        ["perfsuite", "report", "--out", str(pytester.path / "index.html")],
        cwd=pytester.path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    page = (pytester.path / "index.html").read_text()
    assert "replica lag p50" in page
    assert "replica 1" in page
