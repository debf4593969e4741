"""The ``container`` provider: MySQL and the service through testcontainers.

Both containers join one Docker network; the service reaches MySQL by the
alias ``mysql``, and perfsuite reaches both only through ports published on
127.0.0.1 of the engine's host. An image that is not on the engine is pulled
first; when that fails the error says so (perfsuite's own images are built
by ``container/images.sh``). testcontainers' Ryuk reaper is kept unless
``TESTCONTAINERS_RYUK_DISABLED=true``: perfsuite removes what it started in
any case. After a ``kill -9`` Ryuk removes them; without Ryuk, the next run
does: every container and network carries its run's owner token as the
label ``perfsuite.owner``, and those of a run that is gone are removed
(:func:`perfsuite.provision.ownership.owner_alive`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from perfsuite.config import MySQLConfig, ServiceConfig
from perfsuite.errors import DockerError, MySQLError
from perfsuite.provision.ownership import owner_alive, owner_mark, owner_token
from perfsuite.provision.replication import primary_argv, replica_argv, start_replication
from perfsuite.provision.server import SERVER_OPTIONS, MySQLServer
from perfsuite.secrets import redact, register

__all__ = [
    "MYSQL_ALIAS",
    "container_host",
    "docker_network",
    "ensure_image",
    "mysql_container",
    "service_container",
]

MYSQL_ALIAS = "mysql"
# The official images' datadir: a primary's binary log and a replica's relay log go there.
_DATADIR = PurePosixPath("/var/lib/mysql")
APP_USER = "perfsuite"
OWNER_LABEL = "perfsuite.owner"
# Only this machine can tell whether a run of its own is alive: an engine shared by
# several machines keeps the others' containers.
HOST_LABEL = "perfsuite.host"
_swept = False


def sweep_containers() -> None:
    """Remove the containers and networks of runs killed outright (once a run).

    Best effort: another run's leftovers never stop this one.
    """
    global _swept
    if _swept:
        return
    _swept = True
    try:
        import docker

        client = docker.from_env()
    except Exception:  # no engine, no SDK: nothing to sweep here
        return
    try:
        label = {"label": [OWNER_LABEL, f"{HOST_LABEL}={socket.gethostname()}"]}
        for container in client.containers.list(all=True, filters=label):
            if not owner_alive(container.labels.get(OWNER_LABEL, "")):
                with contextlib.suppress(Exception):
                    container.remove(force=True, v=True)
        for network in client.networks.list(filters=label):
            if not owner_alive((network.attrs.get("Labels") or {}).get(OWNER_LABEL, "")):
                with contextlib.suppress(Exception):
                    network.remove()
    except Exception:  # the docker SDK raises many types: a sweep never fails a run
        pass
    finally:
        client.close()


def _owned(container: Any) -> Any:
    """``container`` labelled with this run's owner token."""
    return container.with_kwargs(labels=_labels(owner_token()))


def _labels(token: str) -> dict[str, str]:
    return {OWNER_LABEL: token, HOST_LABEL: socket.gethostname()}


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
    text = str(exc)
    if "ryuk" in text.lower():
        return DockerError(
            f"{what}: testcontainers' reaper image (Ryuk) is not on the engine and could not "
            f"be pulled; pull testcontainers/ryuk, or set TESTCONTAINERS_RYUK_DISABLED=true "
            f"(perfsuite removes its containers itself; Ryuk also cleans up after a kill -9)"
        )
    first = text.splitlines()[0][:300] if text else ""
    return DockerError(f"{what}: {type(exc).__name__}: {first}")


def _local_ports(container: Any, *ports: int) -> Any:
    """Publish ``ports`` on 127.0.0.1 only (a random host port each): the database and
    the service are not for the network, and load stays on loopback."""
    for port in ports:
        container.ports[str(port)] = ("127.0.0.1",)  # docker SDK: (host ip,) = any port
    return container


def ensure_image(image: str) -> None:
    """Pull ``image`` unless the engine has it; a clear error when neither works."""
    from docker.errors import ImageNotFound
    from testcontainers.core.docker_client import DockerClient

    try:
        client = DockerClient().client
        client.images.get(image)
        return
    except ImageNotFound:
        pass
    except Exception as exc:  # the engine went away since the probe: translated here
        raise _docker_error(f"cannot look up the image {image}", exc) from exc
    try:
        client.images.pull(image)
    except Exception as exc:  # no registry, no such repository, no credentials
        detail = str(exc).splitlines()[0][:200]
        raise DockerError(
            f"the image {image} is not on the Docker engine and could not be pulled ({detail}). "
            f"Build or pull it first; perfsuite's own images are built by container/images.sh"
        ) from exc


def _early_exit(container: Any) -> str:
    """The container's last log lines, when it has exited (else "")."""
    with contextlib.suppress(Exception):
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            logs = redact(wrapped.logs(tail=30).decode("utf-8", errors="replace"))
            code = wrapped.attrs["State"]["ExitCode"]
            return f"; it exited with code {code}, its last log lines:\n{logs}"
    return ""


@contextlib.contextmanager
def docker_network() -> Iterator[Any]:
    """A fresh Docker network, removed at the end."""
    from testcontainers.core.network import Network

    sweep_containers()
    with owner_mark() as token:
        try:
            network = Network(docker_network_kw={"labels": _labels(token)}).create()
        except Exception as exc:  # the docker SDK raises many types; translate them all here
            raise _docker_error("cannot create a Docker network", exc) from exc
        try:
            yield network
        finally:
            with contextlib.suppress(Exception):
                network.remove()


