"""Reading ``[tool.perfsuite]``: strict, with messages that name the key and the value."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perfsuite.config.model import (
    DEFAULT_PROFILES,
    BaselineConfig,
    LoadConfig,
    MySQLConfig,
    PerfConfig,
    Profile,
    ProviderName,
    ServiceConfig,
    parse_duration,
)
from perfsuite.config.probes import metrics_config, pool_config, resources_config
from perfsuite.config.profiling import profiling_config
from perfsuite.config.replication import replication_config
from perfsuite.config.values import (
    bool_value,
    check_keys,
    fraction,
    int_value,
    section,
    str_value,
)
from perfsuite.errors import ConfigError

__all__ = ["load_config", "parse_mysql_choice", "read_pyproject"]

_TOP_KEYS = {
    "history",
    "mysql",
    "mysql_image",
    "mysqld",
    "mysql_port",
    "database",
    "sql",
    "seed",
    "mysql_startup_timeout",
    "service",
    "profiles",
    "load",
    "allowed_hosts",
    "baseline",
    "slo",
    "pool",
    "resources",
    "cost",
    "metrics",
    "profiling",
    "replicas",
    "replication",
}
_BASELINE_KEYS = {
    "dir",
    "window",
    "alpha",
    "tolerance",
    "tolerances",
    "metrics",
    "min_runs",
    "min_blocks",
    "max_other_cores",
    "max_steal",
}
_GATE_METRICS = ("p50", "p90", "p95", "p99", "p999", "mean", "error_rate", "rps")
# The cost per request the gate compares (perfsuite.stats.cost_compare): a tolerance only.
_COST_METRICS = (
    "queries_per_request",
    "rows_examined_per_request",
    "no_index_per_request",
    "db_ms_per_request",
    "cpu_ms_per_request",
)
_LOAD_KEYS = {
    "max_connections",
    "timeout",
    "connect_timeout",
    "max_body",
    "verify",
    "ca_bundle",
    "late_threshold",
    "max_requests",
    "max_duration",
    "workers",
    "tx",
    "max_clock_uncertainty",
}
_SERVICE_KEYS = {
    "command",
    "image",
    "url",
    "port",
    "env",
    "pass_env",
    "health",
    "startup_timeout",
    "cwd",
}
_PROFILE_KEYS = {"duration_scale", "rate_scale"}
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def read_pyproject(rootdir: Path) -> dict[str, Any]:
    """Return the ``[tool.perfsuite]`` table of ``rootdir/pyproject.toml`` (or ``{}``)."""
    path = rootdir / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    table = data.get("tool", {}).get("perfsuite", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.perfsuite] must be a table")
    return table


def parse_mysql_choice(value: str) -> tuple[ProviderName, str | None]:
    """``auto | process | container | mysql://user:pass@host:port/db`` -> (provider, url)."""
    if value in ("auto", "process", "container"):
        return value, None  # type: ignore[return-value]
    if value.startswith("mysql://"):
        return "url", value
    raise ConfigError(
        f"mysql: expected auto, process, container or a mysql://user:pass@host:port/db URL, "
        f"got {value!r}"
    )


def _mysql_config(table: Mapping[str, Any], rootdir: Path, choice: str | None) -> MySQLConfig:
    where = "[tool.perfsuite]"
    provider, url = parse_mysql_choice(choice or str_value(table, "mysql", where, "auto") or "auto")
    database = str_value(table, "database", where, "perf") or "perf"
    if not _DB_NAME.match(database):
        raise ConfigError(f"{where}.database: not a plain database name: {database!r}")
    sql = table.get("sql", [])
    if isinstance(sql, str):
        sql = [sql]
    if not isinstance(sql, list) or not all(isinstance(s, str) for s in sql):
        raise ConfigError(f"{where}.sql: expected a list of SQL file paths, got {sql!r}")
    sql_files = tuple((rootdir / s).resolve() for s in sql)
    for path in sql_files:
        if not path.is_file():
            raise ConfigError(f"{where}.sql: no such SQL file: {path}")
    seed = str_value(table, "seed", where, None)
    if seed is not None and ":" not in seed:
        raise ConfigError(f"{where}.seed: expected 'module:function', got {seed!r}")
    cost = bool_value(table, "cost", where)
    return MySQLConfig(
        provider=provider,
        url=url,
        image=str_value(table, "mysql_image", where, "mysql:8.4") or "mysql:8.4",
        mysqld=str_value(table, "mysqld", where, None),
        port=int_value(table, "mysql_port", where, 0, 0, 65535),
        database=database,
        sql_files=sql_files,
        seed=seed,
        startup_timeout=parse_duration(
            table.get("mysql_startup_timeout", "60s"), key=f"{where}.mysql_startup_timeout"
        ),
        cost=cost,
        replication=replication_config(table, provider),
    )


