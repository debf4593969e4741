"""The pool idle check: metrics presets, the database probe, and the leak on
the example service (``ORDER_SERVICE_FAULT=leak``) caught with its report."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from perfsuite import ConfigError, MySQLServer
from perfsuite.probes.metrics import read_gauges, resolve_preset
from perfsuite.probes.pool import DbProbe, PoolWatch
from perfsuite.report.html import build_report
from perfsuite.store.history import History, history_url

from .conftest import REPO, run_example_suite

HIKARI = """# HELP hikaricp_connections_active Active connections
# TYPE hikaricp_connections_active gauge
hikaricp_connections_active{pool="HikariPool-1"} 3.0
hikaricp_connections_active{pool="HikariPool-2"} 1.0
# TYPE hikaricp_connections_idle gauge
hikaricp_connections_idle{pool="HikariPool-1"} 7.0
# TYPE hikaricp_connections_pending gauge
hikaricp_connections_pending{pool="HikariPool-1"} 2.0
# TYPE hikaricp_connections_max gauge
hikaricp_connections_max{pool="HikariPool-1"} 10.0
"""
GO_SQL = """# TYPE go_sql_in_use_connections gauge
go_sql_in_use_connections{db_name="orders"} 0
# TYPE go_sql_idle_connections gauge
go_sql_idle_connections{db_name="orders"} 4
# TYPE go_sql_wait_count_total counter
go_sql_wait_count_total{db_name="orders"} 12
# TYPE go_sql_max_open_connections gauge
go_sql_max_open_connections{db_name="orders"} 25
"""


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[str]:
    actuator = '{"measurements": [{"statistic": "VALUE", "value": 2.0}]}'
    pages = {
        "/hikari": HIKARI,
        "/go": GO_SQL,
        "/actuator/metrics/hikaricp.connections.active": actuator,
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write((body or "not found").encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_hikaricp_preset_sums_pools(metrics_server: str) -> None:
    with httpx.Client() as client:
        g = read_gauges(
            client, metrics_server + "/hikari", "hikaricp", resolve_preset("hikaricp", {})
        )
    assert (g.in_use, g.idle, g.waiting, g.max) == (4.0, 7.0, 2.0, 10.0)


def test_go_sql_preset(metrics_server: str) -> None:
    with httpx.Client() as client:
        g = read_gauges(client, metrics_server + "/go", "go-sql", resolve_preset("go-sql", {}))
    assert (g.in_use, g.idle, g.waiting, g.max) == (0.0, 4.0, 12.0, 25.0)


def test_actuator_json(metrics_server: str) -> None:
    names = {"in_use": "hikaricp.connections.active"}
    with httpx.Client() as client:
        g = read_gauges(client, metrics_server + "/actuator/metrics", "actuator", names)
    assert g.in_use == 2.0


def test_missing_metric_and_endpoint_are_named(metrics_server: str) -> None:
    with httpx.Client() as client:
        with pytest.raises(
            ConfigError, match=r"metric 'go_sql_in_use_connections' \(in_use\) is not exposed"
        ):
            read_gauges(client, metrics_server + "/hikari", "go-sql", resolve_preset("go-sql", {}))
        with pytest.raises(ConfigError, match="answered HTTP 404"):
            read_gauges(
                client, metrics_server + "/nope", "hikaricp", resolve_preset("hikaricp", {})
            )
    with pytest.raises(ConfigError, match="unknown preset 'c3p0'"):
        resolve_preset("c3p0", {})


@pytest.mark.parametrize(
    "grant",
    [
        "GRANT SELECT ON *.* TO 'weak'@'%'",
        # SHOW GRANTS of this one says PROCESS, in a database's name: not the privilege.
        "GRANT ALL PRIVILEGES ON `processing`.* TO 'weak'@'%'",
    ],
)
def test_probe_needs_the_process_privilege(mariadb: MySQLServer, grant: str) -> None:
    mariadb.execute(
        "DROP USER IF EXISTS 'weak'@'%'; CREATE USER 'weak'@'%' IDENTIFIED BY 'weak'; " + grant,
        admin=True,
    )
    weak = MySQLServer(
        provider="url",
        host=mariadb.host,
        port=mariadb.port,
        user=mariadb.user,
        password=mariadb.password,
        database=mariadb.database,
        admin_user="weak",
        admin_password="weak",
    )
    with pytest.raises(ConfigError, match="has no PROCESS privilege"):
        DbProbe(weak, "perfsuite")
    mariadb.execute("GRANT PROCESS ON *.* TO 'weak'@'%'", admin=True)
    DbProbe(weak, "perfsuite").close()  # the privilege itself is enough


def test_probe_sees_a_busy_connection(mariadb: MySQLServer, order_data: object) -> None:
    probe = DbProbe(mariadb, mariadb.user)
    holder = mariadb.connect()
    try:
        watch = PoolWatch(probe, None, max_idle=10, timeout=0.5)
        watch.start()
        holder.begin()
        with holder.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM users FOR UPDATE")
        time.sleep(0.2)  # InnoDB caches INNODB_TRX for 0.1 s after a read (start's)
        snap = probe.snapshot()
        assert any(c.in_transaction and c.busy for c in snap.connections), snap
        watch.stop()
        verdict = watch.wait_idle()
        assert not verdict.ok
        assert "holding a transaction" in verdict.report()
        holder.rollback()
        # Idle now, but with no gauges and no requests sent after the load, the
        # database side cannot tell it from a leaked connection, and says so.
        after = watch.wait_idle()
        assert after.ok
        assert after.status == "unknown"
        assert "cannot judge" in after.report()
    finally:
        holder.close()
        probe.close()


def _suite(fault: str, reports: Path) -> subprocess.CompletedProcess[str]:
    return run_example_suite(select="payment_callback", fault=fault, reports=reports)


def test_leak_is_caught_with_its_report_and_the_correct_service_passes(tmp_path: Path) -> None:
    leaky = _suite("leak", tmp_path / "leaky")
    assert leaky.returncode == 1, leaky.stdout[-3000:]
    out = leaky.stdout
    assert "connection pool did not return to idle" in out
    assert "still in use (never released: a leak)" in out
    assert "connections of 'perfsuite' after the load:" in out
    assert " Sleep " in out
    assert "Threads_connected before" in out

    # The HTML report shows the leak: its report, and the pool series over the test.
    html = _report(tmp_path / "leaky")
    assert "POOL DID NOT RETURN TO IDLE" in html
    assert "pool: database connections and pool gauges" in html
    assert "threads connected" in html
    assert "in use" in html
    assert "service memory (RSS)" in html

    correct = _suite("", tmp_path / "correct")
    assert correct.returncode == 0, correct.stdout[-3000:]
    assert "pool back to idle" in correct.stdout


def _report(reports: Path) -> str:
    with History(history_url(str(reports / "history.sqlite"), reports)) as history:
        info = build_report(history, reports / "index.html")
    assert info.runs == 1
    return (reports / "index.html").read_text()


GO_PROJECT = f"""
[tool.perfsuite]
mysql = "process"

