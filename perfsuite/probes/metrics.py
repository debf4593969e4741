"""The service's own view of its pool: gauges read from its metrics endpoint.

Presets name the gauges of common pools in Prometheus text (parsed by
prometheus_client's parser): HikariCP (Micrometer), Go's database/sql
collector, and the example order service. ``actuator`` reads Spring Boot's
JSON endpoint instead. Samples with several label sets are summed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from perfsuite.errors import ConfigError

__all__ = ["PRESETS", "PoolGauges", "read_gauges", "resolve_preset"]

# role -> sample name; "waiting" may be a counter (Go: waits so far).
PRESETS: Mapping[str, Mapping[str, str]] = {
    "hikaricp": {
        "in_use": "hikaricp_connections_active",
        "idle": "hikaricp_connections_idle",
        "waiting": "hikaricp_connections_pending",
        "max": "hikaricp_connections_max",
    },
    "go-sql": {
        "in_use": "go_sql_in_use_connections",
        "idle": "go_sql_idle_connections",
        "waiting": "go_sql_wait_count_total",
        "max": "go_sql_max_open_connections",
    },
    "order-service": {
        "in_use": "order_service_db_pool_in_use",
        "idle": "order_service_db_pool_idle",
        "waiting": "order_service_db_pool_waiting",
        "max": "order_service_db_pool_max",
    },
    "actuator": {
        "in_use": "hikaricp.connections.active",
        "idle": "hikaricp.connections.idle",
        "waiting": "hikaricp.connections.pending",
        "max": "hikaricp.connections.max",
    },
}
ROLES = ("in_use", "idle", "waiting", "max")


@dataclass(frozen=True, kw_only=True)
class PoolGauges:
    """One reading of the pool (``nan`` for a gauge the preset does not have)."""

    in_use: float
    idle: float
    waiting: float
    max: float


def resolve_preset(name: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """The sample names of a preset, with per-role overrides."""
    if name not in PRESETS and name != "custom":
        raise ConfigError(
            f"[tool.perfsuite.pool] metrics: unknown preset {name!r} "
            f"(known: {', '.join(PRESETS)}, custom)"
        )
    names = dict(PRESETS.get(name, {}))
    for role, sample in overrides.items():
        if role not in ROLES:
            raise ConfigError(f"[tool.perfsuite.pool] {role}_metric: unknown role")
        names[role] = sample
    if "in_use" not in names:
        raise ConfigError("[tool.perfsuite.pool] metrics = 'custom' needs in_use_metric")
    return names


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise ConfigError(f"the pool metrics endpoint {url} cannot be read: {exc}") from exc
    if response.status_code != 200:
        raise ConfigError(
            f"the pool metrics endpoint {url} answered HTTP {response.status_code}; "
            f"set [tool.perfsuite.pool] metrics_path, or metrics = 'none'"
        )
    return response


def _prometheus(client: httpx.Client, url: str, names: Mapping[str, str]) -> PoolGauges:
    text = _get(client, url).text
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    except ValueError as exc:
        raise ConfigError(f"{url} is not Prometheus text: {exc}") from exc
    values = {}
    for role, name in names.items():
        if name not in totals:
            similar = sorted(n for n in totals if "pool" in n or "conn" in n)[:8]
            raise ConfigError(
                f"metric {name!r} ({role}) is not exposed at {url}"
                + (f" (pool-like metrics there: {', '.join(similar)})" if similar else "")
            )
        values[role] = totals[name]
    return PoolGauges(**{role: values.get(role, math.nan) for role in ROLES})


def _actuator(client: httpx.Client, base: str, names: Mapping[str, str]) -> PoolGauges:
    values = {}
    for role, metric in names.items():
        data = _get(client, f"{base}/{metric}").json()
        try:
            values[role] = float(
                sum(m["value"] for m in data["measurements"] if m["statistic"] == "VALUE")
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{base}/{metric} is not an actuator metric: {exc}") from exc
    return PoolGauges(**{role: values.get(role, math.nan) for role in ROLES})


def read_gauges(
    client: httpx.Client, url: str, preset: str, names: Mapping[str, str]
) -> PoolGauges:
    """Read the pool gauges once."""
    if preset == "actuator":
        return _actuator(client, url.rstrip("/"), names)
    return _prometheus(client, url, names)