def _service_config(table: Any, rootdir: Path) -> ServiceConfig | None:
    where = "[tool.perfsuite.service]"
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    check_keys(table, _SERVICE_KEYS, where)
    kinds = [k for k in ("command", "image", "url") if k in table]
    # command and image together: the image when MySQL runs in a container too.
    if not kinds or ("url" in kinds and len(kinds) > 1):
        raise ConfigError(
            f"{where}: set a command, an image (or both), or a url (got {kinds or 'none'})"
        )
    command: tuple[str, ...] = ()
    raw = table.get("command")
    if isinstance(raw, str):
        command = tuple(shlex.split(raw))
    elif isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        command = tuple(raw)
    elif raw is not None:
        raise ConfigError(f"{where}.command: expected a string or a list of strings, got {raw!r}")
    if raw is not None and not command:
        raise ConfigError(f"{where}.command: is empty")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where}.env: expected a table of strings, got {env!r}")
    pass_env = table.get("pass_env", [])
    if not isinstance(pass_env, list) or not all(isinstance(v, str) and v for v in pass_env):
        raise ConfigError(f"{where}.pass_env: expected a list of variable names, got {pass_env!r}")
    health = str_value(table, "health", where, "/health") or "/health"
    if not health.startswith("/"):
        raise ConfigError(f"{where}.health: expected a path starting with '/', got {health!r}")
    url = str_value(table, "url", where, None)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    return ServiceConfig(
        kind="command" if command else ("container" if "image" in table else "url"),
        command=command,
        image=str_value(table, "image", where, None),
        url=url.rstrip("/") if url else None,
        port=int_value(table, "port", where, 8000, 1, 65535),
        env=dict(env),
        pass_env=tuple(pass_env),
        health=health,
        startup_timeout=parse_duration(
            table.get("startup_timeout", "30s"), key=f"{where}.startup_timeout"
        ),
        cwd=(rootdir / (str_value(table, "cwd", where, ".") or ".")).resolve(),
    )


def _profiles(table: Any) -> dict[str, Profile]:
    profiles = dict(DEFAULT_PROFILES)
    if table is None:
        return profiles
    if not isinstance(table, dict):
        raise ConfigError("[tool.perfsuite.profiles]: must be a table of tables")
    for name, values in table.items():
        where = f"[tool.perfsuite.profiles.{name}]"
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: must be a table")
        check_keys(values, _PROFILE_KEYS, where)
        base = profiles.get(name, Profile(name=name))
        for key in _PROFILE_KEYS:
            value = values.get(key, getattr(base, key))
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
        profiles[name] = Profile(
            name=name,
            duration_scale=float(values.get("duration_scale", base.duration_scale)),
            rate_scale=float(values.get("rate_scale", base.rate_scale)),
        )
    return profiles


def _load_config(table: Any, allowed: Any, rootdir: Path) -> LoadConfig:
    where = "[tool.perfsuite.load]"
    table = section(table, _LOAD_KEYS, where)
    allowed = [] if allowed is None else allowed
    if not isinstance(allowed, list) or not all(isinstance(h, str) and h for h in allowed):
        raise ConfigError(
            f"[tool.perfsuite].allowed_hosts: expected a list of host names, got {allowed!r}"
        )
    defaults = LoadConfig()
    workers = int_value(table, "workers", where, 1, 1, 256)
    tx = load_agents(table.get("tx"), f"{where}.tx", workers)
    return LoadConfig(
        max_connections=int_value(
            table, "max_connections", where, defaults.max_connections, 1, 100_000
        ),
        timeout=parse_duration(table.get("timeout", "10s"), key=f"{where}.timeout"),
        connect_timeout=parse_duration(
            table.get("connect_timeout", "5s"), key=f"{where}.connect_timeout"
        ),
        max_body=int_value(table, "max_body", where, defaults.max_body, 0, 1 << 30),
        verify=bool_value(table, "verify", where),
        ca_bundle=_ca_bundle(str_value(table, "ca_bundle", where, None), rootdir, where),
        late_threshold=parse_duration(
            table.get("late_threshold", "10ms"), key=f"{where}.late_threshold"
        ),
        max_requests=int_value(table, "max_requests", where, defaults.max_requests, 1, 10**12),
        max_duration=parse_duration(table.get("max_duration", "4h"), key=f"{where}.max_duration"),
        workers=workers,
        tx=tx,
        max_clock_uncertainty=parse_duration(
            table.get("max_clock_uncertainty", "5ms"), key=f"{where}.max_clock_uncertainty"
        ),
        allowed_hosts=tuple(allowed),
    )


