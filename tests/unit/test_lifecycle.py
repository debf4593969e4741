"""Nothing outlives a run: passing, failing, or interrupted by SIGINT.

Each test runs pytest in a subprocess with its own temp folder, so the
datadirs and processes it creates can be told apart from everyone else's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .conftest import REPO, SCHEMA

pytest_plugins = ["pytester"]

PYPROJECT = f"""
[tool.perfsuite]
mysql = "process"
database = "orders"
sql = ["{SCHEMA}"]

[tool.perfsuite.service]
command = "{{python}} -m examples.order_service --port {{port}} --mysql-url {{mysql_url}}"
cwd = "{REPO}"
env = {{ ORDER_SERVICE_MARK = "lifecycle" }}
"""

TESTS = """
import os, pathlib, time
import httpx
import pytest

pytestmark = pytest.mark.perf

def test_passes(perf_service):
    assert httpx.get(perf_service.base_url + "/health").status_code == 200

def test_fails(perf_service, perf_mysql):
    if os.environ.get("MAKE_IT_FAIL"):
        assert False, "the load test failed"

def test_hangs(perf_service, perf_mysql):
    if os.environ.get("HANG_AT"):
        pathlib.Path(os.environ["HANG_AT"]).write_text(str(perf_service.pid))
        time.sleep(120)
"""


def _ours(tmp: Path) -> list[psutil.Process]:
    """Processes that belong to the inner run: a datadir or service under ``tmp``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(tmp) in cmdline or env.get("TMPDIR") == str(tmp):
            found.append(proc)
    return found


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("perfsuite-*"))


@pytest.fixture
def inner(pytester: pytest.Pytester, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    pytester.makefile(".toml", pyproject=PYPROJECT)
    pytester.makepyfile(test_inner=TESTS)
    tmp = tmp_path / "inner-tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "DOCKER_HOST": f"unix://{tmp}/no-docker.sock"}
    env.pop("PYTEST_ADDOPTS", None)
    return tmp, env


def _run(
    pytester: pytest.Pytester, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "perf", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_passing_run_leaves_nothing(
    pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = inner
    result = _run(pytester, env, "-k", "passes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert _leftovers(tmp) == []
    assert _ours(tmp) == []


def test_failing_run_leaves_nothing_and_shows_the_service_log(
    pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = inner
    result = _run(pytester, {**env, "MAKE_IT_FAIL": "1"}, "-k", "fails")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the load test failed" in result.stdout
    assert "perfsuite: service log (last lines)" in result.stdout
    assert "order_service: faults=Faults(leak=False" in result.stdout
    assert _leftovers(tmp) == []
    assert _ours(tmp) == []


def test_sigint_in_the_middle_leaves_nothing(
    pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = inner
    ready = tmp / "hanging"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-m", "perf", "-p", "no:cacheprovider", "-k", "hangs"],
        cwd=pytester.path,
        env={**env, "HANG_AT": str(ready)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), "the inner test never started"
        service_pid = int(ready.read_text())
        running = _ours(tmp)
        assert any(p.pid == service_pid for p in running)
        assert any("mariadbd" in p.name() or "mysqld" in p.name() for p in running)
        assert any(_leftovers(tmp))
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert _leftovers(tmp) == []
    assert _ours(tmp) == []
    assert not psutil.pid_exists(service_pid)


def test_provisioning_errors_are_one_message(
    pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = inner
    pytester.makefile(
        ".toml",
        pyproject=PYPROJECT.replace(
            'mysql = "process"', 'mysql = "process"\nmysqld = "no-such-mysqld"'
        ),
    )
    result = _run(pytester, env, "-k", "passes")
    assert result.returncode == 1
    assert "perfsuite: MySQLError: no MySQL server binary found (no-such-mysqld" in result.stdout
    assert "Traceback" not in result.stdout
    assert _leftovers(tmp) == []
