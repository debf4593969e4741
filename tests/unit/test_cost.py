"""What requests cost the database: statement digests read from a real MariaDB's
performance_schema, counted exactly, and the cost per request in run records."""

from __future__ import annotations

import json
import math

import pytest

from perfsuite import MySQLServer
from perfsuite.probes.statements import StatementProbe
from perfsuite.report.html import build_report
from perfsuite.stats.cost import (
    DigestCounters,
    ended_by,
    ended_on_curve,
    merge_ended,
    request_cost,
    split_requests,
    statement_delta,
    status_delta,
)
from perfsuite.store.history import History, history_url

from .conftest import ORDER_PROJECT, REPO

# -- the arithmetic -----------------------------------------------------------


def _digest(key: str, calls: int, max_ps: int = 5, **more: int) -> DigestCounters:
    return DigestCounters(
        digest=key, text=f"SELECT {key}", calls=calls, total_ps=calls * 10**9, max_ps=max_ps, **more
    )


def test_a_new_digest_counts_from_zero_and_one_that_did_not_run_is_left_out() -> None:
    before = {"a": _digest("a", 10), "b": _digest("b", 4)}
    after = {"a": _digest("a", 15), "b": _digest("b", 4), "c": _digest("c", 2, rows_examined=40)}
    costs = {s.digest: s for s in statement_delta(before, after)}
    assert set(costs) == {"a", "c"}
    assert (costs["a"].calls, costs["a"].total_ms) == (5, 5.0)
    assert (costs["c"].calls, costs["c"].rows_examined_per_call) == (2, 20.0)


def test_the_slowest_call_is_known_only_when_the_running_maximum_rose() -> None:
    before = {"a": _digest("a", 10, max_ps=9 * 10**9)}
    same = statement_delta(before, {"a": _digest("a", 12, max_ps=9 * 10**9)})[0]
    assert same.max_ms is None  # the window's calls stayed under an earlier peak
    rose = statement_delta(before, {"a": _digest("a", 12, max_ps=11 * 10**9)})[0]
    assert rose.max_ms == 11.0
    # A counter that went down: the table was emptied in between, the reading is whole.
    reset = statement_delta(before, {"a": _digest("a", 3, max_ps=2 * 10**9)})[0]
    assert (reset.calls, reset.max_ms) == (3, 2.0)


def test_questions_leave_out_the_probes_own_statements() -> None:
    before, after = {"Questions": 100, "Slow_queries": 1}, {"Questions": 130, "Slow_queries": 1}
    delta = status_delta(before, after, own_statements=3)
    assert delta == {"Questions": 27, "Slow_queries": 0}


def test_no_request_gives_no_number_per_request() -> None:
    cost = request_cost(0, {}, {"a": _digest("a", 3)})
    assert cost.queries == 3
    assert math.isnan(cost.queries_per_request)
    assert cost.cpu_ms_per_request is None
    assert "cpu_ms_per_request" not in cost.metrics()


# -- a real MariaDB -----------------------------------------------------------


def test_requests_are_split_where_the_boundary_was_read_not_where_it_was_meant() -> None:
    # 100 requests in second 0 (warm-up), 200 a second after: a boundary meant at
    # 1.0 s but read at 1.09 s holds 18 of the steady phase's requests before it.
    per_second = {0: 100, 1: 200, 2: 200, 3: 4}
    assert ended_by(per_second, 1.09) == pytest.approx(118)
    assert ended_by(per_second, -0.5) == 0
    assert ended_by(per_second, 10.0) == 504
    assert split_requests(per_second, [1.09], 504) == [118, 386]
    # Answered fewer than ended (timeouts): the split keeps the proportion and the total.
    assert split_requests(per_second, [1.0], 252) == [50, 202]
    assert sum(split_requests(per_second, [0.5, 2.5], 431)) == 431
    assert split_requests({}, [1.0], 0) == [0, 0]


