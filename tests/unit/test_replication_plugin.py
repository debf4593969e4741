"""Replicas through the plugin: the lag of every perf test reported, recorded and
judged against ``replica_lag_p99`` (a pytester session with a primary and a replica)."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import html_report

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
    page = html_report(pytester.path)
    assert "replica lag p50" in page
    assert "replica 1" in page


# Each request updates the 200 last of 5,000 rows. With a primary key a replica finds
# each changed row by it; without one (SLOW_REPLICA=1) it scans the table for each
# (row-based replication): about 160 ms of its applier per request here, against
# 3 ms, while the primary scans once. At 20 requests a second the replica falls
# behind on any machine up to about three times faster than this one, and drains
# what it owes within the minute a load waits for it.
_AB_SERVICE = """
import http.server, os, sys, pymysql
from urllib.parse import urlsplit, unquote

url = urlsplit(os.environ["PERFSUITE_MYSQL_URL"])
replica = urlsplit(os.environ["PERFSUITE_MYSQL_REPLICA_URL"])
assert replica.path == url.path, (replica.path, url.path)  # each build's own copy there
key = "" if os.environ.get("SLOW_REPLICA") == "1" else " PRIMARY KEY"
db = pymysql.connect(host=url.hostname, port=url.port, user=unquote(url.username),
                     password=unquote(url.password), database=url.path[1:], autocommit=True)
cur = db.cursor()
cur.execute(f"CREATE TABLE IF NOT EXISTS marks (id INT NOT NULL{key}, n INT NOT NULL)")
cur.execute("SELECT COUNT(*) FROM marks")
if cur.fetchone()[0] == 0:
    cur.executemany("INSERT INTO marks VALUES (%s, 0)", [(i,) for i in range(5000)])

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/health":
            cur.execute("UPDATE marks SET n = n + 1 WHERE id >= 4800")
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_an_ab_run_finds_the_build_that_lets_the_replica_fall_behind(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A/B on one commit, the base build with a keyed table (``--perf-ab-env``) and the
    candidate without: each round's lag is measured on the replica both builds share,
    each reading its own copy of the database there; the base's rounds are not charged
    the candidate's backlog; the pairs find the candidate's lag regressed, and its
    rounds fail ``replica_lag_p99``."""
    pytester.makepyfile(svc=_AB_SERVICE)
    pytester.makepyfile(
        test_lag="""
        import pytest
        from perfsuite import Request, Scenario

        @pytest.mark.perf
        @pytest.mark.slo(replica_lag_p99="200ms")
        def test_writes(perf_run, perf_phases):
            scenario = Scenario(Request(name="write", build=lambda ctx: ctx.get("/w")))
            perf_run(scenario, [perf_phases.warmup(rate=20, duration="1s"),
                                perf_phases.constant(rate=20, duration="5s")])
        """
    )
    _project(pytester, 0)
    for args in (
        ["init", "-q"],
        ["config", "user.email", "t@example.invalid"],
        ["config", "user.name", "t"],
        ["add", "-A"],
        ["commit", "-q", "-m", "project"],
    ):
        subprocess.run(["git", *args], cwd=pytester.path, check=True, timeout=60)
    monkeypatch.setenv("SLOW_REPLICA", "1")  # the candidate's; the base's is set apart
    result = pytester.runpytest_subprocess(
        "-m", "perf", "--perf-profile=full", "-rA", "-p", "no:cacheprovider",
        "--perf-ab=HEAD", "--perf-ab-pairs=4", "--perf-ab-env=SLOW_REPLICA=0",
        "--perf-flamegraph=never",
    )  # fmt: skip
    out = result.stdout.str()
    result.assert_outcomes(failed=1)
    assert "regression in replica 1 lag: p50 regressed: " in out, out[-4000:]
    assert "paired t over 4 pairs (df 3), a change under 25% or 10 ms is none" in out
    result.stdout.fnmatch_lines(["*SLO violated: replica_lag_p99 of the slowest replica*"])
    (run,) = sorted((pytester.path / "reports" / "runs").glob("*.json"))
    (test,) = json.loads(run.read_text())["tests"]
    lag = test["ab"]["loads"][0]["lag"]["replica 1"]["p50"]
    assert len(lag["base"]) == len(lag["candidate"]) == 4
    assert max(lag["base"]) < 10, lag  # no backlog of the candidate's rounds
    assert min(lag["candidate"]) > 100, lag
    print(f"replica 1 lag p50 by round, ms: {lag}")
    # The HTML report draws each pair's lag beside its latency.
    page = html_report(pytester.path)
    assert "A/B pairs: p50 lag of replica 1" in page
    assert "A/B pairs: p50 of write" in page
