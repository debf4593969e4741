"""The service under test: a local command, a container, or a running URL.

Whatever its kind, it is ready when its health path answers 2xx; until then
perfsuite waits, and when it exits or times out the error carries its last
log lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from perfsuite.config import ServiceConfig
from perfsuite.errors import ConfigError, DockerError, ServiceError
from perfsuite.provision._proc import (
    free_port,
    owned_tempdir,
    start_process,
    stop_and_remove,
    tail,
)
from perfsuite.provision.ownership import owner_mark
from perfsuite.provision.server import MySQLServer
from perfsuite.secrets import redact
from perfsuite.signals import note_interrupt

__all__ = ["SERVICE_DIR_PREFIX", "Service", "start_service"]

SERVICE_DIR_PREFIX = "perfsuite-service-"
_LOG_LINES = 30


@dataclass(kw_only=True)
class Service:
    """A running service under test.

    ``base_url`` is where to send requests; ``logs()`` returns what it printed;
    ``process`` is the local process (command kind) and ``container`` the
    testcontainers handle (container kind), else ``None``.
    """

    kind: str
    base_url: str
    process: subprocess.Popen[bytes] | None = None
    container: Any = None
    _read_logs: Callable[[], str] = field(default=lambda: "", repr=False)

    def __repr__(self) -> str:
        return f"<Service {self.kind} {self.base_url}>"

    @property
    def pid(self) -> int | None:
        """The local process id, for resource sampling; ``None`` for other kinds."""
        return self.process.pid if self.process is not None else None

    def host_pid(self) -> int | None:
        """The process id on this host of the service's main process: the local process,
        or a container's (its engine on this machine); ``None`` when there is none."""
        if self.process is not None:
            return self.process.pid
        if self.container is None:
            return None
        from docker.errors import DockerException  # with the container kind only

        try:
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            pid = int(wrapped.attrs["State"]["Pid"])
        except (DockerException, OSError, KeyError, TypeError, ValueError):
            return None  # the engine is gone, or says nothing of a process
        return pid if pid > 0 and Path(f"/proc/{pid}").exists() else None

    def logs(self, lines: int | None = None) -> str:
        """Everything the service printed so far (or its last ``lines`` lines), passwords masked."""
        text = redact(self._read_logs())
        return "\n".join(text.splitlines()[-lines:]) if lines else text


def _expand(arg: str, values: Mapping[str, str], *, where: str = "command") -> str:
    if where == "command" and ("{mysql_url}" in arg or "{mysql_replica_url}" in arg):
        raise ConfigError(
            "[tool.perfsuite.service] command: {mysql_url} would put the database password "
            "in the process list (ps shows every argument to every local user); read the "
            "URL from the environment instead: PERFSUITE_MYSQL_URL is set for the service "
            "(or name your own variable in [tool.perfsuite.service] env, e.g. "
            'DATABASE_URL = "{mysql_url}"); {mysql_host}, {mysql_port}, {mysql_user} '
            "and {mysql_database} may stay in the command"
        )
    try:
        return string.Formatter().vformat(arg, (), dict(values))
    except (KeyError, IndexError) as exc:
        raise ConfigError(
            f"[tool.perfsuite.service] {where}: unknown placeholder {exc} in {arg!r} "
            f"(known: {', '.join('{' + k + '}' for k in values)})"
        ) from exc


def _listener(port: int) -> int | None:
    """The pid listening on 127.0.0.1:``port`` (None: nobody, or not ours to see)."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    except psutil.Error:
        pass
    return None


def _owned_by(proc: subprocess.Popen[bytes], port: int) -> Callable[[], str | None]:
    """A check that ``port`` is the service's (its process or a child of it listens):
    None when it is, else who does."""

    def check() -> str | None:
        pid = _listener(port)
        if pid is None:
            return None  # cannot tell (another user's socket): the answer is taken
        try:
            family = {proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(True))}
        except psutil.Error:
            return None
        if pid in family:
            return None
        try:
            name = " ".join(psutil.Process(pid).cmdline())[:80]
        except psutil.Error:
            name = "?"
        return f"answered by another process on port {port} (pid {pid}: {name}), not the service"

    return check


def _wait_healthy(
    url: str,
    timeout: float,
    *,
    exited: Callable[[], int | None],
    logs: Callable[[], str],
    foreign: Callable[[], str | None] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            code = exited()
            if code is not None:
                raise ServiceError(
                    f"the service exited with code {code} during start-up; "
                    f"its last log lines:\n{redact(logs())}"
                )
            try:
                response = client.get(url)
                other = foreign() if 200 <= response.status_code < 300 else None
                if 200 <= response.status_code < 300 and other is None:
                    return
                last = other or f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"the service did not become healthy at {url} within {timeout:g} s "
                    f"(last answer: {last}); its last log lines:\n{redact(logs())}"
                )
            time.sleep(0.1)


def _replica_values(mysql: MySQLServer) -> dict[str, str]:
    """The first replica's placeholders, when the server has replicas."""
    if not mysql.replicas:
        return {}
    first = mysql.replicas[0]
    return {"mysql_replica_url": first.url, "mysql_replica_port": str(first.port)}


