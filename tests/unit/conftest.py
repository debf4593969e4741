"""Real parts for the unit tests: a throwaway MariaDB and the example service."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpcore
import httpx
import pytest
import trustme

from examples.order_service.seed import Dataset, generate, load
from perfsuite.config import MySQLConfig, ServiceConfig
from perfsuite.provision import MySQLServer, Service, start_service
from perfsuite.provision.mysql_process import mysql_process
from perfsuite.session import perf_lock

REPO = Path(__file__).resolve().parents[2]
# Tests share the machine with the other xdist worker's, except exclusive ones.
_SUITE_LOCK = Path(tempfile.gettempdir()) / "perfsuite-tests.lock"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exclusive: the test asserts what any neighbour moves (latency, exit times): it "
        "runs alone on the machine, the other pytest-xdist worker waits",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    # A readers-writer lock over whole tests (their fixtures' set-up and
    # teardown included): shared by ordinary tests, exclusive for the few whose
    # numbers a neighbour on the other core would move. The perf lock is not
    # enough for those: it keeps loads apart, not a neighbour's Python start-up.
    exclusive = item.get_closest_marker("exclusive") is not None
    fd = os.open(_SUITE_LOCK, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        return (yield)
    finally:
        os.close(fd)


SCHEMA = REPO / "examples" / "order_service" / "schema.sql"
# A project of the example order service on the throwaway MariaDB; its service
# table comes last, so that a test may add keys to it.
ORDER_PROJECT = f"""
[tool.perfsuite]
mysql = "process"
database = "orders"
sql = ["{SCHEMA}"]

[tool.perfsuite.service]
command = "{{python}} -m examples.order_service --port {{port}}"
cwd = "{REPO}"
health = "/health"
startup_timeout = "30s"
"""
ORDER_SERVICE = (
    "{python}",
    "-m",
    "examples.order_service",
    "--port",
    "{port}",
)


_WHY = re.compile(r"FAILED|ERROR|Error|regressed|saturated|not believed|machine:|^E ")


def assert_passed(result: pytest.RunResult, passed: int = 1) -> None:
    """``result.assert_outcomes(passed=...)``, whose failure says why the inner run
    failed in its first line: CI's log of a long failure is cut after its start."""
    outcomes = result.parseoutcomes()
    if outcomes.get("passed", 0) == passed and set(outcomes) <= {"passed", "warnings"}:
        return
    why = [line.strip() for line in result.outlines if _WHY.search(line)]
    said = " | ".join(why[-12:])
    raise AssertionError(f"inner run {outcomes}, expected {passed} passed: {said}")


def debian_binary(name: str, why: str) -> str:
    """A program from a Debian package: a skip that gives the install command, but a
    failure in CI (.ci/run installs it)."""
    binary = shutil.which(name)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs Debian's {name})")
        pytest.skip(f"{name} is not installed: apt-get install {name} ({why})")
    return binary


def admin_url(server: MySQLServer, database: str) -> str:
    """``mysql://`` of the server's admin account (random password, quoted) on ``database``."""
    user, password = quote(server.admin_user, safe=""), quote(server.admin_password, safe="")
    return f"mysql://{user}:{password}@{server.host}:{server.port}/{database}"


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MySQLServer]:
    """A throwaway MariaDB started by perfsuite's own process provider."""
    with contextlib.ExitStack() as stack:
        with quiet_machine():  # initialising a datadir is heavy
            server = stack.enter_context(mysql_process(MySQLConfig(database="orders")))
        yield server


@pytest.fixture(scope="session")
def order_data(mariadb: MySQLServer) -> Dataset:
    """The order schema with a small seeded data set."""
    mariadb.run_sql_file(SCHEMA)
    data = generate(users=200, skus=50, orders=100, seed=7)
    load(mariadb, data)
    return data


ServiceFactory = Callable[..., AbstractContextManager[Service]]


@pytest.fixture
def order_service_factory(mariadb: MySQLServer, order_data: Dataset) -> ServiceFactory:
    """Start the example service with the given environment (fault switches, pool size)."""

    @contextlib.contextmanager
    def start(**env: str) -> Iterator[Service]:
        config = ServiceConfig(
            kind="command", command=ORDER_SERVICE, cwd=REPO, env=env, startup_timeout=30.0
        )
        with contextlib.ExitStack() as stack:
            with quiet_machine():  # a Python service's start-up takes a core for a second
                service = stack.enter_context(start_service(config, mariadb))
            yield service

    return start


@contextlib.contextmanager
def quiet_machine() -> Iterator[None]:
    """Hold the machine-wide perf lock during a heavy step of a unit test.

    Under ``pytest -n 2`` the other worker may be running a perf test, whose
    verdicts a neighbour burning a core or the disk would distort (the gate's
    tests judge 2-second loads). Never hold it around a perf run in another
    process: that run takes it too, and would wait for ever.
    """
    with perf_lock():
        yield


@pytest.fixture
def quiet() -> Iterator[None]:
    """The test measures time, or is heavy: nothing else heavy runs meanwhile.

    For tests that start no perf session in another process (see quiet_machine).
    """
    with perf_lock():
        yield


