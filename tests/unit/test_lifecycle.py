"""Nothing outlives a run: passing, failing, or interrupted by Ctrl-C or SIGTERM.

Each test runs pytest in a subprocess with its own temp folder, so the
datadirs and processes it creates can be told apart from everyone else's.
Ctrl-C is sent as a terminal sends it: SIGINT to the whole process group
(pytest, and the load workers it forked); SIGTERM as a CI runner sends it,
to pytest alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perfsuite.store.history import History, history_url

from .conftest import ORDER_PROJECT, signal_and_wait, start_in_own_group

pytest_plugins = ["pytester"]
# How fast Ctrl-C gives the terminal back is a time: measured alone on the machine.
pytestmark = pytest.mark.exclusive

PYPROJECT = (
    ORDER_PROJECT
    + """env = { ORDER_SERVICE_MARK = "lifecycle" }
pass_env = ["ORDER_SERVICE_FAULT"]

[tool.perfsuite.pool]
metrics = "order-service"
timeout = "30s"

[tool.perfsuite.load]
workers = 1
"""
)

TESTS = """
import os, pathlib, time
import httpx
import pytest
from perfsuite import Request, Scenario

pytestmark = pytest.mark.perf

def mark(name, text=""):
    # Written whole, then renamed: the outer test never reads half a file.
    path = pathlib.Path(os.environ[name])
    path.with_name(path.name + ".part").write_text(text)
    path.with_name(path.name + ".part").replace(path)

def test_passes(perf_service):
    assert httpx.get(perf_service.base_url + "/health").status_code == 200

def test_fails(perf_service, perf_mysql):
    if os.environ.get("MAKE_IT_FAIL"):
        assert False, "the load test failed"

def test_hangs(perf_service, perf_mysql):
    if os.environ.get("HANG_AT"):
        mark("HANG_AT", str(perf_service.pid))
        time.sleep(120)

HEALTH = Scenario(Request(name="health", build=lambda ctx: ctx.get("/health")))
# With ORDER_SERVICE_FAULT=leak, each of these keeps a pooled connection forever.
UNKNOWN = {"order_id": 99999999, "payment_id": "p", "amount_cents": 1}
LEAKS = Scenario(Request(name="leaks", build=lambda ctx: ctx.post("/payments/callback",
                 json=UNKNOWN), status={404}))

def test_loads(perf_run, perf_phases, perf_service):
    # A minute of load by default (the full profile is not scaled): long
    # enough to be interrupted in the middle.
    seconds = os.environ.get("SECONDS", "60")
    if os.environ.get("MODEL") == "closed":
        phases = [perf_phases.users(4, duration=seconds + "s", think="5ms")]
    else:
        phases = [perf_phases.warmup(rate=50, duration="1s"),
                  perf_phases.constant(rate=200, duration=seconds + "s")]
    mark("LOADING", str(perf_service.pid))
    perf_run(LEAKS if os.environ.get("ORDER_SERVICE_FAULT") else HEALTH, phases)
    mark("LOADED")

def test_never_reached():
    pathlib.Path(os.environ["LOADED"] + ".next").write_text("")  # existence is all
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


