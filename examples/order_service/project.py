"""A throwaway perf project around the example order service, as a user would write
one: for the benchmarks that measure perfsuite on a real service, and their tests.

Its ``pyproject.toml`` starts a throwaway MariaDB with the service's schema and
the service as a command; its ``conftest.py`` seeds the database (``perf_seed``);
:func:`run_session` runs pytest there and returns the new run record's tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ORDER_QUERY_TEST", "PROFILED", "REPO", "run_session", "write_project"]

REPO = Path(__file__).resolve().parents[2]

_PROJECT = f"""
[tool.perfsuite]
mysql = "process"
database = "orders"
sql = ["{REPO / "examples/order_service/schema.sql"}"]

[tool.perfsuite.service]
command = "{{python}} -m examples.order_service --host 127.0.0.1 --port {{port}}"
pass_env = ["ORDER_SERVICE_FAULT"]
health = "/health"
startup_timeout = "30s"
"""

_CONFTEST = """
import pytest
from examples.order_service.seed import seed_database

@pytest.fixture(scope="session")
def perf_seed(perf_mysql):
    return seed_database(perf_mysql, users={users}, skus={skus}, orders={orders})
"""


# Its pool's gauges, CPU profiles (py-spy) and the growth check with its task count.
PROFILED = """
[tool.perfsuite.pool]
metrics = "order-service"
max_idle = 10

[tool.perfsuite.profiling]
profiler = "auto"
growth = true
growth_metrics = ["order_service_asyncio_tasks"]
"""

# The order query in the open model after a 2 s warm-up: ``.format(rate=, seconds=)``.
ORDER_QUERY_TEST = """
from perfsuite import Request, Scenario

def order(ctx):
    return ctx.get(f"/orders/{{ctx.pick('order')[0]}}")

def test_open(perf_run, perf_phases, perf_seed):
    scenario = Scenario(Request(name="order_query", build=order, status={{200}}),
                        data={{"order": list(perf_seed.orders)}}, seed=1)
    perf_run(scenario, [perf_phases.warmup(rate=100, duration="2s"),
                        perf_phases.constant(rate={rate}, duration="{seconds}s")])
"""


def write_project(
    folder: Path,
    tests: str,
    *,
    toml: str = "",
    top: str = "",
    users: int = 2_000,
    skus: int = 500,
    orders: int = 5_000,
) -> Path:
    """Write the project into ``folder``: its pyproject (``top``: more keys of
    ``[tool.perfsuite]`` itself; ``toml``: more tables), the seeding conftest, and
    ``tests`` as ``test_bench.py``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = _PROJECT.replace("\n[tool.perfsuite.service]", f"{top}\n[tool.perfsuite.service]", 1)
    (folder / "pyproject.toml").write_text(text + toml)
    (folder / "conftest.py").write_text(_CONFTEST.format(users=users, skus=skus, orders=orders))
    (folder / "test_bench.py").write_text(tests)
    (folder / "reports" / "runs").mkdir(parents=True, exist_ok=True)
    return folder


def run_session(
    folder: Path,
    *args: str,
    fault: str = "",
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``pytest --perf-profile=full ARGS`` in the project (the service's fault set);
    the run and the tests of its new run record (a ``SystemExit`` when it wrote none)."""
    runs = folder / "reports" / "runs"
    before = set(runs.glob("*.json"))
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ORDER_SERVICE_FAULT": fault,
        "DOCKER_HOST": "unix:///nonexistent.sock",
        **(env or {}),
    }
    for name in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER"):
        environ.pop(name, None)
    done = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--perf-profile=full", *args],
        cwd=folder, env=environ, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    new = sorted(set(runs.glob("*.json")) - before)
    if not new:
        raise SystemExit(f"no run record:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    tests: list[dict[str, Any]] = json.loads(new[-1].read_text())["tests"]
    return done, tests
