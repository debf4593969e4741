"""The gate on the real example service: the same build passes, a slowdown fails.

Runs the project's own perf suite (``tests/perf``, order query, ci profile:
12 s at 500 req/s, long enough to be judged) in a subprocess: six runs saved
as the baseline, then a run of the same build, then one with
``ORDER_SERVICE_FAULT=slow:10`` (each order query takes 10 ms longer, about
seven times its median; at 500 req/s that holds 5 of the pool's 10
connections), confirmed by its rerun.

Why six runs and a large fault: the folder holds this one test, so the noise
has only its own runs' degrees of freedom, and fresh servers make the order
query's median vary by about 25 % from run to run (measured in CI: +400 %
was "inconclusive" over 4 runs, df 3, at the session's alpha of 1 %). With
6 ms (+400 %), one CI run of the ten or so since it was written failed
without a latency regression (the run failed, on its database cost; the
verdicts were not kept). One baseline run twice as slow as the others widens
the interval about that much, and the gate is right to say so; 10 ms leaves
room for it, and a failure now prints every verdict.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from perfsuite.report.html import build_report
from perfsuite.store.history import History, history_url

from .conftest import run_example_suite


def _perf(root: Path, *args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
    return run_example_suite(
        f"--perf-baseline-dir={root / 'baselines'}",
        # The gate alone fails these runs: a CI host's stall of a few hundred ms
        # once put a saved run's p99 over the suite's 100 ms SLO (135 ms, with no
        # neighbour test running), and this test is about the comparison.
        "--perf-fail-on=regression",
        *args,
        select="order_query",
        fault=fault,
        reports=root / "reports",
        profile="ci",
    )


@pytest.mark.exclusive  # a 1 ms service: any neighbour moves its latency by 20 %
def test_same_build_passes_and_a_slowdown_fails(tmp_path: Path) -> None:
    for _ in range(6):
        saved = _perf(tmp_path, "--perf-save-baseline")
        assert saved.returncode == 0, saved.stdout[-3000:]
    same = _perf(tmp_path, "--perf-compare")
    assert same.returncode == 0, same.stdout[-3000:]
    assert "baseline comparison, order_query:" in same.stdout
    assert " regressed:" not in same.stdout

    slow = _perf(tmp_path, "--perf-compare", fault="slow:10")
    assert slow.returncode == 1, slow.stdout[-3000:]
    # Which latency metric crosses first varies from run to run; one of them must.
    found = re.search(r"regression in order_query: (p50|p95|p99|mean) regressed:", slow.stdout)
    assert found, _verdicts(slow.stdout, tmp_path)
    assert "confirmed by a rerun" in slow.stdout
    assert "1 failed" in slow.stdout

    # The history has all eight runs; the report's latest run shows the verdict.
    with History(history_url(str(tmp_path / "reports" / "history.sqlite"), tmp_path)) as history:
        assert history.count() == 8
        build_report(history, tmp_path / "index.html")
    html = (tmp_path / "index.html").read_text()
    assert '<td class="regressed">regressed</td>' in html
    assert re.search(r'<li class="regressed">.*order_query: (p50|p95|p99|mean) regressed: ', html)
    assert "latency by percentile" in html


def _verdicts(stdout: str, root: Path) -> str:
    """What the gate said (for a failure's message): the comparisons, and the saved runs'."""
    start = stdout.find("baseline comparison, order_query:")
    saved = [
        (run["judged"], run["confirmed"], _latencies(run))
        for path in (root / "baselines").glob("*.json")
        for run in json.loads(path.read_text())["runs"]
    ]
    return f"{stdout[start : start + 3000]}\nsaved runs (judged, confirmed, p50/p99): {saved}"


def _latencies(run: dict[str, object]) -> list[str]:
    """Each measured cell's p50/p99 (ms) of a saved run: which runs made the noise."""
    loads = run["loads"]
    assert isinstance(loads, list)
    return [
        f"{c['summary']['p50']:.2f}/{c['summary']['p99']:.2f}"
        for load in loads
        for c in load["cells"]
        if c["phase"] != "warmup"
    ]