def _start(
    pytester: pytest.Pytester, env: dict[str, str], *args: str, sigint_ignored: bool = False
) -> subprocess.Popen[str]:
    """The inner pytest in a process group of its own, as a terminal runs it."""
    return start_in_own_group(
        [sys.executable, "-m", "pytest", "-m", "perf", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=env,
        sigint_ignored=sigint_ignored,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not path.exists():
        proc.kill()
        pytest.fail(f"the inner run never got to {path.name}:\n{proc.communicate()[0]}")


# Ctrl-C must give the terminal back this fast, whatever was running.
EXIT_WITHIN = 5.0


def _assert_nothing_left(tmp: Path, service_pid: int) -> None:
    assert _leftovers(tmp) == []
    assert _ours(tmp) == []
    assert not psutil.pid_exists(service_pid)


def test_sigint_in_the_middle_leaves_nothing(
    pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]
) -> None:
    tmp, env = inner
    ready = tmp / "hanging"
    proc = _start(pytester, {**env, "HANG_AT": str(ready)}, "-k", "hangs")
    _wait_for(ready, proc)
    service_pid = int(ready.read_text())
    running = _ours(tmp)
    assert any(p.pid == service_pid for p in running)
    assert any("mariadbd" in p.name() or "mysqld" in p.name() for p in running)
    assert any(_leftovers(tmp))
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert seconds < EXIT_WITHIN, output
    _assert_nothing_left(tmp, service_pid)


@pytest.mark.parametrize(
    ("model", "workers", "signum", "group", "sigint_ignored"),
    [
        ("open", 1, signal.SIGINT, True, False),
        ("closed", 1, signal.SIGINT, True, False),
        ("open", 2, signal.SIGINT, True, False),
        ("closed", 2, signal.SIGINT, True, False),
        # A CI runner cancelling the job: SIGTERM to pytest alone, whose load
        # workers must be stopped by it.
        ("open", 2, signal.SIGTERM, False, False),
        # Started as a script's background job (`pytest -m perf &`), which
        # the shell starts with SIGINT ignored: Ctrl-C must still stop it.
        ("open", 1, signal.SIGINT, True, True),
    ],
)
def test_interrupt_during_a_load_stops_it_and_keeps_what_it_measured(
    pytester: pytest.Pytester,
    inner: tuple[Path, dict[str, str]],
    model: str,
    workers: int,
    signum: int,
    group: bool,
    sigint_ignored: bool,
) -> None:
    tmp, env = inner
    pytester.makefile(".toml", pyproject=PYPROJECT.replace("workers = 1", f"workers = {workers}"))
    loading, loaded = tmp / "loading", tmp / "loaded"
    env = {**env, "MODEL": model, "LOADING": str(loading), "LOADED": str(loaded)}
    proc = _start(
        pytester,
        env,
        "-k",
        "loads or never_reached",
        "--perf-profile=full",
        sigint_ignored=sigint_ignored,
    )
    _wait_for(loading, proc)
    service_pid = int(loading.read_text())
    time.sleep(2.5)  # well into the minute of load
    output, seconds = signal_and_wait(proc, signum, group=group)
    name = signal.Signals(signum).name

    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert seconds < EXIT_WITHIN, output
    assert not loaded.exists()  # the load was cut short ...
    assert not Path(str(loaded) + ".next").exists()  # ... and nothing more ran
    # The test is reported as interrupted, with what its load measured so far.
    assert "test_loads was interrupted; what its load measured until then" in output
    assert f"INTERRUPTED: interrupted by {name} after" in output
    assert "test_loads (interrupted)" in output  # its row of the summary table
    (path,) = (pytester.path / "reports" / "runs").glob("*.json")
    (entry,) = json.loads(path.read_text())["tests"]
    assert entry["outcome"] == "interrupted"
    (load,) = entry["loads"]
    assert load["generator"]["stop_reason"] == f"interrupted by {name}"
    measured = [c for c in load["cells"] if c["phase"] in ("steady", "users")]
    assert measured
    assert all(c["summary"]["requests"] > 0 for c in measured)
    ran = sum(p["duration"] for p in load["phases"])
    assert 1.0 < ran < 30.0  # seconds of the 61 planned
    # Answered, failed and abandoned add up to what was scheduled: none of
    # the requests cut off by the interrupt is counted as an error.
    for cell in measured:
        assert cell["errors"] == dict.fromkeys(cell["errors"], 0), cell["errors"]
    # The history keeps the run, but no trend point of a part of a load.
    with History(history_url(str(pytester.path / "reports" / "history.sqlite"), tmp)) as h:
        (run,) = h.runs()
        assert h.points([run.id]) == []
    _assert_nothing_left(tmp, service_pid)


def test_kill_9_mid_run_then_the_next_run_leaves_nothing(
    pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]
) -> None:
    # No finaliser runs after a kill -9. The service here starts a process of its
    # own that no death signal reaches (its parent's dies with pytest, it does not).
    tmp, env = inner
    pytester.makefile(
        ".toml",
        pyproject=PYPROJECT.replace(
            'command = "{python} -m examples.order_service --port {port}"',
            'command = ["sh", "-c", "sleep 300 & exec {python} -m examples.order_service '
            '--port {port}"]',
        ),
    )
    loading = tmp / "loading"
    proc = _start(
        pytester, {**env, "LOADING": str(loading), "LOADED": str(tmp / "x")}, "-k", "loads"
    )
    _wait_for(loading, proc)
    time.sleep(1.0)  # in the middle of the load
    proc.kill()  # pytest alone, as an OOM killer or `kill -9 <pid>` does
    proc.communicate(timeout=30)
    time.sleep(1.0)
    left = _ours(tmp)
    assert any(p.name() == "sleep" for p in left), [p.name() for p in left]
    assert any(_leftovers(tmp))
    result = _run(pytester, env, "-k", "passes")  # the next run, on the same machine
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 5
    while _ours(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(tmp) == []
    assert _ours(tmp) == []


def test_sigint_during_the_pool_check(
    pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]
) -> None:
    # The leak fault keeps connections busy: the pool check waits for idle
    # (up to its 30 s timeout) when Ctrl-C comes.
    tmp, env = inner
    loading, loaded = tmp / "loading", tmp / "loaded"
    env = {
        **env,
        "ORDER_SERVICE_FAULT": "leak",
        "SECONDS": "1",
        "LOADING": str(loading),
        "LOADED": str(loaded),
    }
    proc = _start(pytester, env, "-k", "loads", "--perf-profile=full")
    _wait_for(loaded, proc)
    service_pid = int(loading.read_text())
    time.sleep(1.0)
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert seconds < EXIT_WITHIN, output
    assert "test_loads (interrupted)" in output  # its load was complete, its check was not
    _assert_nothing_left(tmp, service_pid)


def test_sigint_at_start_up(pytester: pytest.Pytester, inner: tuple[Path, dict[str, str]]) -> None:
    # The seed step of start-up, under way (MySQL up, the service not yet).
    tmp, env = inner
    seeding = tmp / "seeding"
    pytester.makepyfile(
        seeding="import os, pathlib, time\n"
        "def hang(server):\n"
        "    pathlib.Path(os.environ['SEEDING']).write_text('')\n"
        "    time.sleep(120)\n"
    )
    pytester.makefile(
        ".toml",
        pyproject=PYPROJECT.replace(
            'mysql = "process"', 'mysql = "process"\nseed = "seeding:hang"'
        ),
    )
    proc = _start(pytester, {**env, "SEEDING": str(seeding)}, "-k", "passes")
    _wait_for(seeding, proc)
    assert any("mariadbd" in p.name() or "mysqld" in p.name() for p in _ours(tmp))
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert seconds < EXIT_WITHIN, output
    assert _leftovers(tmp) == []
    assert _ours(tmp) == []


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