[tool.perfsuite.service]
command = "{{python}} {REPO}/tests/unit/gosql_service.py {{port}}"

[tool.perfsuite.pool]
metrics = "go-sql"
max_idle = 8
timeout = "3s"
"""

GO_TESTS = """
import httpx
import pytest
from perfsuite import Request, Scenario

def item(ctx):
    return ctx.get(f"/items/{ctx.rng.randrange(1100)}")   # ids >= 1000 are missing

@pytest.mark.perf
def test_items(perf_run, perf_phases):
    scenario = Scenario(Request(name="item", build=item, status={200, 404}))
    perf_run(scenario, perf_phases.constant(1000, "10m"))

@pytest.mark.perf
@pytest.mark.no_pool_check
@pytest.mark.slo(error_rate="off")  # the earlier test's leak leaves it no connection
def test_items_unchecked(perf_run, perf_phases):
    scenario = Scenario(Request(name="item", build=item, status={200, 404}))
    perf_run(scenario, perf_phases.constant(1000, "1m"))
"""


def test_go_style_service_leaking_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyprojecttoml(GO_PROJECT)
    pytester.makepyfile(test_go=GO_TESTS)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    correct = pytester.runpytest_subprocess("-m", "perf", "--perf-profile=smoke", "-rA")
    correct.assert_outcomes(passed=2)
    correct.stdout.fnmatch_lines(["*pool back to idle*"])
    monkeypatch.setenv("LEAKY", "1")  # the service's own error path leaks
    leaky = pytester.runpytest_subprocess("-m", "perf", "--perf-profile=smoke", "-rA")
    leaky.assert_outcomes(failed=1, passed=1)  # the marked test is not checked
    leaky.stdout.fnmatch_lines(
        [
            "*connection pool did not return to idle:*",
            "*the pool reports * connection(s) still in use (never released: a leak)*",
        ]
    )


@pytest.mark.parametrize(
    ("total", "before", "readings", "waited"),
    [
        (True, 12.0, [12.0, 12.0], False),  # Go's wait count: old waits are not this test's
        (True, 12.0, [12.0, 15.0], True),
        (False, 0.0, [0.0, 2.0], True),  # a gauge of requests waiting now
        (False, 0.0, [0.0, 0.0], False),
    ],
)
def test_exhaustion_is_growth_of_a_total_or_a_waiting_gauge(
    total: bool, before: float, readings: list[float], waited: bool
) -> None:
    from perfsuite.probes.metrics import PoolGauges

    def gauges(waiting: float) -> PoolGauges:
        return PoolGauges(in_use=0.0, idle=1.0, waiting=waiting, max=10.0)

    watch = PoolWatch(None, None, max_idle=10, timeout=1.0, waiting_is_total=total)  # type: ignore[arg-type]
    watch._gauges_before = gauges(before)
    watch.samples = [(float(i), 1, gauges(w)) for i, w in enumerate(readings)]
    assert watch._waited() is waited
