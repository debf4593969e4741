"""Is there a Docker engine? Asked once, quickly, with the reason when not."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DockerStatus", "probe_docker"]


@dataclass(frozen=True, kw_only=True)
class DockerStatus:
    """The answer of the engine (or its silence), for the session header."""

    available: bool
    host: str
    reason: str


def probe_docker(timeout: float = 3.0) -> DockerStatus:
    """Ping the engine named by ``DOCKER_HOST`` (or the default socket)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        return DockerStatus(
            available=False, host=host, reason=f"no Docker engine ({host} does not exist)"
        )
    # Imported here: the docker SDK is slow to import and not needed without it.
    import docker
    import docker.errors
    import requests.exceptions

    try:
        client = docker.from_env(timeout=int(max(1, timeout)))
        try:
            client.ping()
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DockerStatus(
            available=False,
            host=host,
            reason=f"no Docker engine answered at {host}: {first_line[:160]}",
        )
    return DockerStatus(available=True, host=host, reason=f"Docker {version} answered at {host}")
