"""perfsuite: performance tests of HTTP services backed by MySQL, as pytest tests.

The public API is this module's ``__all__``; everything else is private.
"""

from __future__ import annotations

__version__ = "0.1.0"

from perfsuite.config import PerfConfig, Profile
from perfsuite.errors import (
    ConfigError,
    DockerError,
    MySQLError,
    PerfsuiteError,
    ProvisionError,
    ServiceError,
)
from perfsuite.provision.server import MySQLServer
from perfsuite.provision.service import Service

__all__ = [
    "ConfigError",
    "DockerError",
    "MySQLError",
    "MySQLServer",
    "PerfConfig",
    "PerfsuiteError",
    "Profile",
    "ProvisionError",
    "Service",
    "ServiceError",
    "__version__",
]
