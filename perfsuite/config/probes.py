"""The probe sections of ``[tool.perfsuite]``: pool, resources, metrics."""

from __future__ import annotations

import re
from typing import Any

from perfsuite.config.model import MetricsConfig, PoolConfig, ResourcesConfig, parse_duration
from perfsuite.config.values import bool_value, int_value, section, str_value
from perfsuite.errors import ConfigError

__all__ = ["metrics_config", "pool_config", "resources_config"]

_RESOURCES_KEYS = {"cpu_limit", "memory_limit", "max_growth"}
_MIB = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|KiB|MiB|GiB)?\s*(/min)?\s*$", re.IGNORECASE)
_TO_MIB = {"kb": 1 / 1024, "kib": 1 / 1024, "mb": 1.0, "mib": 1.0, "gb": 1024.0, "gib": 1024.0}
_POOL_KEYS = {
    "check",
    "user",
    "hands_out",
    "after_path",
    "max_idle",
    "timeout",
    "metrics",
    "metrics_path",
    "in_use_metric",
    "idle_metric",
    "waiting_metric",
    "max_metric",
}


def pool_config(table: Any) -> PoolConfig:
    where = "[tool.perfsuite.pool]"
    table = section(table, _POOL_KEYS, where)
    check = bool_value(table, "check", where)
    path = str_value(table, "metrics_path", where, "/metrics") or "/metrics"
    if not path.startswith("/"):
        raise ConfigError(f"{where}.metrics_path: expected a path starting with '/', got {path!r}")
    names = {}
    for role in ("in_use", "idle", "waiting", "max"):
        name = str_value(table, f"{role}_metric", where, None)
        if name:
            names[role] = name
    hands_out = str_value(table, "hands_out", where, "unknown")
    if hands_out not in ("unknown", "in-turn"):
        raise ConfigError(f"{where}.hands_out: expected 'in-turn' or 'unknown', got {hands_out!r}")
    after = str_value(table, "after_path", where, None)
    if after is not None and after != "" and not after.startswith("/"):
        raise ConfigError(f"{where}.after_path: expected a path starting with '/', got {after!r}")
    return PoolConfig(
        check=check,
        user=str_value(table, "user", where, None),
        hands_out="in-turn" if hands_out == "in-turn" else "unknown",
        after_path=after,
        max_idle=int_value(table, "max_idle", where, 10, 0, 100_000),
        timeout=parse_duration(table.get("timeout", "10s"), key=f"{where}.timeout"),
        metrics=str_value(table, "metrics", where, "none") or "none",
        metrics_path=path,
        metric_names=names,
    )


def _mib(value: object, key: str, *, per_minute: bool) -> float:
    match = _MIB.match(value) if isinstance(value, str) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if match is None or bool(match.group(3)) != per_minute or not float(match.group(1)) > 0:
        example = "'10MB/min'" if per_minute else "'512MB'"
        raise ConfigError(f"{key}: expected a size like {example}, got {value!r}")
    return float(match.group(1)) * _TO_MIB[(match.group(2) or "MB").lower()]


def resources_config(table: Any) -> ResourcesConfig:
    where = "[tool.perfsuite.resources]"
    table = section(table, _RESOURCES_KEYS, where)
    cpu = table.get("cpu_limit")
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int | float) or cpu <= 0):
        raise ConfigError(f"{where}.cpu_limit: expected a number of cores, got {cpu!r}")
    memory, growth = table.get("memory_limit"), table.get("max_growth")
    return ResourcesConfig(
        cpu_limit=float(cpu) if cpu is not None else None,
        memory_limit_mib=None
        if memory is None
        else _mib(memory, f"{where}.memory_limit", per_minute=False),
        max_growth_mib_per_min=None
        if growth is None
        else _mib(growth, f"{where}.max_growth", per_minute=True),
    )


_METRICS_KEYS = {
    "service",
    "path",
    "targets",
    "database",
    "interval",
    "max_series",
    "keep",
    "drop",
    "pin",
    "every_test",
    "record_series",
    "prometheus_url",
}
_JOB = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _http_url(value: object, key: str) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
    return value


def _patterns(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of strings, got {value!r}")
    if key != "pin":
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where}.{key}: {pattern!r} is not a regex: {exc}") from None
    return tuple(value)


def metrics_config(table: Any) -> MetricsConfig:
    """``[tool.perfsuite.metrics]``, checked."""
    where = "[tool.perfsuite.metrics]"
    table = section(table, _METRICS_KEYS, where)
    path = str_value(table, "path", where, None)
    if path is not None and not path.startswith("/"):
        raise ConfigError(f"{where}.path: expected a path starting with '/', got {path!r}")
    targets = table.get("targets", {})
    if not isinstance(targets, dict):
        raise ConfigError(f"{where}.targets: expected a table of job = URL, got {targets!r}")
    for job, url in targets.items():
        if not _JOB.match(job) or job in ("service", "mysql"):
            raise ConfigError(
                f"{where}.targets: {job!r} cannot name a job (letters, digits, _ . -; "
                "'service' and 'mysql' are perfsuite's own)"
            )
        _http_url(url, f"{where}.targets.{job}")
    interval = parse_duration(table.get("interval", "1s"), key=f"{where}.interval")
    if not 0.1 <= interval <= 60:
        raise ConfigError(f"{where}.interval: expected 0.1s to 60s, got {interval:g}s")
    prometheus = table.get("prometheus_url")
    return MetricsConfig(
        service=bool_value(table, "service", where),
        path=path,
        targets=dict(targets),
        database=bool_value(table, "database", where),
        interval=interval,
        max_series=int_value(table, "max_series", where, 2000, 1, 1_000_000),
        keep=_patterns(table, "keep", where),
        drop=_patterns(table, "drop", where),
        pin=_patterns(table, "pin", where),
        every_test=bool_value(table, "every_test", where),
        record_series=int_value(table, "record_series", where, 200, 0, 100_000),
        prometheus_url=None
        if prometheus is None
        else _http_url(prometheus, f"{where}.prometheus_url").rstrip("/"),
    )
