"""The one exception hierarchy of perfsuite.

Errors of lower libraries (PyMySQL, docker, testcontainers, httpx, OS calls)
are translated into these at the boundary where they happen, so a user sees
one clear message instead of a traceback from somewhere deep.

::

    PerfsuiteError
    ├── ConfigError          bad [tool.perfsuite] keys, options or values
    ├── ProvisionError       something we start could not be started
    │   ├── MySQLError       the MySQL server (binary, port, init, SQL)
    │   ├── DockerError      no engine, image missing, container exited
    │   └── ServiceError     the service under test (exit at start, unhealthy)
    ├── LoadError            the load generator could not do what was asked
    │   └── LoadGeneratorSaturated   the generator, not the service, was the bottleneck
    └── StoreError           a stored file is corrupt or of an unknown schema
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DockerError",
    "LoadError",
    "LoadGeneratorSaturated",
    "MySQLError",
    "PerfsuiteError",
    "PerfsuiteWarning",
    "ProvisionError",
    "ServiceError",
    "StoreError",
]


class PerfsuiteError(Exception):
    """Base of every error perfsuite raises on purpose."""


class ConfigError(PerfsuiteError):
    """A configuration key, option or value is wrong; the message names it."""


class ProvisionError(PerfsuiteError):
    """Something perfsuite had to start could not be started."""


class MySQLError(ProvisionError):
    """The MySQL/MariaDB server could not be found, started, reached or set up."""


class DockerError(ProvisionError):
    """The Docker engine, an image or a container failed."""


class ServiceError(ProvisionError):
    """The service under test exited at start or never became healthy."""


class LoadError(PerfsuiteError):
    """The load generator could not run as asked (file descriptors, target)."""


class LoadGeneratorSaturated(LoadError):
    """The generator fell behind its own schedule: the result says nothing of the service."""


class StoreError(PerfsuiteError):
    """A stored file (baseline, run record) is corrupt or of an unknown schema."""


class PerfsuiteWarning(UserWarning):
    """Something worked, but not as asked (a fallback was taken, no verdict given)."""
