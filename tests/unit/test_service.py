"""The service provider with real processes: health, start-up failures, logs."""

from __future__ import annotations

import http.server
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from perfsuite.config import ServiceConfig
from perfsuite.errors import ConfigError, ServiceError
from perfsuite.provision import MySQLServer, start_service
from perfsuite.provision import service as service_module
from perfsuite.provision.service import SERVICE_DIR_PREFIX

from .conftest import REPO, ServiceFactory

# Each test starts a service: not next to a load.
pytestmark = pytest.mark.usefixtures("quiet")


def _config(*command: str, timeout: float = 5.0, **env: str) -> ServiceConfig:
    return ServiceConfig(
        kind="command", command=command, env=env, startup_timeout=timeout, cwd=REPO
    )


def test_command_service_is_healthy_then_stopped(order_service_factory: ServiceFactory) -> None:
    with order_service_factory() as service:
        assert service.kind == "command"
        assert service.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(service.base_url + "/health").json() == {"status": "ok"}
        pid = service.pid
        assert pid is not None
        assert "order_service: faults=" in service.logs()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_service_that_exits_at_start(mariadb: MySQLServer) -> None:
    script = "import sys; print('cannot bind the frobnicator'); sys.exit(3)"
    with (
        pytest.raises(ServiceError) as info,
        start_service(_config(sys.executable, "-c", script), mariadb),
    ):
        pass
    message = str(info.value)
    assert message.startswith("the service exited with code 3 during start-up")
    assert "cannot bind the frobnicator" in message


def test_service_that_never_becomes_healthy(mariadb: MySQLServer) -> None:
    # Listens on its port but answers 503 forever.
    script = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(503); self.end_headers()\n"
        "print('warming up forever', flush=True)\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    start = time.monotonic()
    with (
        pytest.raises(ServiceError) as info,
        start_service(_config(sys.executable, "-c", script, "{port}", timeout=1.5), mariadb),
    ):
        pass
    assert time.monotonic() - start < 20  # bounded by the timeout, not hanging
    message = str(info.value)
    assert "did not become healthy" in message
    assert "within 1.5 s (last answer: HTTP 503)" in message
    assert "warming up forever" in message


def test_unknown_placeholder(mariadb: MySQLServer) -> None:
    with (
        pytest.raises(ConfigError, match=r"unknown placeholder 'prot'"),
        start_service(_config("app", "--port", "{prot}"), mariadb),
    ):
        pass


def test_missing_command(mariadb: MySQLServer) -> None:
    with (
        pytest.raises(ServiceError, match="'no-such-service-binary' was not found"),
        start_service(_config("no-such-service-binary"), mariadb),
    ):
        pass


def test_env_and_placeholders_reach_the_service(mariadb: MySQLServer) -> None:
    script = (
        "import http.server, os, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = (os.environ['GREETING'] + ' ' + sys.argv[2] + ' '\n"
        "                + os.environ['PERFSUITE_MYSQL_URL']).encode()\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    config = _config(
        sys.executable, "-c", script, "{port}", "{mysql_user}@{mysql_port}", GREETING="hello"
    )
    with start_service(config, mariadb) as service:
        answer = httpx.get(service.base_url + "/").text
        assert answer == f"hello {mariadb.user}@{mariadb.port} {mariadb.url}"
        # The password is in the service's environment, never in its argv (ps shows argv).
        assert service.process is not None
        assert mariadb.password not in " ".join(psutil.Process(service.process.pid).cmdline())


def test_the_mysql_url_is_refused_in_the_command(mariadb: MySQLServer) -> None:
    config = _config(sys.executable, "-c", "pass", "{mysql_url}")
    with pytest.raises(ConfigError, match="would put the database password in the process list"):
        start_service(config, mariadb).__enter__()


def test_the_folder_of_a_killed_run_is_removed_by_the_next(
    order_service_factory: ServiceFactory,
) -> None:
    # A run killed outright (SIGKILL) leaves its service's folder; its owner is gone.
    stale = Path(tempfile.mkdtemp(prefix=SERVICE_DIR_PREFIX))
    dead = psutil.Popen(["true"])
    dead.wait()
    (stale / "owner.pid").write_text(str(dead.pid))
    alive = Path(tempfile.mkdtemp(prefix=SERVICE_DIR_PREFIX))
    (alive / "owner.pid").write_text(str(os.getpid()))  # another run, still going
    try:
        with order_service_factory():
            assert not stale.exists()
            assert alive.exists()
    finally:
        shutil.rmtree(alive, ignore_errors=True)


def test_another_server_on_the_chosen_port_is_not_taken_for_the_service(
    mariadb: MySQLServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race: the port was free when chosen, and another server took it before the
    # service bound it. Its 200 on the health path must not pass for the service's.
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(service_module, "free_port", lambda: other.server_address[1])
        never_binds = _config(sys.executable, "-c", "import time; time.sleep(60)", timeout=2.0)
        with (
            pytest.raises(ServiceError, match="answered by another process on port"),
            start_service(never_binds, mariadb),
        ):
            pass
    finally:
        other.shutdown()
        other.server_close()
