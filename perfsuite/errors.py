"""The one exception hierarchy of perfsuite.

Errors of lower libraries (PyMySQL, docker, testcontainers, httpx, OS calls)
are translated into these at the boundary where they happen, so a user sees
one clear message instead of a traceback from somewhere deep.

::

    PerfsuiteError
    ├── ConfigError          bad [tool.perfsuite] keys, options or values
    │   └── PromQLError      an expression that cannot be parsed or is outside the subset
    ├── ProvisionError       something we start could not be started
    │   ├── MySQLError       the MySQL server (binary, port, init, SQL)
    │   ├── DockerError      no engine, image missing, container exited
    │   └── ServiceError     the service under test (exit at start, unhealthy)
    ├── LoadError            the load generator could not do what was asked
    │   └── LoadGeneratorSaturated   the generator, not the service, was the bottleneck
    ├── ProfileError         a profile of the service could not be taken or read
    ├── CaptureError         a traffic capture (HAR, access log, .gor, JSON lines) is unreadable
    └── StoreError           a stored file is corrupt or of an unknown schema

    KeyboardInterrupt
    └── Interrupted          Ctrl-C or SIGTERM; carries what the load measured so far

``Interrupted`` is not an error: it is a ``KeyboardInterrupt``, so that
pytest (and any caller) stops as it does on Ctrl-C, and SIGTERM alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perfsuite.load.result import LoadResult

__all__ = [
    "AgentLost",
    "CaptureError",
    "ConfigError",
    "DockerError",
    "Interrupted",
    "LoadError",
    "LoadGeneratorSaturated",
    "MySQLError",
    "PerfsuiteError",
    "PerfsuiteWarning",
    "ProfileError",
    "PromQLError",
    "ProvisionError",
    "ServiceError",
    "StoreError",
]


class PerfsuiteError(Exception):
    """Base of every error perfsuite raises on purpose."""


class ConfigError(PerfsuiteError):
    """A configuration key, option or value is wrong; the message names it."""


class PromQLError(ConfigError):
    """A PromQL expression cannot be parsed, is outside the subset, or cannot be evaluated."""


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


class AgentLost(LoadError):
    """A load agent died or was cut off mid-run; ``result`` is what the others measured
    until they were stopped (None when none had started)."""

    def __init__(self, message: str, result: LoadResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class LoadGeneratorSaturated(LoadError):
    """The generator fell behind its own schedule: the result says nothing of the service."""


class ProfileError(PerfsuiteError):
    """A profile of the service could not be taken (no profiler, not permitted) or read.

    Said, not failed: a test does not fail because its diagnosis is missing.
    """


class CaptureError(PerfsuiteError):
    """A traffic capture cannot be read; the message names the file, the line and why."""


class StoreError(PerfsuiteError):
    """A stored file (baseline, run record) is corrupt or of an unknown schema."""


class PerfsuiteWarning(UserWarning):
    """Something worked, but not as asked (a fallback was taken, no verdict given)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; ``result`` is what a load measured until then.

    ``result`` is set when a load was running (its phases cut short, its
    ``stop_reason`` saying so), else None.
    """

    def __init__(self, signal_name: str, result: LoadResult | None = None) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.result = result

    def __str__(self) -> str:
        if self.result is None:
            return f"interrupted by {self.signal_name}"
        return (
            f"interrupted by {self.signal_name} during a load, after {self.result.wall_time:.1f} s"
        )
