"""A/B runs of two builds of a project, as a user's pull request job runs them.

A temporary git repository holds a small service in two commits, the second
one slower; ``--perf-ab=HEAD~1`` must call it a regression, ``--perf-ab=HEAD``
must not, and afterwards (also after Ctrl-C in the middle of the rounds) the
worktree, both builds' services and the throwaway server with both databases
are gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perfsuite.replay import CaptureWriter

from .conftest import html_report, signal_and_wait, start_in_own_group

pytest_plugins = ["pytester"]
# Verdicts on 4-second rounds, and how fast Ctrl-C gives the terminal back: alone.
pytestmark = pytest.mark.exclusive

PYPROJECT = """
[tool.perfsuite]
mysql = "process"
database = "shop"
sql = ["schema.sql"]

[tool.perfsuite.service]
command = "{python} svc.py --port {port}"

[tool.perfsuite.pool]
check = false

[tool.perfsuite.baseline]
alpha = 0.001  # the A/A run must not fail this suite 1 % of the time by design

[tool.perfsuite.load]
workers = 1

[tool.perfsuite.profiles.ci]  # the phases as written
duration_scale = 1.0
rate_scale = 1.0
"""

SCHEMA = """
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20));
INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');
"""

# {delay} and {queries} are filled in per commit.
SERVICE = """
import argparse, json, os, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pymysql

DELAY_MS = {delay}
QUERIES = {queries}
args = argparse.ArgumentParser()
args.add_argument("--port", type=int)
a = args.parse_args()
u = urllib.parse.urlparse(os.environ["PERFSUITE_MYSQL_URL"])
conn = pymysql.connect(host=u.hostname, port=u.port, user=urllib.parse.unquote(u.username),
                       password=urllib.parse.unquote(u.password or ""), database=u.path[1:])
conn.autocommit(True)
with conn.cursor() as cur:
    cur.execute("SELECT DATABASE(), COUNT(*) FROM items")
    DATABASE, ROWS = cur.fetchone()
LOCK = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def do_GET(self):
        if self.path == "/health":
            body = json.dumps({{"database": DATABASE, "rows": ROWS}}).encode()
        else:
            with LOCK, conn.cursor() as cur:
                for _ in range(QUERIES):
                    cur.execute("SELECT name FROM items WHERE id = 1")
                    cur.fetchall()
            time.sleep(DELAY_MS / 1000.0)
            body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()
"""

TESTS = """
import os, pathlib, time
import pytest
from perfsuite import Request, Scenario

CALLS = [0]

def stall_at_first(status, body):
    # STALL_FIRST: the generator's own event loop blocked in the first round's
    # measured phase only (a check that sleeps), as a hiccup of the machine would.
    CALLS[0] += 1
    if os.environ.get("STALL_FIRST") and 50 < CALLS[0] <= 150:
        time.sleep(0.03)
    return True

WORK = Scenario(Request(name="work", build=lambda ctx: ctx.get("/work"), check=stall_at_first))

@pytest.mark.perf
def test_work(perf_run, perf_phases, perf_mysql):
    pathlib.Path(os.environ["LOADING"]).write_text("")
    perf_run(WORK, [perf_phases.warmup(rate=50, duration="1s"),
                    perf_phases.constant(rate=100, duration="4s")])
    # Both builds had a database of their own on the same server.
    names = sorted(r[0] for r in perf_mysql.query("SHOW DATABASES", admin=True))
    pathlib.Path(os.environ["DATABASES"]).write_text(" ".join(names))
