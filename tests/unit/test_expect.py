"""``@pytest.mark.expect``: PromQL on the metrics scraped during a real load (pytester)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from perfsuite.config import MetricsConfig
from perfsuite.provision import MySQLServer
from perfsuite.report.html import build_report
from perfsuite.session.metrics import scraper_for
from perfsuite.stats.promql import Expectation
from perfsuite.store.history import History, history_url

from .conftest import admin_url, free_port, run_example_suite

pytest_plugins = ["pytester"]

# A service with its own Prometheus metrics: requests by path and code, and a
# "pool waiting" gauge that /bad raises to 3 for a second.
SERVICE = """
import http.server, sys, threading, time
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

registry = CollectorRegistry()
requests = Counter("app_requests", "requests", ["path", "code"], registry=registry)
waiting = Gauge("app_pool_waiting", "requests waiting for a connection", registry=registry)
bad_until = [0.0]

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/metrics":
            waiting.set(3 if time.monotonic() < bad_until[0] else 0)
            body = generate_latest(registry)
        else:
            if self.path == "/bad":
                bad_until[0] = time.monotonic() + 1.0
            requests.labels(path=self.path, code="200").inc()
            body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

TESTS = """
import pytest
from perfsuite import Request, Scenario

def load(perf_run, perf_phases, path):
    scenario = Scenario(Request(name="get", build=lambda ctx: ctx.get(path)))
    perf_run(scenario, [perf_phases.warmup(20, "1s"), perf_phases.constant(40, "4s")])

@pytest.mark.perf
@pytest.mark.expect('rate(app_requests_total{path="/ok"}[2s]) > 20', phase="steady")
@pytest.mark.expect("max_over_time(app_pool_waiting[2s]) == 0")
@pytest.mark.expect("mysql_global_status_threads_connected >= 1")
@pytest.mark.expect("app_pool_waiting == 0", phase="before")
@pytest.mark.expect("app_pool_waiting == 0", phase="after")
def test_ok(perf_run, perf_phases):
    load(perf_run, perf_phases, "/ok")

@pytest.mark.perf
@pytest.mark.expect("max_over_time(app_pool_waiting[2s]) == 0")
@pytest.mark.expect("app_pool_waiting == 0", phase="after")  # /bad keeps it up for 1 s
def test_bad(perf_run, perf_phases):
    load(perf_run, perf_phases, "/bad")

@pytest.mark.perf
@pytest.mark.expect("max_over_time(app_pool_wait[2s]) == 0")
@pytest.mark.expect("app_pool_waiting < 1", phase="cooldown")
def test_cannot_be_judged(perf_run, perf_phases):
    load(perf_run, perf_phases, "/ok")
"""


def _project(pytester: pytest.Pytester, mariadb: MySQLServer) -> None:
    pytester.makepyfile(svc=SERVICE)
    pytester.makepyprojecttoml(
        f"""
        [tool.perfsuite]
        mysql = "{admin_url(mariadb, "orders")}"
        [tool.perfsuite.service]
        command = "{{python}} {pytester.path}/svc.py {{port}}"
        [tool.perfsuite.pool]
        check = false
        [tool.perfsuite.metrics]
        pin = ["app_requests_total"]
        # An exporter that is not running: its failures are said, not raised.
        targets = {{ exporter = "http://127.0.0.1:{free_port()}/metrics" }}
        """
    )