def test_the_engines_50_ms_counts_place_a_cut_where_answers_bunch() -> None:
    # A slow warm-up's last 20 answers arrive in the first 50 ms of second 1, then
    # 200/s: the seconds alone put 100 + 200 * 0.04 = 108 before a cut at 1.04 s,
    # the 50 ms counts (80 by 1.0 s, 100 + 2 by 1.05 s) put about 100.
    per_second = {0: 80, 1: 220}
    curve = [(0.5, 40), (1.0, 80), (1.05, 110), (1.5, 200), (2.0, 300)]
    assert ended_by(per_second, 1.04) == pytest.approx(88.8)
    assert ended_on_curve(curve, 1.04) == pytest.approx(104)
    assert split_requests(per_second, [1.04], 300, curve) == [104, 196]
    assert ended_on_curve(curve, 0.0) == 0
    assert ended_on_curve(curve, 0.25) == 20  # from none at the start to the first count
    assert ended_on_curve(curve, 9.0) == 300
    # Two workers on one clock: the sum of each one's count at every time either has.
    other = [(0.25, 10), (1.25, 60)]
    merged = merge_ended([curve, other])
    assert [t for t, _ in merged] == [0.25, 0.5, 1.0, 1.05, 1.25, 1.5, 2.0]
    assert dict(merged)[1.0] == round(80 + 10 + 50 * 0.75)  # the other: straight between
    assert merged[-1] == (2.0, 360)
    assert merge_ended([(), curve]) == tuple(curve)


def test_a_known_workload_is_counted_exactly(mariadb: MySQLServer, order_data: object) -> None:
    """1,000 "requests" of three statements each: 3.00 queries per request, and
    the scan of an unindexed column is seen as such."""
    probe = StatementProbe(mariadb, mariadb.database, owned=True)
    try:
        assert probe.available() is None
        probe.reset()
        before = probe.snapshot()
        conn = mariadb.connect(database=mariadb.database)
        try:
            with conn.cursor() as cur:
                for i in range(1000):
                    cur.execute("SELECT id, status FROM orders WHERE id = %s", (i % 100 + 1,))
                    cur.fetchall()
                    cur.execute("SELECT COUNT(*) FROM order_items WHERE order_id = %s", (i,))
                    cur.fetchall()
                    cur.execute("SELECT 1")
                    cur.fetchall()
                cur.execute("SELECT COUNT(*) FROM orders WHERE total_cents > 0")  # no index
                cur.fetchall()
        finally:
            conn.close()
        after = probe.snapshot()
    finally:
        probe.close()
    cost = probe.cost(before, after, 1000)
    # The workload, and the connection's own set-up (pymysql's SET NAMES): what
    # a request that opens a connection really costs.
    texts = {s.text: s.calls for s in cost.statements}
    assert cost.queries == 3002, texts
    assert texts["SET NAMES `utf8mb4` "] == 1
    assert cost.queries_per_request == 3.002
    # The server's count of client commands agrees (less the probe's own), give
    # or take a command without a digest.
    assert 3002 <= cost.status["Questions"] <= 3004
    items = [s for s in cost.statements if "`order_items`" in s.text]
    assert len(items) == 1
    assert items[0].calls == 1000
    assert items[0].no_index_used == 0
    scan = [s for s in cost.statements if "total_cents" in s.text]
    assert len(scan) == 1
    assert scan[0].no_index_used == 1
    assert scan[0].rows_examined >= len(order_data.orders)  # type: ignore[attr-defined]
    assert cost.no_index_used == 1
    assert all(s.max_ms is not None for s in cost.statements)  # emptied first: maxima known


# -- through the plugin -------------------------------------------------------

PROJECT = ORDER_PROJECT

CONFTEST = """
import pytest
from examples.order_service.seed import seed_database

@pytest.fixture(scope="session")
def perf_seed(perf_mysql):
    return seed_database(perf_mysql, users=100, skus=50, orders=300)
"""

