"""``replicas`` and ``[tool.perfsuite.replication]`` -> :class:`ReplicationConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfsuite.config.model import ReplicationConfig, parse_duration
from perfsuite.config.values import bool_value, int_value, section
from perfsuite.errors import ConfigError

__all__ = ["replication_config"]

_KEYS = {"urls", "delay", "parallel_threads", "heartbeat", "lag"}
MAX_REPLICAS = 8


def replication_config(top: Mapping[str, Any], provider: str) -> ReplicationConfig:
    """The replicas of ``[tool.perfsuite]`` (``replicas = N`` and its ``replication`` table)."""
    where = "[tool.perfsuite.replication]"
    table = section(top.get("replication"), _KEYS, where)
    replicas = int_value(top, "replicas", "[tool.perfsuite]", 0, 0, MAX_REPLICAS)
    urls = table.get("urls", [])
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and u.startswith("mysql://") for u in urls
    ):
        raise ConfigError(f"{where}.urls: expected a list of mysql:// URLs, got {urls!r}")
    if replicas and urls:
        raise ConfigError(
            "[tool.perfsuite] replicas starts replicas; replication.urls names existing ones: "
            "give one of them"
        )
    if urls and provider != "url":
        raise ConfigError(f"{where}.urls: replicas of a given server need mysql = 'mysql://...'")
    if replicas and provider == "url":
        raise ConfigError(
            "[tool.perfsuite] replicas: perfsuite cannot start replicas of a server it did not "
            f"start; name the existing ones in {where}.urls"
        )
    delay = table.get("delay", 0)
    seconds = parse_duration(delay, key=f"{where}.delay") if delay else 0.0
    if seconds != int(seconds) or seconds > 86_400:
        raise ConfigError(
            f"{where}.delay: the server delays in whole seconds (0 to 1 day), got {delay!r}"
        )
    heartbeat = parse_duration(table.get("heartbeat", "100ms"), key=f"{where}.heartbeat")
    if not 0.01 <= heartbeat <= 10.0:
        raise ConfigError(f"{where}.heartbeat: expected 10ms to 10s, got {heartbeat:g}s")
    return ReplicationConfig(
        replicas=replicas,
        urls=tuple(urls),
        delay=int(seconds),
        parallel_threads=int_value(table, "parallel_threads", where, 0, 0, 256),
        heartbeat=heartbeat,
        lag=bool_value(table, "lag", where),
    )
