"""perfsuite: performance tests of HTTP services backed by MySQL, as pytest tests.

The public API is this module's ``__all__``; everything else is private.
"""

from __future__ import annotations

__version__ = "0.1.0"

from perfsuite.config import PerfConfig, Profile
from perfsuite.errors import (
    ConfigError,
    DockerError,
    Interrupted,
    LoadError,
    LoadGeneratorSaturated,
    MySQLError,
    PerfsuiteError,
    PerfsuiteWarning,
    ProvisionError,
    ServiceError,
)
from perfsuite.load import (
    ClosedPhase,
    Context,
    Journey,
    LoadResult,
    OpenPhase,
    Phase,
    Phases,
    Request,
    Scenario,
    Step,
    Summary,
    User,
    header,
    json_field,
    regex,
    run_load,
)
from perfsuite.provision.server import MySQLServer
from perfsuite.provision.service import Service

__all__ = [
    "ClosedPhase",
    "ConfigError",
    "Context",
    "DockerError",
    "Interrupted",
    "Journey",
    "LoadError",
    "LoadGeneratorSaturated",
    "LoadResult",
    "MySQLError",
    "MySQLServer",
    "OpenPhase",
    "PerfConfig",
    "PerfsuiteError",
    "PerfsuiteWarning",
    "Phase",
    "Phases",
    "Profile",
    "ProvisionError",
    "Request",
    "Scenario",
    "Service",
    "ServiceError",
    "Step",
    "Summary",
    "User",
    "__version__",
    "header",
    "json_field",
    "regex",
    "run_load",
]
