"""The HTML trend report, built from a real history and rendered in headless Chromium.

A project in a temporary git repository runs its perf test once per commit
against the local server; from the fifth commit on the server is four times
slower per request (a real regression, which also puts its capacity inside
the ramp: a knee). pytest-benchmark saves two runs of a micro-benchmark,
imported into the same history. ``perfsuite report`` then writes the page,
and Chromium (Debian's, headless) loads it: charts drawn, no console errors,
and the change point names the commit that slowed the service down.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perfsuite.store.history import History, history_url

from .conftest import chromium, debian_binary, quiet_machine

FAST_US, SLOW_US = 1000, 4000  # capacity 1,000 then 250 req/s
RUNS, SLOW_FROM = 7, 4  # commits 0-3 fast, 4-6 slow

PERF_TEST = """
import os
import httpx
import pytest
from perfsuite import Request, Scenario

@pytest.mark.perf
def test_checkout(perf_run, perf_phases):
    url = os.environ["TARGET"] + "/cpu/" + os.environ["CPU_US"]
    checkout = Request(name="checkout", build=httpx.Request("GET", url))
    perf_run(
        Scenario(checkout),
        [perf_phases.warmup(50, "1s"), perf_phases.ramp(50, 400, "4s", name="ramp")],
        target=os.environ["TARGET"],
    )
"""

# The last commit also runs a service perfsuite starts (the load server, a Python
# process) and keeps its CPU profile (the flamegraph marker): the report draws it.
PROFILED_TEST = """
import pytest
from perfsuite import Request, Scenario

@pytest.mark.perf
@pytest.mark.flamegraph
def test_profiled(perf_run, perf_phases):
    busy = Request(name="busy", build=lambda ctx: ctx.get("/cpu/800"))
    perf_run(Scenario(busy), [perf_phases.constant(200, "4s")])
"""
PROJECT = f"""
[tool.perfsuite]
mysql = "process"
[tool.perfsuite.service]
command = "{{python}} {Path(__file__).with_name("loadserver.py")} {{port}}"
health = "/ok"
[tool.perfsuite.pool]
check = false
[tool.perfsuite.profiling]
profiler = "auto"
"""

BENCH_TEST = """
def test_encode(benchmark):
    benchmark(lambda: ",".join(str(i) for i in range(200)))
"""


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _env(server: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "PYTEST_"))}
    return {**env, "TARGET": server.url, "DOCKER_HOST": "unix:///nonexistent.sock", **extra}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, server: Any) -> dict[str, Any]:
    """A project with a history of RUNS commits and two saved benchmark runs."""
    root = tmp_path_factory.mktemp("project")
    (root / "pyproject.toml").write_text(PROJECT)
    (root / "test_perf.py").write_text(PERF_TEST)
    (root / "test_profiled.py").write_text(PROFILED_TEST)
    (root / "bench").mkdir()
    (root / "bench" / "test_bench.py").write_text(BENCH_TEST)
    _git(root, "init", "-q", "-b", "main")
    commits = []
    for i in range(RUNS):
        (root / "version.txt").write_text(str(i))
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"change {i}")
        commits.append(_git(root, "rev-parse", "HEAD"))
        cpu = SLOW_US if i >= SLOW_FROM else FAST_US
        profiled = ["test_profiled.py"] if i == RUNS - 1 else []
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "test_perf.py", *profiled, "-m", "perf",
             "-p", "no:cacheprovider", "--perf-profile=full"],
            cwd=root, env=_env(server, CPU_US=str(cpu)), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        if i >= RUNS - 2:
            with quiet_machine():
                bench = subprocess.run(
                    [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider",
                     "--benchmark-save=run", "--benchmark-max-time=0.05",
                     "--benchmark-min-rounds=5"],
                    cwd=root, env=_env(server), capture_output=True, text=True, timeout=120,
                )  # fmt: skip
            assert bench.returncode == 0, bench.stdout + bench.stderr
    return {"root": root, "commits": commits}


def _perfsuite(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with quiet_machine():
        return subprocess.run(
            [sys.executable, "-m", "perfsuite.cli", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )


def test_history_holds_every_run_and_the_imported_benchmarks(project: dict[str, Any]) -> None:
    root = project["root"]
    out = _perfsuite(root, "history", "import", ".benchmarks")
    assert out.returncode == 0, out.stderr
    assert "imported 2 runs" in out.stdout
    again = _perfsuite(root, "history", "import", ".benchmarks", "reports/runs")
    assert "imported 0 runs" in again.stdout
    assert f"({RUNS + 2} already there)" in again.stdout
    with History(history_url("reports/history.sqlite", root)) as history:
        runs = history.runs()
        assert [r.commit for r in runs if r.source == "perfsuite"] == project["commits"]
        assert [r.source for r in runs].count("pytest-benchmark") == 2
        bench = history.points([r.id for r in runs if r.source == "pytest-benchmark"])
        assert {p.metric for p in bench} >= {"median", "mean", "ops"}
        assert all(p.test.endswith("test_bench.py::test_encode") for p in bench)


@pytest.fixture(scope="module")
def chromium_binary() -> str:
    """Debian's Chromium. Module-scoped and asked for first, so that a skip comes
    before the project's seven perf runs."""
    return debian_binary("chromium", "the HTML report's test renders the page in it")