def load_agents(value: object, where: str, workers: int = 1) -> tuple[str, ...]:
    """``tx``: a gateway spec or a list of them (pytest-xdist's spelling), checked."""
    from perfsuite.load.agents.spec import parse_tx

    if value is None:
        return ()
    specs = [value] if isinstance(value, str) else value
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ConfigError(f"{where}: expected a gateway spec or a list of them, got {value!r}")
    try:
        parse_tx(specs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if workers > 1:
        raise ConfigError(
            f"{where}: give workers (forked processes) or tx (execnet agents), not both"
        )
    return tuple(specs)


def _ca_bundle(value: str | None, rootdir: Path, where: str) -> str | None:
    if value is None:
        return None
    path = (rootdir / value).resolve()
    if not path.is_file():
        raise ConfigError(f"{where}.ca_bundle: no such file {str(path)!r}")
    return str(path)


def _baseline_config(table: Any, rootdir: Path, folder: str | None) -> BaselineConfig:
    where = "[tool.perfsuite.baseline]"
    table = section(table, _BASELINE_KEYS, where)
    defaults = BaselineConfig()
    metrics = table.get("metrics", list(defaults.metrics))
    if not isinstance(metrics, list) or not metrics or not set(metrics) <= set(_GATE_METRICS):
        raise ConfigError(
            f"{where}.metrics: expected a list of {', '.join(_GATE_METRICS)}, got {metrics!r}"
        )
    tolerances = dict(defaults.tolerances)
    raw = table.get("tolerances", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.tolerances: must be a table of metric = tolerance")
    for metric, value in raw.items():
        if metric not in _GATE_METRICS and metric not in _COST_METRICS:
            known = ", ".join((*_GATE_METRICS, *_COST_METRICS))
            raise ConfigError(f"{where}.tolerances: unknown metric {metric!r} (known: {known})")
        tolerances[metric] = fraction(value, f"{where}.tolerances.{metric}")
    alpha = fraction(table.get("alpha", 0.01), f"{where}.alpha")
    if not alpha > 0:
        raise ConfigError(f"{where}.alpha: must be > 0")
    return BaselineConfig(
        dir=(rootdir / (folder or str_value(table, "dir", where, "baselines") or "baselines")),
        window=int_value(table, "window", where, defaults.window, 1, 1000),
        min_runs=int_value(table, "min_runs", where, defaults.min_runs, 2, 1000),
        min_blocks=int_value(table, "min_blocks", where, defaults.min_blocks, 2, 10_000),
        alpha=alpha,
        tolerance=fraction(table.get("tolerance", 0.05), f"{where}.tolerance"),
        tolerances=tolerances,
        metrics=tuple(metrics),
        max_other_cores=_cores(table, "max_other_cores", where, defaults.max_other_cores),
        max_steal=fraction(table.get("max_steal", defaults.max_steal), f"{where}.max_steal"),
    )


def _cores(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{where}.{key}: expected a number of cores >= 0, got {value!r}")
    return float(value)


def load_config(
    rootdir: Path,
    table: Mapping[str, Any],
    *,
    profile: str | None = None,
    mysql: str | None = None,
    mysql_image: str | None = None,
    baseline_dir: str | None = None,
    cost: bool | None = None,
) -> PerfConfig:
    """Build the frozen config from the ``[tool.perfsuite]`` table and option overrides."""
    check_keys(table, _TOP_KEYS, "[tool.perfsuite]")
    profiles = _profiles(table.get("profiles"))
    name = profile or "ci"
    if name not in profiles:
        raise ConfigError(f"profile: unknown profile {name!r} (known: {', '.join(profiles)})")
    mysql_cfg = _mysql_config(table, rootdir, mysql)
    if mysql_image:
        mysql_cfg = MySQLConfig(**{**mysql_cfg.__dict__, "image": mysql_image})
    if cost is not None:
        mysql_cfg = MySQLConfig(**{**mysql_cfg.__dict__, "cost": cost})
    return PerfConfig(
        rootdir=rootdir,
        mysql=mysql_cfg,
        service=_service_config(table.get("service"), rootdir),
        profile=profiles[name],
        profiles=profiles,
        load=_load_config(table.get("load"), table.get("allowed_hosts"), rootdir),
        baseline=_baseline_config(table.get("baseline"), rootdir, baseline_dir),
        slo=_slo_table(table.get("slo")),
        pool=pool_config(table.get("pool")),
        resources=resources_config(table.get("resources")),
        metrics=metrics_config(table.get("metrics")),
        profiling=profiling_config(table.get("profiling")),
        history=str_value(table, "history", "[tool.perfsuite]", None),
    )


def _slo_table(table: Any) -> dict[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError("[tool.perfsuite.slo]: must be a table of objectives")
    return dict(table)  # parsed (strictly) by the session, which knows the objectives