def test_expectations_pass_fail_and_say_why_they_cannot_be_judged(
    pytester: pytest.Pytester, mariadb: MySQLServer
) -> None:
    _project(pytester, mariadb)
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess(
        "-m", "perf", "--perf-profile=full", "--perf-no-cost", "-rA", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "expect max_over_time(app_pool_waiting[2s]) == 0 in the measured phases: held" in out
    assert (
        'expect rate(app_requests_total{path="/ok"}[2s]) > 20 in phase steady: held at all' in out
    )
    assert "expect mysql_global_status_threads_connected >= 1 in the measured phases: held" in out
    bad = out[out.index("_ test_bad _") :]
    assert (
        "expect max_over_time(app_pool_waiting[2s]) == 0 in the measured phases: broken at" in bad
    )
    assert "furthest: 3 at +" in bad
    unjudged = out[out.index("_ test_cannot_be_judged _") :]
    assert "it selects app_pool_wait; metric names seen: app_pool_waiting," in unjudged
    assert "job exporter could not be scraped (" in unjudged
    assert "ConnectError" in unjudged
    assert "expect app_pool_waiting < 1: not judged: no phase named 'cooldown'" in unjudged
    assert "(phases: steady, warmup; and before, after: the scrapes around the load)" in unjudged
    assert "expect app_pool_waiting == 0 in phase before: held at all 1 steps judged" in out
    # After the load: the scrapes of the moment it settles (2 s, a scrape a second).
    assert re.search(r"expect app_pool_waiting == 0 in phase after: held at all [23] steps", out)
    assert re.search(r"expect app_pool_waiting == 0 in phase after: broken at [12] of [23] st", bad)

    # The run record keeps each load's series and the verdicts.
    (record,) = (pytester.path / "reports" / "runs").glob("*.json")
    tests = {t["id"].split("::")[-1]: t for t in json.loads(record.read_text())["tests"]}
    metrics = tests["test_bad"]["metrics"]
    (load,) = metrics["loads"]
    assert load["scrapes"] >= 5
    assert load["failed"] == {"exporter": load["scrapes"]}  # every scrape of it failed
    assert "ConnectError" in load["errors"]["exporter"][0]
    waiting = [s for s in load["series"] if s["labels"]["__name__"] == "app_pool_waiting"]
    (series,) = waiting
    assert series["labels"]["job"] == "service"
    assert max(series["v"]) == 3
    assert series["t"][0] < 0 < series["t"][-1]  # a scrape before the first phase, and after
    assert [e["ok"] for e in metrics["expectations"]] == [False, False]
    # The database's status is read only for a test whose expectations name it.
    names = {s["labels"]["__name__"] for s in load["series"]}
    assert not any(n.startswith("mysql_global_status_") for n in names)
    # The HTML report draws each expectation against its threshold, and the pins.
    with History(
        history_url(str(pytester.path / "reports" / "history.sqlite"), pytester.path)
    ) as h:
        build_report(h, pytester.path / "index.html")
    html = (pytester.path / "index.html").read_text()
    assert html.count('data-kind="expectation"') == 8  # each one judged, in every test
    assert "BROKEN: expect max_over_time(app_pool_waiting[2s]) == 0" in html
    assert "held: expect mysql_global_status_threads_connected &gt;= 1" in html
    assert html.count('data-kind="pinned"') == 3
    assert "app_requests_total (scraped)" in html
    (ok_load,) = tests["test_ok"]["metrics"]["loads"]
    # Its record keeps the series its expectations select (and the pins), then others
    # up to record_series (200), not all the 500 of the database's status.
    recorded = {s["labels"]["__name__"] for s in ok_load["series"]}
    assert {
        "app_requests_total",
        "app_pool_waiting",
        "mysql_global_status_threads_connected",
    } <= recorded
    assert len(ok_load["series"]) == ok_load["recorded_series"] == 200
    assert ok_load["scraped_series"] > 200  # the others counted


def test_a_bad_expression_fails_at_start_up(
    pytester: pytest.Pytester, mariadb: MySQLServer
) -> None:
    _project(pytester, mariadb)
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.mark.perf
        @pytest.mark.expect("rate(app_requests_total[1m]")
        def test_x(perf_run):
            raise AssertionError("never runs")
        """
    )
    result = pytester.runpytest_subprocess("-m", "perf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            # (? for the brackets: fnmatch reads [1m] as a set of characters)
            "ERROR: perfsuite: test_user.py::test_x: cannot parse the PromQL expression "
            "'rate(app_requests_total?1m?': unclosed left parenthesis"
        ]
    )


def test_every_test_is_scraped_unless_turned_off(mariadb: MySQLServer) -> None:
    config = MetricsConfig()
    url = "http://127.0.0.1:1/metrics"
    scraper = scraper_for(config, [], service_metrics_url=url, server=mariadb)
    assert scraper is not None
    assert [t.job for t in scraper.targets] == ["service"]  # the database only when named
    off = MetricsConfig(every_test=False)
    assert scraper_for(off, [], service_metrics_url=url, server=mariadb) is None
    pinned = MetricsConfig(pin=("app_pool_waiting",), targets={"exporter": url}, every_test=False)
    scraper = scraper_for(pinned, [], service_metrics_url=url, server=mariadb)
    assert scraper is not None
    assert [t.job for t in scraper.targets] == ["service", "exporter"]
    status = [Expectation(text="rate(mysql_global_status_questions[5s]) > 0")]
    scraper = scraper_for(config, status, service_metrics_url=None, server=mariadb)
    assert scraper is not None
    assert [t.job for t in scraper.targets] == ["mysql"]


def test_the_example_leak_breaks_the_pool_expectation(tmp_path: Path) -> None:
    # The ci profile: 12 s at 500 req/s, enough callbacks for unknown orders (1 %) to
    # leak the whole pool of 10 within seconds.
    result = run_example_suite(
        select="payment_callback", fault="leak", reports=tmp_path, profile="ci"
    )
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert (
        "expect quantile_over_time(0.5, order_service_db_pool_waiting[10s]) < 5 in the "
        "measured phases: broken at" in out
    )
    assert 'job="service"' in out