def test_report_renders_in_chromium_and_names_the_regressing_commit(
    chromium_binary: str, project: dict[str, Any], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    root = project["root"]
    assert _perfsuite(root, "history", "import", ".benchmarks").returncode == 0
    out = _perfsuite(root, "report")
    assert out.returncode == 0, out.stderr
    assert re.search(
        r"wrote reports/index.html \(\d+ runs, \d+ charts, [1-9]\d* change", out.stdout
    )
    page_file = root / "reports" / "index.html"
    text = page_file.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "")  # nothing fetched: offline
    slow_commit = project["commits"][SLOW_FROM]

    errors: list[str] = []
    with (
        quiet_machine(),  # a browser takes both cores for a moment
        chromium(chromium_binary, tmp_path / "profile") as endpoint,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.connect_over_cdp(endpoint)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        charts = page.evaluate(
            """() => [...document.querySelectorAll('svg.chart')].map(svg => {
                 const box = svg.getBoundingClientRect();
                 const drawn = [...svg.querySelectorAll('path.series, circle')]
                   .filter(p => p.getBBox().width + p.getBBox().height > 0).length;
                 return {kind: svg.dataset.kind, width: box.width, height: box.height, drawn};
               })"""
        )
        shifts = page.eval_on_selector_all("tr.shift", "rows => rows.map(r => r.innerText)")
        flames = page.evaluate(
            """() => [...document.querySelectorAll('svg.flame')].map(svg => ({
                 width: svg.getBoundingClientRect().width,
                 frames: [...svg.querySelectorAll('g.frame rect')]
                   .filter(r => r.getBBox().width > 0).length,
                 names: [...svg.querySelectorAll('g.frame text')].map(t => t.textContent),
               }))"""
        )
        page.screenshot(path=str(root / "reports" / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    kinds = [c["kind"] for c in charts]
    assert kinds.count("trend") >= 5 + 2  # p50..error rate of checkout, 2 benchmark metrics
    for kind in ("percentiles", "rps", "p99-timeline", "knee"):
        assert kind in kinds
    assert all(c["width"] > 100 and c["height"] > 50 and c["drawn"] > 0 for c in charts)
    # The slowdown is a change point of checkout's latency, at the commit that made it.
    latency_shifts = [s for s in shifts if "checkout" in s and re.search(r"\tp(50|95|99)\t", s)]
    assert latency_shifts
    assert all(slow_commit[:12] in s for s in latency_shifts)
    assert "Knee of checkout" in text
    # The profiled test's flame graph: drawn, with frames that name the server's code.
    (flame,) = flames
    assert flame["width"] > 600
    assert flame["frames"] > 5
    assert any(name.startswith("main") or "Handler" in name for name in flame["names"])
    assert '<table class="hottest">' in text