"""


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


@pytest.fixture
def repo(pytester: pytest.Pytester, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The project: a fast commit, then a slower one (checked out)."""
    root = pytester.path
    pytester.makefile(".toml", pyproject=PYPROJECT)
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makepyfile(test_work=TESTS)
    _git(root, "init", "-q")
    for name, value in (("user.email", "t@example.invalid"), ("user.name", "t")):
        _git(root, "config", name, value)
    # The second commit makes each request 6 ms slower, and one query costlier.
    for delay, queries in ((2.0, 1), (8.0, 2)):
        (root / "svc.py").write_text(SERVICE.format(delay=delay, queries=queries))
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"{delay} ms")
    tmp = tmp_path / "inner-tmp"
    tmp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "DOCKER_HOST": f"unix://{tmp}/no-docker.sock",
        "LOADING": str(tmp_path / "loading"),
        "DATABASES": str(tmp_path / "databases"),
    }
    env.pop("PYTEST_ADDOPTS", None)
    return tmp, env


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-m", "perf", "-p", "no:cacheprovider", "-rA", *args]


def _run(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(*args), cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _assert_nothing_left(root: Path, tmp: Path) -> None:
    worktrees = [line for line in _git(root, "worktree", "list").splitlines() if line.strip()]
    assert len(worktrees) == 1, worktrees  # the project's own checkout only
    assert sorted(p.name for p in tmp.glob("perfsuite-*")) == []
    ours = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if (proc.info["environ"] or {}).get("TMPDIR") == str(tmp):
                ours.append(" ".join(proc.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert ours == []


def test_a_slower_commit_is_a_regression_and_nothing_is_left(
    pytester: pytest.Pytester, repo: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    tmp, env = repo
    root = pytester.path
    done = _run(
        root, env, "--perf-ab=HEAD~1", "--perf-ab-pairs=5", "--perf-markdown=pr.md",
        "--junitxml=junit.xml",
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "A/B against HEAD~1 (" in out, out[-4000:]
    assert "regression in work: p50 regressed: " in out
    # (the server's digest counters can miss an increment under load; the measured
    # phases' cost can gain or lose a request's statements in flight across a phase
    # boundary: the README's table of cost numbers)
    assert re.search(
        r"regression in cost: queries_per_request regressed: "
        r"(1\.00\d|0\.99\d) -> (2\.00\d|1\.99\d)",
        out,
    ), out[-4000:]
    assert "paired t over 5 pairs (df 4)" in out
    assert (tmp_path / "databases").read_text().split().count("shop_ab_base") == 1
    assert "shop" in (tmp_path / "databases").read_text().split()
    # The run record has every pair of both builds.
    record = json.loads(sorted((root / "reports" / "runs").glob("*.json"))[-1].read_text())
    ab = record["tests"][0]["ab"]
    assert ab["pairs"] == 5
    rounds = ab["loads"][0]["endpoints"]["work"]["p50"]
    assert len(rounds["base"]) == len(rounds["candidate"]) == 5
    assert all(c > b for b, c in zip(rounds["base"], rounds["candidate"], strict=True))
    assert sorted(set(ab["loads"][0]["first"])) <= ["base", "candidate"]
    # Each round's cost, on its own build's database.
    cost = ab["loads"][0]["cost"]
    assert all(0.99 <= c["queries_per_request"] <= 1.01 for c in cost["base"]), cost
    assert all(1.99 <= c["queries_per_request"] <= 2.01 for c in cost["candidate"]), cost
    assert len(cost["base"]) == len(cost["candidate"]) == 5
    # The table has one row for the test's endpoint; the summaries name the base.
    assert sum("│ test_work " in line and "│ work " in line for line in out.splitlines()) == 1
    assert "A/B against `HEAD~1 (" in (root / "pr.md").read_text()
    assert 'name="perf.ab.base" value="HEAD~1 (' in (root / "junit.xml").read_text()
    # The HTML report draws the pairs.
    page = html_report(root, env)
    assert "A/B pairs: p50 of work" in page
    assert "A/B against HEAD~1 (" in page
    _assert_nothing_left(root, tmp)


def test_the_same_commit_on_both_sides_is_no_regression(
    pytester: pytest.Pytester, repo: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = repo
    root = pytester.path
    done = _run(root, env, "--perf-ab=HEAD", "--perf-ab-pairs=4")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert " regressed:" not in out
    assert "A/B against HEAD (" in out
    assert re.search(r"queries_per_request unchanged: (2\.00\d|1\.99\d) -> (2\.00\d|1\.99\d)", out)
    _assert_nothing_left(root, tmp)


def test_a_pair_whose_generator_saturated_is_run_again(
    pytester: pytest.Pytester, repo: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = repo
    root = pytester.path
    done = _run(root, {**env, "STALL_FIRST": "1"}, "--perf-ab=HEAD", "--perf-ab-pairs=3")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "A/B: a pair run again: load generator saturated" in out
    record = json.loads(sorted((root / "reports" / "runs").glob("*.json"))[-1].read_text())
    ab = record["tests"][0]["ab"]
    assert ab["pairs"] == 3  # three whole pairs, the saturated one not among them
    (redone,) = ab["loads"][0]["redone"]
    assert redone.startswith("load generator saturated")
    _assert_nothing_left(root, tmp)


def test_bad_input_gets_one_clear_message(
    pytester: pytest.Pytester, repo: tuple[Path, dict[str, str]]
) -> None:
    _, env = repo
    root = pytester.path
    unknown = _run(root, env, "--perf-ab=no-such-branch")
    assert unknown.returncode == 4, unknown.stdout + unknown.stderr
    assert "--perf-ab=no-such-branch: no such commit in" in unknown.stderr
    both = _run(root, env, "--perf-ab=HEAD", "--perf-compare")
    assert both.returncode == 4
    assert "--perf-compare and --perf-ab" in both.stderr
    few = _run(root, env, "--perf-ab=HEAD", "--perf-ab-pairs=2")
    assert few.returncode == 4
    assert "expected a whole number of pairs >= 3" in few.stderr


def test_ctrl_c_in_the_middle_of_the_rounds_leaves_nothing(
    pytester: pytest.Pytester, repo: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    tmp, env = repo
    root = pytester.path
    proc = start_in_own_group(_argv("--perf-ab=HEAD~1", "--perf-ab-pairs=10"), cwd=root, env=env)
    deadline = time.monotonic() + 120
    while not (tmp_path / "loading").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(8.0)  # into the rounds: the worktree, the copy and both services are up
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == 2, output
    assert seconds < 5.0, f"{seconds:.1f} s to exit:\n{output}"
    _assert_nothing_left(root, tmp)


REPLAYED = """
import pytest

@pytest.mark.perf
@pytest.mark.slo(diff_rate="0%", endpoint="get_work")
def test_replayed(perf_replay):
    perf_replay("traffic.jsonl", compare="base")
"""


def test_a_replay_compared_with_the_base_build(
    pytester: pytest.Pytester, repo: tuple[Path, dict[str, str]]
) -> None:
    # The two commits answer /work alike; /health names each build's own database.
    tmp, env = repo
    root = pytester.path
    pytester.makepyfile(test_replayed=REPLAYED)
    writer = CaptureWriter(root / "traffic.jsonl")
    for i in range(40):
        target = "/health" if i % 4 == 0 else "/work"
        writer.write(time=1000 + i * 0.05, method="GET", target=target, headers=(), body=b"")
    writer.close()
    done = _run(root, env, "--perf-ab=HEAD~1", "test_replayed.py")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "answers compared with http://127.0.0.1:" in out
    assert "  get_health: 10 of 10 differ (100.0%)" in out
    assert '    database: 10 (e.g. /health: "shop_ab_base" -> "shop")' in out
    assert "  get_work: 0 of 30 differ (0.0%)" in out
    # Outside an A/B session, "base" has nothing to name.
    alone = _run(root, env, "test_replayed.py")
    assert alone.returncode == 1
    assert "perf_replay(compare='base') needs an A/B session" in alone.stdout
    _assert_nothing_left(root, tmp)