def descendants_with(marker: str) -> list[int]:
    """Pids of processes whose command line mentions ``marker`` (leak checks)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.info["pid"] != os.getpid():
            found.append(proc.info["pid"])
    return found


def start_in_own_group(
    argv: list[str], *, cwd: Path, env: dict[str, str], sigint_ignored: bool = False
) -> subprocess.Popen[str]:
    """``argv`` in a process group of its own, output piped.

    SIGINT is as a terminal's foreground job has it (default), whatever this
    test process inherited; or ignored, as a shell script's background job
    (``pytest -m perf &``) gets it. A pytest run there goes without
    hypothesis's plugin (installed on these machines, used by nothing here):
    it imports hypothesis when the summary is written, 1.5 to 2 s of the exit
    times these runs measure, none of it perfsuite's.
    """
    addopts = f"{env.get('PYTEST_ADDOPTS', '')} -p no:hypothesispytest".strip()
    env = {**env, "PYTEST_ADDOPTS": addopts}

    def set_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else signal.SIG_DFL)

    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=set_sigint,
    )


def signal_and_wait(
    proc: subprocess.Popen[str], signum: int, *, group: bool, timeout: float = 60
) -> tuple[str, float]:
    """Send ``signum`` (to the group, as a terminal sends Ctrl-C); output and seconds to exit.

    The output closes when the last process holding it (pytest, its load
    workers) is gone; whatever is left after ``timeout`` is killed.
    """
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return output, time.monotonic() - sent


SERVER = Path(__file__).with_name("loadserver.py")


class Server:
    """tests/unit/loadserver.py in a subprocess on a free loopback port.

    ``pem`` (a certificate chain and key) makes it an HTTPS server, whose
    ``ca`` is then the file that verifies it.
    """

    def __init__(self, pem: Path | None = None, ca: Path | None = None) -> None:
        tls = ["--tls", str(pem)] if pem else []
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), *tls], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split()[1])
        scheme = "https" if pem else "http"
        self.url = f"{scheme}://{'localhost' if pem else '127.0.0.1'}:{self.port}"
        self.ca = ca
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca)) if ca else True
        )

    def _get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, verify=self._verify)

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/stats").json())

    def reset(self) -> None:
        self._get("/reset")

    def arrivals(self) -> list[float]:
        """When the server saw each request since the reset (monotonic seconds)."""
        return list(self._get("/arrivals").json())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A local HTTP server for load tests (tests/unit/loadserver.py), one per module."""
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same server over HTTPS, at https://localhost:PORT, with a certificate for
    localhost signed by a CA made here (trustme): ``server.ca`` verifies it."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    pem, ca_file = folder / "server.pem", folder / "ca.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca.cert_pem.write_to_path(str(ca_file))
    srv = Server(pem, ca_file)
    yield srv
    srv.stop()


@pytest.fixture
def target_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner pytest runs find the server in $TARGET, and no Docker engine."""
    monkeypatch.setenv("TARGET", server.url)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def html_report(folder: Path, env: dict[str, str] | None = None) -> str:
    """``perfsuite report`` of the run records under ``folder``: the page it wrote."""
    report = subprocess.run(
        ["perfsuite", "report", "--out", str(folder / "index.html")],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    return (folder / "index.html").read_text()


def run_example_suite(
    *args: str,
    select: str,
    reports: Path,
    fault: str = "",
    profile: str = "smoke",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The project's own perf suite (tests/perf, ``-k select``) in a subprocess.

    Its run records and history go to ``reports`` (not the project's own).
    """
    env = {
        **os.environ,
        "ORDER_SERVICE_FAULT": fault,
        "DOCKER_HOST": "unix:///nonexistent.sock",
        **(env or {}),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/perf",
            "-m",
            "perf",
            "-k",
            select,
            f"--perf-profile={profile}",
            "-p",
            "no:cacheprovider",
            "-rA",
            f"--perf-reports-dir={reports}",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def free_port() -> int:
    """A port nothing listens on now (for a server that must be told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def prometheus_server(binary: str, folder: Path, target: str) -> Iterator[str]:
    """Debian's Prometheus scraping ``target`` (host:port) once a second; its URL."""
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
        f"scrape_configs:\n  - job_name: agree\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"prometheus exited: {proc.stderr.read()[-2000:]!r}"  # type: ignore[union-attr]
            # Not up yet: refused (httpx lets httpcore's error through now and then).
            with contextlib.suppress(httpx.HTTPError, httpcore.NetworkError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def prometheus_api(url: str, path: str, **params: Any) -> Any:
    """The ``data`` of a Prometheus HTTP API answer (which must be a success)."""
    response = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=10)
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
)


@contextlib.contextmanager
def chromium(binary: str, user_dir: Path) -> Iterator[str]:
    """Debian's Chromium, headless, with the DevTools endpoint it announces."""
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={user_dir}",
         "about:blank"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        endpoint = None
        while endpoint is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            endpoint = match.group(1) if match else None
        assert endpoint, f"chromium did not start (exit {proc.poll()})"
        yield endpoint
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
