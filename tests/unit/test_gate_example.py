"""The gate on the real example service: the same build passes, a slowdown fails.

Runs the project's own perf suite (``tests/perf``, order query, smoke
profile) in a subprocess: five runs saved as the baseline, then a run of the
same build, then one with ``ORDER_SERVICE_FAULT=slow:3`` (each order query
takes 3 ms longer: about +80 % on its median, +130 % on its p95).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .conftest import run_example_suite


def _perf(baselines: Path, *args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
    return run_example_suite(
        f"--perf-baseline-dir={baselines}", *args, select="order_query", fault=fault
    )


def test_same_build_passes_and_a_slowdown_fails(tmp_path: Path) -> None:
    for _ in range(5):
        saved = _perf(tmp_path, "--perf-save-baseline")
        assert saved.returncode == 0, saved.stdout[-3000:]
    same = _perf(tmp_path, "--perf-compare")
    assert same.returncode == 0, same.stdout[-3000:]
    assert "baseline comparison, order_query:" in same.stdout
    assert " regressed:" not in same.stdout

    slow = _perf(tmp_path, "--perf-compare", fault="slow:3")
    assert slow.returncode == 1, slow.stdout[-3000:]
    # Which latency metric crosses first varies from run to run; one of them must.
    assert re.search(r"regression in order_query: (p50|p95|p99|mean) regressed:", slow.stdout)
    assert "1 failed" in slow.stdout