TESTS = """
import json
from perfsuite import Request, Scenario

def order(ctx):
    return ctx.get(f"/orders/{ctx.pick('order')[0]}")

def test_order_query(perf_run, perf_phases, perf_seed):
    scenario = Scenario(Request(name="order_query", build=order, status={200}),
                        data={"order": list(perf_seed.orders)}, seed=1)
    perf_run(scenario, [perf_phases.warmup(rate=100, duration="1s"),
                        perf_phases.constant(rate=200, duration="4s")])
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_cost_per_request_in_the_record_and_the_table(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The order query runs three statements with the ``slow`` fault (the sleep,
    the order, its items): 3.00 queries per request in the run record, and per
    phase (also when load worker processes share the phases' start)."""
    pytester.makepyprojecttoml(PROJECT + f"\n[tool.perfsuite.load]\nworkers = {workers}\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_cost=TESTS)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("ORDER_SERVICE_FAULT", "slow:0.01")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-profile=full",
        "--junitxml=junit.xml", "--perf-markdown=summary.md",
    )  # fmt: skip
    out = result.stdout.str()
    assert result.ret == 0, out[-3000:]
    assert "cost per request" in out
    junit = (pytester.path / "junit.xml").read_text()
    assert '<property name="perf.cost.queries_per_request" value="' in junit
    markdown = (pytester.path / "summary.md").read_text()
    assert "| `test_order_query` | " in markdown.split("Cost per request")[1]
    with History(history_url("reports/history.sqlite", pytester.path)) as history:
        build_report(history, pytester.path / "index.html")
    page = (pytester.path / "index.html").read_text()
    assert "Cost per request and top statements" in page
    assert "order_items" in page
    assert "queries per request" in page  # its trend chart
    record = json.loads(next((pytester.path / "reports" / "runs").glob("*.json")).read_text())
    (cost,) = record["tests"][0]["cost"]
    answered = sum(
        c["summary"]["requests"] - c["summary"]["errors"]
        for c in record["tests"][0]["loads"][0]["cells"]
    )
    assert cost["requests"] == answered > 100
    # Over the whole load, all but the increments the server's digest counters can
    # miss under concurrent load (no lock: 0 to 5 of 2,700 measured, never more);
    # per request over the measured phase (the steady one, warm-up apart), give or
    # take a request at its boundary.
    missed = 3 * cost["requests"] - cost["queries"]
    assert 0 <= missed <= 0.005 * 3 * cost["requests"], cost["statements"]
    assert abs(cost["per_request"]["queries_per_request"] - 3.0) < 0.02, cost["phases"]
    # Each phase read at its boundary: requests in flight across it are a few.
    warmup, steady = cost["phases"]
    assert (warmup["phase"], warmup["role"], steady["role"]) == ("warmup", "warmup", "measure")
    assert warmup["requests"] + steady["requests"] == cost["requests"]
    for phase in (warmup, steady):  # three requests' statements either way, at most
        counted = phase["per_request"]["queries_per_request"] * phase["requests"]
        assert abs(counted - 3 * phase["requests"]) <= 9 + missed, (phase, missed)
    assert cost["per_request"]["rows_examined_per_request"] > 0
    assert cost["per_request"]["cpu_ms_per_request"] > 0
    assert cost["per_request"]["no_index_used"] == 0
    texts = [s["text"] for s in cost["statements"]]
    assert any("SLEEP" in t for t in texts)
    assert any("order_items" in t for t in texts)


