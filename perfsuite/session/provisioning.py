"""What a session starts: MySQL, the seed data, the service, their Docker network.

Starting is heavy (a server initialised, a container's image copied), so it
holds the machine-wide lock: it never runs next to another session's load.
Stopping is shielded from a second Ctrl-C, so that an impatient user does
not leave a datadir or a container behind by accident.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from perfsuite.config import PerfConfig, ServiceConfig
from perfsuite.errors import ConfigError, DockerError
from perfsuite.provision import (
    DockerStatus,
    MySQLServer,
    ProviderChoice,
    Service,
    choose_provider,
    open_mysql,
    start_service,
)
from perfsuite.session.lock import perf_lock
from perfsuite.signals import cleanup_shield, interrupted

__all__ = ["Provisioning", "started"]


@contextlib.contextmanager
def started(what: str, resource: contextlib.AbstractContextManager[Any]) -> Iterator[Any]:
    """Enter ``resource`` under the machine-wide lock; leave it shielded from Ctrl-C.

    Removing is heavy too (a container's copy of its image): under the lock,
    except after Ctrl-C, when the user must not wait for another session's
    load to end before getting the terminal back.
    """
    with perf_lock():
        value = resource.__enter__()
    try:
        yield value
    except BaseException:
        with cleanup_shield(f"stopping {what}"), _unless_interrupted(perf_lock):
            if not resource.__exit__(*sys.exc_info()):
                raise
    else:
        with cleanup_shield(f"stopping {what}"), _unless_interrupted(perf_lock):
            resource.__exit__(None, None, None)


def _unless_interrupted(
    lock: Callable[[], contextlib.AbstractContextManager[None]],
) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if interrupted() else lock()


class Provisioning:
    """MySQL and the service of one session, each started once when first asked for."""

    def __init__(self, config: PerfConfig, docker: Callable[[], DockerStatus]) -> None:
        self.config = config
        self._docker = docker
        self._choice: ProviderChoice | None = None
        self._network: Any = None  # the Docker network, while a MySQL container runs
        self.mysql_server: MySQLServer | None = None
        self.service: Service | None = None

    def choice(self) -> ProviderChoice:
        """The MySQL provider of this run, decided once (asks Docker under ``auto``)."""
        if self._choice is None:
            self._choice = choose_provider(self.config.mysql, self._docker)
        return self._choice

    @contextlib.contextmanager
    def mysql(self) -> Iterator[MySQLServer]:
        """The provisioned server with its schema; stopped when the block ends.

        A container server gets a Docker network, shared with a service
        container and removed after the server: within the fixtures'
        teardown, not at the very end of the session, where a Ctrl-C while
        the summary is written could skip it.
        """
        choice = self.choice()
        with contextlib.ExitStack() as stack:
            if choice.provider == "container":
                from perfsuite.provision.containers import docker_network

                try:
                    self._network = stack.enter_context(
                        started("the Docker network", docker_network())
                    )
                except DockerError:
                    if not choice.fallback:
                        raise
            stack.callback(setattr, self, "_network", None)
            mysql = started("MySQL", open_mysql(self.config.mysql, choice, network=self._network))
            with mysql as server:
                self.mysql_server = server
                try:
                    yield server
                finally:
                    self.mysql_server = None

    def seed(self, server: MySQLServer) -> None:
        """Run the ``seed = "module:function"`` callable of the config, if any."""
        if self.config.mysql.seed is None:
            return
        module_name, _, attr = self.config.mysql.seed.partition(":")
        root = str(self.config.rootdir)
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"[tool.perfsuite] seed: cannot import {self.config.mysql.seed!r}: {exc}"
            ) from exc
        with perf_lock():  # thousands of inserts: not next to a load
            func(server)

    def service_config(self) -> ServiceConfig:
        """``[tool.perfsuite.service]``, or a clear error when there is none."""
        if self.config.service is None:
            raise ConfigError(
                "no service configured: add [tool.perfsuite.service] with a command, "
                "an image or a url"
            )
        return self.config.service

    @contextlib.contextmanager
    def start_service(
        self,
        server: MySQLServer,
        *,
        config: ServiceConfig | None = None,
        what: str = "the service",
        track: bool = True,
    ) -> Iterator[Service]:
        """The service under test, healthy; stopped when the block ends.

        ``config``: another build's (A/B); ``track``: the session's service
        (whose pool, resources and logs the test's report watches).
        """
        cfg = (config or self.service_config()).for_mysql(server.provider)
        network = None
        if cfg.kind == "container":
            if server.provider not in ("container", "url"):
                raise ConfigError(
                    "[tool.perfsuite.service] image: a service container needs MySQL in a "
                    f"container too (--perf-mysql=container), not {server.provider!r}"
                )
            network = self._network if server.provider == "container" else None
        with started(what, start_service(cfg, server, network=network)) as service:
            if not track:
                yield service
                return
            self.service = service
            try:
                yield service
            finally:
                self.service = None

    def service_log_tail(self, lines: int = 50) -> str | None:
        """The service's last log lines, for the report of a failing test."""
        if self.service is None:
            return None
        return self.service.logs(lines) or None
