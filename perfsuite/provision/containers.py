"""The ``container`` provider: MySQL and the service through testcontainers.

Both containers join one Docker network; the service reaches MySQL by the
alias ``mysql``, and perfsuite reaches both only through ports published on
the engine's host. This path is exercised for real against a Docker engine by
the container issue; here it is written against the real testcontainers API.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from perfsuite.config import MySQLConfig, ServiceConfig
from perfsuite.errors import DockerError
from perfsuite.provision.server import MySQLServer

__all__ = ["MYSQL_ALIAS", "container_host", "docker_network", "mysql_container"]

MYSQL_ALIAS = "mysql"
APP_USER = "perfsuite"
APP_PASSWORD = "perfsuite"
ROOT_PASSWORD = "perfsuite-root"


def container_host(container: Any) -> str:
    """Where published ports are reached; loopback for a local engine.

    On a machine that is itself a container (``/.dockerenv``) testcontainers
    answers with the bridge gateway (172.x); a local engine publishes on all
    interfaces, so loopback reaches it and keeps load traffic on this machine.
    """
    if os.environ.get("TESTCONTAINERS_HOST_OVERRIDE"):
        return os.environ["TESTCONTAINERS_HOST_OVERRIDE"]
    docker_host = os.environ.get("DOCKER_HOST", "unix://")
    if docker_host.startswith("unix://"):
        return "127.0.0.1"
    host: str = container.get_container_host_ip()
    return host


def _docker_error(what: str, exc: BaseException) -> DockerError:
    return DockerError(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")


@contextlib.contextmanager
def docker_network() -> Iterator[Any]:
    """A fresh Docker network, removed at the end."""
    from testcontainers.core.network import Network

    try:
        network = Network().create()
    except Exception as exc:  # the docker SDK raises many types; translate them all here
        raise _docker_error("cannot create a Docker network", exc) from exc
    try:
        yield network
    finally:
        with contextlib.suppress(Exception):
            network.remove()


@contextlib.contextmanager
def mysql_container(config: MySQLConfig, network: Any) -> Iterator[MySQLServer]:
    """Start ``config.image`` with the official image's environment contract."""
    try:
        from testcontainers.community.mysql import MySqlContainer
    except ImportError:  # testcontainers < 4.13 keeps it at the old place
        from testcontainers.mysql import MySqlContainer

    container = (
        MySqlContainer(
            config.image,
            username=APP_USER,
            password=APP_PASSWORD,
            root_password=ROOT_PASSWORD,
            dbname=config.database,
        )
        .with_network(network)
        .with_network_aliases(MYSQL_ALIAS)
    )
    try:
        container.start()
    except Exception as exc:  # docker/testcontainers errors, translated at this boundary
        with contextlib.suppress(Exception):
            container.stop()
        raise _docker_error(f"cannot start the MySQL container {config.image}", exc) from exc
    try:
        yield MySQLServer(
            provider="container",
            host=container_host(container),
            port=int(container.get_exposed_port(3306)),
            user=APP_USER,
            password=APP_PASSWORD,
            database=config.database,
            admin_user="root",
            admin_password=ROOT_PASSWORD,
            internal_host=MYSQL_ALIAS,
            internal_port=3306,
        )
    finally:
        with contextlib.suppress(Exception):
            container.stop()


def service_container(config: ServiceConfig, env: dict[str, str], network: Any | None) -> Any:
    """A testcontainers ``DockerContainer`` for the service, not yet started."""
    from testcontainers.core.container import DockerContainer

    assert config.image is not None
    container = DockerContainer(config.image).with_exposed_ports(config.port)
    for key, value in env.items():
        container = container.with_env(key, value)
    if network is not None:
        container = container.with_network(network).with_network_aliases("service")
    return container
