"""Provisioning: the MySQL server (process | container | url) and the service.

``choose_provider`` decides, ``open_mysql`` starts the chosen server and loads
the schema, ``start_service`` starts the service under test. All of them are
context managers that stop and delete what they started.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pymysql

from perfsuite.config import MySQLConfig
from perfsuite.errors import DockerError, MySQLError, PerfsuiteWarning
from perfsuite.provision.docker import DockerStatus, probe_docker
from perfsuite.provision.server import MySQLServer, quote_name
from perfsuite.provision.service import Service, start_service

__all__ = [
    "DockerStatus",
    "MySQLServer",
    "ProviderChoice",
    "Service",
    "choose_provider",
    "open_mysql",
    "probe_docker",
    "start_service",
]


@dataclass(frozen=True, kw_only=True)
class ProviderChoice:
    """Which MySQL provider a run uses, and why (shown in the session header)."""

    provider: str
    reason: str
    fallback: bool = False  # under ``auto``: may fall back to ``process`` if a container fails


def choose_provider(config: MySQLConfig, docker: Callable[[], DockerStatus]) -> ProviderChoice:
    """Resolve ``auto``: a container when a Docker engine answers, else a local process."""
    if config.provider == "url":
        return ProviderChoice(provider="url", reason="a mysql:// URL was given")
    if config.provider != "auto":
        return ProviderChoice(provider=config.provider, reason="chosen explicitly")
    if config.replication.replicas:
        # Containers start replicas of MariaDB images only, and the default image is
        # MySQL's: under auto, replicas are local MariaDB processes.
        return ProviderChoice(provider="process", reason="auto: replicas run as local processes")
    status = docker()
    if status.available:
        return ProviderChoice(provider="container", reason=f"auto: {status.reason}", fallback=True)
    return ProviderChoice(provider="process", reason=f"auto: {status.reason}")


def _given_replicas(server: MySQLServer, config: MySQLConfig) -> MySQLServer:
    """The server with the replicas its config names, each checked to be replicating."""
    from perfsuite.provision.replication import wait_running

    replicas = tuple(MySQLServer.from_url(url) for url in config.replication.urls)
    for index, replica in enumerate(replicas, 1):
        if replica.database != server.database:
            raise MySQLError(
                f"replica {index} names the database {replica.database!r}, the primary "
                f"{server.database!r}: a replica holds the primary's databases"
            )
        wait_running(replica, index, timeout=10)
    return replace(server, replicas=replicas)


@contextlib.contextmanager
def _server(config: MySQLConfig, choice: ProviderChoice, network: Any) -> Iterator[MySQLServer]:
    if choice.provider == "url":
        assert config.url is not None
        server = MySQLServer.from_url(config.url)
        # Fail early, in the server's own words; create the database if it is missing.
        conn = server.connect(database="")
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_name(server.database)}")
        except pymysql.MySQLError as exc:
            raise MySQLError(f"cannot create the database {server.database!r}: {exc}") from exc
        finally:
            conn.close()
        yield _given_replicas(server, config)
        return
    if choice.provider == "container":
        from perfsuite.provision.containers import mysql_container

        if network is None:
            raise DockerError("the container provider needs a Docker network")
        with mysql_container(config, network) as server:
            yield server
        return
    from perfsuite.provision.mysql_process import mysql_process

    with mysql_process(config) as server:
        yield server


@contextlib.contextmanager
def open_mysql(
    config: MySQLConfig, choice: ProviderChoice, *, network: Any = None
) -> Iterator[MySQLServer]:
    """Start (or reach) the server, load the configured SQL files, stop it at the end."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(_server(config, choice, network))
        except DockerError as exc:
            if not choice.fallback:
                raise
            # auto found an engine but could not use it (no image, no registry):
            # a local server still gives a valid run; say so instead of failing.
            warnings.warn(
                f"perfsuite: falling back to a local MySQL process: {exc}",
                PerfsuiteWarning,
                stacklevel=2,
            )
            from perfsuite.provision.mysql_process import mysql_process

            server = stack.enter_context(mysql_process(config))
        for path in config.sql_files:
            server.run_sql_file(path)
        yield server