def test_a_server_without_the_digests_says_so_once_and_runs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mariadb: MySQLServer
) -> None:
    """A ``mysql://`` server whose statement digest consumer is off: one clear
    warning with how to turn it on, the test passes, no cost in the record."""
    mariadb.execute(
        "UPDATE performance_schema.setup_consumers SET ENABLED = 'NO' "
        "WHERE NAME = 'statements_digest'",
        admin=True,
    )
    try:
        url = (
            f"mysql://{mariadb.admin_user}:{mariadb.admin_password}@{mariadb.host}:"
            f"{mariadb.port}/cost_off"
        )
        mariadb.execute("DROP DATABASE IF EXISTS cost_off", admin=True)
        mariadb.execute("CREATE DATABASE cost_off", admin=True)
        pytester.makepyprojecttoml(PROJECT.replace('mysql = "process"', f'mysql = "{url}"'))
        pytester.makeconftest(CONFTEST)
        pytester.makepyfile(test_cost=TESTS.replace('"4s"', '"1s"'))
        monkeypatch.setenv("PYTHONPATH", str(REPO))
        monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--perf-profile=full")
    finally:
        mariadb.execute(
            "UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' "
            "WHERE NAME = 'statements_digest'",
            admin=True,
        )
        mariadb.execute("DROP DATABASE IF EXISTS cost_off", admin=True)
    out = result.stdout.str()
    assert result.ret == 0, out[-3000:]
    assert out.count("no database cost per request") == 1
    assert "consumers statements_digest are off" in out
    assert "--performance-schema=ON" in out
    record = json.loads(next((pytester.path / "reports" / "runs").glob("*.json")).read_text())
    assert "cost" not in record["tests"][0]


SLO_TESTS = """
import pytest
from perfsuite import Request, Scenario

def order(ctx):
    return ctx.get(f"/orders/{ctx.pick('order')[0]}")

@pytest.mark.slo(queries_per_request=2, rows_examined_per_request=10, no_index_used=0,
                 cpu_per_request="50ms", db_time_per_request="20ms")
def test_order_query(perf_run, perf_phases, perf_seed):
    scenario = Scenario(Request(name="order_query", build=order, status={200}),
                        data={"order": list(perf_seed.orders)}, seed=1)
    perf_run(scenario, [perf_phases.constant(rate=100, duration="3s")])
"""


@pytest.mark.parametrize(
    ("fault", "failing"),
    [
        ("", []),
        ("nplus1", ["queries_per_request of each load"]),
        ("scan", ["no_index_used of each load", "rows_examined_per_request of each load"]),
    ],
)
def test_the_faults_are_caught_by_cost_objectives(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fault: str, failing: list[str]
) -> None:
    """``nplus1`` adds a query per item, ``scan`` reads the whole orders table:
    cost SLOs fail on them, with the measured numbers; the correct service passes."""
    pytester.makepyprojecttoml(PROJECT)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_cost=SLO_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("ORDER_SERVICE_FAULT", fault)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--perf-profile=full")
    out = result.stdout.str()
    assert result.ret == (1 if failing else 0), out[-3000:]
    for line in failing:
        assert line in out
    if failing:  # the failure report lists the costliest statements, pt-query-digest's way
        assert "perfsuite: cost (top statements)" in out
        assert "rows/call" in out
    record = json.loads(next((pytester.path / "reports" / "runs").glob("*.json")).read_text())
    (cost,) = record["tests"][0]["cost"]
    per = cost["per_request"]
    if fault == "nplus1":
        # 2 statements became 2 + the order's items (1 to 3 each, in the seed):
        # the ids query sent one row per item, and each item cost a query.
        (ids,) = [s for s in cost["statements"] if "quantity" not in s["text"]
                  and "`order_items`" in s["text"]]  # fmt: skip
        # Give or take what the digests missed (``rows_sent`` is a digest counter too).
        wanted = 2 * cost["requests"] + ids["rows_sent"]
        assert abs(cost["queries"] - wanted) <= 0.005 * wanted, (cost["queries"], wanted)
        assert 3.0 < per["queries_per_request"] < 5.0
    elif fault == "scan":
        assert per["rows_examined_per_request"] > 100 * 3  # 300 orders read, not 1
        assert 0.995 * cost["requests"] <= per["no_index_used"] <= cost["requests"]
    else:
        assert 1.99 <= per["queries_per_request"] <= 2.0
        assert per["no_index_used"] == 0
        assert per["rows_examined_per_request"] < 5