@dataclass(frozen=True)
class _Accounts:
    """The app and root passwords: new each run (the ports are published on
    127.0.0.1, open to local users), the same on a primary and its replicas."""

    app: str
    root: str

    @classmethod
    def new(cls) -> _Accounts:
        made = cls(secrets.token_urlsafe(18), secrets.token_urlsafe(18))
        register(made.app)
        register(made.root)
        return made


@contextlib.contextmanager
def mysql_container(config: MySQLConfig, network: Any) -> Iterator[MySQLServer]:
    """Start ``config.image`` with the official image's environment contract, and
    its replicas (``[tool.perfsuite] replicas``) as containers of the same image
    on the same network, each reached by the others as ``mysql-replica-N``."""
    ensure_image(config.image)
    accounts = _Accounts.new()
    replication = config.replication
    with contextlib.ExitStack() as stack:
        role = primary_argv(_DATADIR) if replication.replicas else []
        primary = stack.enter_context(_one_container(config, network, accounts, MYSQL_ALIAS, role))
        if not replication.replicas:
            yield primary
            return
        _check_mariadb(primary, config.image)
        replicas = []
        for index in range(1, replication.replicas + 1):
            options = replica_argv(_DATADIR, index + 1, replication)
            alias = f"{MYSQL_ALIAS}-replica-{index}"
            replicas.append(
                stack.enter_context(_one_container(config, network, accounts, alias, options))
            )
        start_replication(primary, replicas, replication, config.startup_timeout)
        yield replace(primary, replicas=tuple(replicas))


def _check_mariadb(server: MySQLServer, image: str) -> None:
    """Replicas are set up in MariaDB's grammar (its GTIDs, CHANGE MASTER TO)."""
    ((version,),) = server.query("SELECT VERSION()", admin=True)
    if "mariadb" not in str(version).lower():
        # MySQL 8 needs gtid_mode, CHANGE REPLICATION SOURCE TO and another wait for a
        # position; not built, because no MySQL image can be pulled where perfsuite is tested.
        raise MySQLError(
            f"[tool.perfsuite] replicas: the container provider starts replicas of MariaDB "
            f"images; {image} runs MySQL {version}. Use a MariaDB image (mysql_image = "
            f"'perfsuite/mariadb:bookworm', built by container/images.sh, or mariadb:11) or "
            f"mysql = 'process'"
        )


@contextlib.contextmanager
def _one_container(
    config: MySQLConfig, network: Any, accounts: _Accounts, alias: str, role: list[str]
) -> Iterator[MySQLServer]:
    """One server container reached as ``alias`` on ``network``, with ``role``'s
    server options (a primary's binary log, a replica's server id)."""
    try:
        from testcontainers.community.mysql import MySqlContainer
    except ImportError:  # testcontainers < 4.13 keeps it at the old place
        from testcontainers.mysql import MySqlContainer

    mysql = MySqlContainer(
        config.image,
        username=APP_USER,
        password=accounts.app,
        root_password=accounts.root,
        dbname=config.database,
    )
    # Statement digests for the cost per request (as the process provider);
    # the official images pass options given as the command to the server.
    options = [*(SERVER_OPTIONS if config.cost else ()), *role]
    if options:
        mysql = mysql.with_command(" ".join(options))
    container = _local_ports(_owned(mysql).with_network(network).with_network_aliases(alias), 3306)
    try:
        container.start()
    except KeyboardInterrupt:  # during the wait for the server: the container runs already
        with contextlib.suppress(Exception):
            container.stop()
        raise
    except Exception as exc:  # docker/testcontainers errors, translated at this boundary
        exited = _early_exit(container)
        with contextlib.suppress(Exception):
            container.stop()
        if exited:
            raise DockerError(f"the MySQL container {config.image} did not start{exited}") from exc
        if options and "executable file not found" in str(exc):
            raise DockerError(
                f"the MySQL container {config.image} did not start: the image does not take "
                f"server options as its command ({options[0]} ...), as the official "
                f"mysql and mariadb images do; give such an image, or start it without them: "
                f"[tool.perfsuite] cost = false or --perf-no-cost"
            ) from exc
        raise _docker_error(f"cannot start the MySQL container {config.image}", exc) from exc
    try:
        yield MySQLServer(
            provider="container",
            host=container_host(container),
            port=int(container.get_exposed_port(3306)),
            user=APP_USER,
            password=accounts.app,
            database=config.database,
            admin_user="root",
            admin_password=accounts.root,
            internal_host=alias,
            internal_port=3306,
        )
    finally:
        with contextlib.suppress(Exception):
            container.stop()


def service_container(config: ServiceConfig, env: dict[str, str], network: Any | None) -> Any:
    """A testcontainers ``DockerContainer`` for the service, not yet started."""
    from testcontainers.core.container import DockerContainer

    assert config.image is not None
    ensure_image(config.image)
    sweep_containers()
    container = _local_ports(
        _owned(DockerContainer(config.image)).with_exposed_ports(config.port), config.port
    )
    for key, value in env.items():
        container = container.with_env(key, value)
    if network is not None:
        container = container.with_network(network).with_network_aliases("service")
    return container
