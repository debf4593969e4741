"""``[tool.perfsuite]`` + command-line options -> frozen config objects.

Everything the plugin reads is read here, once, and turned into typed, frozen
objects. A bad key or value raises :class:`ConfigError` naming the key and the
value, so a typo fails at start-up and not ten minutes into a load test.
"""

from perfsuite.config.model import (
    DEFAULT_PROFILES,
    BaselineConfig,
    LoadConfig,
    MetricsConfig,
    MySQLConfig,
    PerfConfig,
    PoolConfig,
    Profile,
    ProfilingConfig,
    ReplicationConfig,
    ResourcesConfig,
    ServiceConfig,
    parse_duration,
)
from perfsuite.config.parse import load_config, parse_mysql_choice, read_pyproject

__all__ = [
    "DEFAULT_PROFILES",
    "BaselineConfig",
    "LoadConfig",
    "MetricsConfig",
    "MySQLConfig",
    "PerfConfig",
    "PoolConfig",
    "Profile",
    "ProfilingConfig",
    "ReplicationConfig",
    "ResourcesConfig",
    "ServiceConfig",
    "load_config",
    "parse_duration",
    "parse_mysql_choice",
    "read_pyproject",
]