def test_cost_objectives_are_parsed_strictly() -> None:
    from perfsuite import ConfigError
    from perfsuite.stats.slo import evaluate_cost, parse_slo

    with pytest.raises(ConfigError, match="cost is measured per load, not per phase"):
        parse_slo({"queries_per_request": 3, "phase": "steady"})
    with pytest.raises(ConfigError, match="expected a number >= 0"):
        parse_slo({"no_index_used": "none"})
    with pytest.raises(ConfigError, match="expected a latency"):
        parse_slo({"cpu_per_request": "lots"})
    objectives = parse_slo({"queries_per_request": 3, "endpoint": "a"})
    # Judged on the loads of that one endpoint only; a mixed load's cost is not its own.
    loads = [(("a",), {"queries_per_request": 2.0}), (("a", "b"), {"queries_per_request": 9.0})]
    (result,) = evaluate_cost(objectives, loads)
    assert (result.passed, result.measured) == (True, 2.0)
    (none,) = evaluate_cost(parse_slo({"queries_per_request": 3, "endpoint": "c"}), loads)
    assert not none.passed  # nothing measured cannot meet an objective


def test_one_extra_query_per_item_regresses_in_one_run_against_one_baseline_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts need no run-to-run noise: one baseline run of the correct service,
    then one run of ``nplus1``: queries per request ``regressed`` (confirmed by the
    rerun), where latency has too few runs for any verdict. The correct service
    compared with the same baseline: its cost ``unchanged``."""
    pytester.makepyprojecttoml(PROJECT)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_cost=TESTS.replace('"4s"', '"3s"'))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    args = ("-p", "no:cacheprovider", "--perf-profile=full")
    monkeypatch.setenv("ORDER_SERVICE_FAULT", "")
    saved = pytester.runpytest_subprocess(*args, "--perf-save-baseline")
    assert saved.ret == 0, saved.stdout.str()[-3000:]
    (baseline,) = (pytester.path / "baselines").glob("*.json")
    (stored,) = json.loads(baseline.read_text())["runs"]
    # Warm-up apart: the steady phase's, read at its boundary (a request or so of
    # the warm-up's may land in it, or of its own in the warm-up).
    assert abs(stored["cost"][0]["queries_per_request"] - 2.0) < 0.02

    same = pytester.runpytest_subprocess(*args, "--perf-compare")
    out = same.stdout.str()
    assert same.ret == 0, out[-3000:]
    record = json.loads(sorted((pytester.path / "reports" / "runs").glob("*.json"))[-1].read_text())
    cost = {c["metric"]: c for c in record["tests"][0]["comparisons"]["cost"]}
    assert cost["queries_per_request"]["verdict"] == "unchanged"
    assert cost["no_index_per_request"]["verdict"] == "unchanged"

    monkeypatch.setenv("ORDER_SERVICE_FAULT", "nplus1")
    slower = pytester.runpytest_subprocess(*args, "--perf-compare")
    out = slower.stdout.str()
    assert slower.ret == 1, out[-3000:]
    assert "queries_per_request regressed: " in out
    assert "confirmed by a rerun" in out
    record = json.loads(sorted((pytester.path / "reports" / "runs").glob("*.json"))[-1].read_text())
    comparisons = record["tests"][0]["comparisons"]
    cost = {c["metric"]: c for c in comparisons["cost"]}
    assert cost["queries_per_request"]["verdict"] == "regressed"
    assert cost["rows_examined_per_request"]["verdict"] == "regressed"  # each item read twice
    # Latency, with one baseline run and no pooled noise, cannot say anything.
    assert {c["verdict"] for c in comparisons["order_query"]} == {"inconclusive"}


def test_cost_comparison_counts_and_times() -> None:
    from perfsuite.stats.cost_compare import compare_cost

    base = {"queries_per_request": 2.0, "rows_examined_per_request": 300.0,
            "db_ms_per_request": 0.30, "cpu_ms_per_request": 0.60}  # fmt: skip
    # One baseline run: counts are judged, times are not (no run-to-run spread).
    one = {c.metric: c for c in compare_cost({**base, "queries_per_request": 2.4}, [base],
                                              alpha=0.01)}  # fmt: skip
    assert one["queries_per_request"].verdict == "unchanged"  # under the floor: half a query
    # One more query per request, a request at the load's edge counted apart (measured).
    plus_one = compare_cost({**base, "queries_per_request": 2.9985}, [base], alpha=0.01)[0]
    assert plus_one.metric == "queries_per_request"
    assert plus_one.verdict == "regressed"
    assert one["rows_examined_per_request"].verdict == "unchanged"
    assert one["db_ms_per_request"].verdict == "inconclusive"
    assert "1 baseline runs with it; 3 are needed" in one["db_ms_per_request"].describe()
    # Rows examined drift with the data between runs: the widest gap between them is
    # the threshold, so a change as large as the runs' own does not regress.
    runs = [{**base, "rows_examined_per_request": r} for r in (300.0, 310.0, 295.0)]
    drift = {c.metric: c for c in compare_cost({**base, "rows_examined_per_request": 309.0},
                                                runs, alpha=0.01)}  # fmt: skip
    assert drift["rows_examined_per_request"].verdict == "unchanged"
    scan = {c.metric: c for c in compare_cost({**base, "rows_examined_per_request": 5000.0},
                                               runs, alpha=0.01)}  # fmt: skip
    assert scan["rows_examined_per_request"].verdict == "regressed"
    fewer = {c.metric: c for c in compare_cost({**base, "queries_per_request": 1.0}, runs,
                                                alpha=0.01)}  # fmt: skip
    assert fewer["queries_per_request"].verdict == "improved"
    # Times: a prediction interval over the runs' logs, and the 10 % tolerance.
    noisy = [{**base, "db_ms_per_request": v} for v in (0.30, 0.33, 0.28, 0.31, 0.29)]
    within = {c.metric: c for c in compare_cost({**base, "db_ms_per_request": 0.32}, noisy,
                                                 alpha=0.01)}  # fmt: skip
    assert within["db_ms_per_request"].verdict in {"unchanged", "inconclusive"}
    doubled = {c.metric: c for c in compare_cost({**base, "db_ms_per_request": 0.60}, noisy,
                                                  alpha=0.01)}  # fmt: skip
    assert doubled["db_ms_per_request"].verdict == "regressed"


def test_no_cost_starts_the_server_without_performance_schema(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--perf-no-cost``: the throwaway server runs without performance_schema (its
    overhead gone), no digests are read, and nothing warns about it."""
    pytester.makepyprojecttoml(PROJECT)
    pytester.makeconftest(CONFTEST)
    body = TESTS.replace('"4s"', '"1s"') + (
        "    (row,) = perf_mysql.query('SELECT @@performance_schema', admin=True)\n"
        "    assert row[0] == 0\n"
    )
    fixtures = "perf_run, perf_phases, perf_seed"
    pytester.makepyfile(test_cost=body.replace(fixtures, fixtures + ", perf_mysql"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--perf-profile=full", "--perf-no-cost"
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-3000:]
    assert "no database cost" not in out
    assert "cost per request" not in out
    record = json.loads(next((pytester.path / "reports" / "runs").glob("*.json")).read_text())
    assert "cost" not in record["tests"][0]


def test_the_top_statements_read_like_pt_query_digest() -> None:
    from perfsuite.report.statements import statements_html, statements_text
    from perfsuite.stats.cost import PhaseCost, RequestCost, StatementCost
    from perfsuite.store.runs import encode_cost

    def statement(text: str, calls: int, total: float, rows: int, scans: int) -> StatementCost:
        return StatementCost(digest=text, text=text, calls=calls, total_ms=total, max_ms=None,
                             rows_examined=rows, rows_sent=calls, no_index_used=scans,
                             no_good_index_used=0, tmp_disk_tables=0, sort_merge_passes=0,
                             errors=0)  # fmt: skip

    cost = RequestCost(
        requests=1000,
        statements=(
            statement("SELECT * FROM `orders` WHERE `id` + ? = ?", 1000, 900.0, 5_000_000, 1000),
            statement(
                "SELECT `sku_id` FROM `order_items` WHERE `order_id` = ?", 1000, 80.0, 2000, 0
            ),
        ),
        status={"Questions": 2000, "Select_scan": 1000, "Slow_queries": 0},
        cpu_seconds=0.5,
        phases=(
            PhaseCost(
                phase="warmup",
                role="warmup",
                requests=200,
                queries=400,
                rows_examined=1_000_400,
                db_ms=250.0,
                no_index_used=200,
            ),
            PhaseCost(
                phase="steady",
                role="measure",
                requests=800,
                queries=1600,
                rows_examined=4_001_600,
                db_ms=730.0,
                no_index_used=800,
            ),
        ),
    )
    encoded = encode_cost(cost)
    # SLOs and the gate read the measured phase: the warm-up's cold reads apart.
    assert encoded["per_request"]["db_ms_per_request"] == 730.0 / 800
    assert encoded["per_request"]["cpu_ms_per_request"] == 0.5
    text = statements_text(encoded)
    lines = text.splitlines()
    assert lines[0].startswith("per request (1,000 answered): 2.00 queries, 5,002.0 rows")
    assert lines[0].endswith("800 statements without an index")
    assert lines[1] == "server counters: Questions +2,000, Select_scan +1,000"
    assert lines[3].split() == ["warmup", "warmup", "200", "2.00", "5,002.0", "1.250", "200"]
    rank1 = next(line for line in lines if line.lstrip().startswith("1 "))
    assert rank1.split()[:7] == ["1", "1,000", "1.00", "900.00", "-", "5,000.0", "1,000"]
    assert "`id` + ? = ?" in rank1
    page = statements_html(encoded)
    assert '<tr class="FAIL">' in page  # the scan stands out
    assert "<td>steady</td><td>measure</td><td>800</td>" in page


def test_a_load_that_no_request_answered_has_no_number_per_request() -> None:
    """A leaky service can answer nothing: every report says "-", none breaks."""
    from perfsuite.report.markdown import render_markdown
    from perfsuite.report.statements import statements_html, statements_text
    from perfsuite.report.terminal import render_cost_table
    from perfsuite.store.runs import encode_cost

    cost = encode_cost(request_cost(0, {}, {"a": _digest("a", 3)}))
    assert cost["per_request"]["queries_per_request"] is None
    assert statements_text(cost).startswith("per request (0 answered): - queries, - rows")
    assert "- queries" in statements_html(cost)
    entry = {"id": "t.py::test_leak", "loads": [], "slo": [], "comparisons": {}, "cost": [cost]}
    assert "test_leak" in render_cost_table([entry], width=120, color=False)
    assert "| `test_leak` | 0 | - | - | - | 0 | - |" in render_markdown(
        [entry], commit=None, profile="ci"
    )


def test_a_test_of_two_loads_shows_each_loads_verdict() -> None:
    """The gate names the comparisons of a test with two loads "load 1, <endpoint>":
    the summary's rows find them (they showed "-" before)."""
    from perfsuite.report.rows import rows

    def load(endpoint: str) -> dict[str, object]:
        summary = {"requests": 10, "errors": 0, "p50": 1.0, "p95": 2.0, "p99": 3.0}
        return {
            "phases": [{"name": "steady", "role": "measure", "duration": 1.0}],
            "cells": [{"phase": "steady", "endpoint": endpoint, "summary": summary}],
        }

    entry = {
        "id": "t.py::test_two",
        "loads": [load("a"), load("a")],
        "slo": [],
        "comparisons": {
            "load 1, a": [{"metric": "p50", "verdict": "unchanged"}],
            "load 2, a": [{"metric": "p50", "verdict": "regressed"}],
        },
    }
    assert [r.verdict for r in rows(entry)] == ["unchanged", "regressed"]