@contextlib.contextmanager
def _command_service(config: ServiceConfig, mysql: MySQLServer) -> Iterator[Service]:
    port = free_port()
    values = {
        "port": str(port),
        "host": "127.0.0.1",
        "mysql_url": mysql.url,
        "mysql_host": mysql.host,
        "mysql_port": str(mysql.port),
        "mysql_user": mysql.user,
        "mysql_database": mysql.database,
        "python": sys.executable,
        **_replica_values(mysql),
    }
    argv = [_expand(arg, values) for arg in config.command]
    if shutil.which(argv[0], path=os.environ.get("PATH")) is None and not Path(argv[0]).exists():
        raise ServiceError(f"the service command {argv[0]!r} was not found")
    env = {**os.environ, **{k: _expand(v, values, where="env") for k, v in config.env.items()}}
    env.setdefault("PERFSUITE_MYSQL_URL", mysql.url)
    if mysql.replicas:
        env.setdefault("PERFSUITE_MYSQL_REPLICA_URL", mysql.replicas[0].url)
        env.setdefault("PERFSUITE_MYSQL_REPLICA_URLS", " ".join(r.url for r in mysql.replicas))
    workdir = owned_tempdir(SERVICE_DIR_PREFIX)
    log_path = workdir / "service.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        try:
            proc = start_process(argv, log_path=log_path, env=env, cwd=config.cwd)
        except OSError as exc:
            raise ServiceError(f"cannot start the service {argv!r}: {exc}") from exc
        base_url = f"http://127.0.0.1:{port}"

        def read_logs() -> str:
            return log_path.read_text(encoding="utf-8", errors="replace")

        _wait_healthy(
            base_url + config.health,
            config.startup_timeout,
            exited=proc.poll,
            logs=lambda: tail(log_path, _LOG_LINES),
            foreign=_owned_by(proc, port),
        )
        yield Service(kind="command", base_url=base_url, process=proc, _read_logs=read_logs)
    except KeyboardInterrupt:
        note_interrupt()  # the user wants out: a short grace for the service to stop
        raise
    finally:
        stop_and_remove(proc, workdir)


@contextlib.contextmanager
def _container_service(
    config: ServiceConfig, mysql: MySQLServer, network: Any | None
) -> Iterator[Service]:
    passed = {name: os.environ[name] for name in config.pass_env if name in os.environ}
    env = {"PERFSUITE_MYSQL_URL": mysql.internal_url, **passed, **config.env}
    if mysql.replicas:  # as the container network reaches them
        env.setdefault("PERFSUITE_MYSQL_REPLICA_URL", mysql.replicas[0].internal_url)
        env.setdefault(
            "PERFSUITE_MYSQL_REPLICA_URLS", " ".join(r.internal_url for r in mysql.replicas)
        )
    with owner_mark():  # while it runs, its label names a live run
        yield from _run_container(config, env, network)


def _run_container(
    config: ServiceConfig, env: dict[str, str], network: Any | None
) -> Iterator[Service]:
    from perfsuite.provision.containers import container_host, service_container

    container = service_container(config, env, network)
    try:
        container.start()
    except BaseException as exc:  # Ctrl-C in the wait too: the container runs already
        with contextlib.suppress(Exception):
            container.stop()
        if not isinstance(exc, Exception):
            raise
        raise DockerError(f"cannot start the service container {config.image}: {exc}") from exc

    def read_logs() -> str:
        out, err = container.get_logs()
        return str((out + err).decode("utf-8", errors="replace"))

    def exited() -> int | None:
        container.reload()
        if container.status in ("exited", "dead"):
            return int(container.get_wrapped_container().attrs["State"]["ExitCode"])
        return None

    try:
        base_url = f"http://{container_host(container)}:{container.get_exposed_port(config.port)}"
        _wait_healthy(
            base_url + config.health,
            config.startup_timeout,
            exited=exited,
            logs=lambda: "\n".join(read_logs().splitlines()[-_LOG_LINES:]),
        )
        yield Service(
            kind="container", base_url=base_url, container=container, _read_logs=read_logs
        )
    finally:
        with contextlib.suppress(Exception):
            container.stop()


@contextlib.contextmanager
def _url_service(config: ServiceConfig) -> Iterator[Service]:
    assert config.url is not None
    _wait_healthy(
        config.url + config.health,
        config.startup_timeout,
        exited=lambda: None,
        logs=lambda: "(a service given by URL: its logs are not available)",
    )
    yield Service(kind="url", base_url=config.url)


def start_service(
    config: ServiceConfig, mysql: MySQLServer, *, network: Any | None = None
) -> contextlib.AbstractContextManager[Service]:
    """Start (or find) the service and wait until it is healthy."""
    if config.kind == "command":
        return _command_service(config, mysql)
    if config.kind == "container":
        return _container_service(config, mysql, network)
    return _url_service(config)
