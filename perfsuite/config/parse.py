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
    PoolConfig,
    Profile,
    ProviderName,
    ResourcesConfig,
    ServiceConfig,
    parse_duration,
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
}
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
_BASELINE_KEYS = {
    "dir",
    "window",
    "alpha",
    "tolerance",
    "tolerances",
    "metrics",
    "min_runs",
    "min_blocks",
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


def _check_keys(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where} (known keys: {', '.join(sorted(known))})"
        )


def _str(table: Mapping[str, Any], key: str, where: str, default: str | None) -> str | None:
    value = table.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def _section(table: Any, known: set[str], where: str) -> dict[str, Any]:
    """A sub-table of [tool.perfsuite] ({} when absent), its keys checked."""
    table = {} if table is None else table
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    _check_keys(table, known, where)
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
    provider, url = parse_mysql_choice(choice or _str(table, "mysql", where, "auto") or "auto")
    database = _str(table, "database", where, "perf") or "perf"
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
    seed = _str(table, "seed", where, None)
    if seed is not None and ":" not in seed:
        raise ConfigError(f"{where}.seed: expected 'module:function', got {seed!r}")
    cost = table.get("cost", True)
    if not isinstance(cost, bool):
        raise ConfigError(f"{where}.cost: expected true or false, got {cost!r}")
    return MySQLConfig(
        provider=provider,
        url=url,
        image=_str(table, "mysql_image", where, "mysql:8.4") or "mysql:8.4",
        mysqld=_str(table, "mysqld", where, None),
        port=_int(table, "mysql_port", where, 0, 0, 65535),
        database=database,
        sql_files=sql_files,
        seed=seed,
        startup_timeout=parse_duration(
            table.get("mysql_startup_timeout", "60s"), key=f"{where}.mysql_startup_timeout"
        ),
        cost=cost,
    )


def _service_config(table: Any, rootdir: Path) -> ServiceConfig | None:
    where = "[tool.perfsuite.service]"
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    _check_keys(table, _SERVICE_KEYS, where)
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
    health = _str(table, "health", where, "/health") or "/health"
    if not health.startswith("/"):
        raise ConfigError(f"{where}.health: expected a path starting with '/', got {health!r}")
    url = _str(table, "url", where, None)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    return ServiceConfig(
        kind="command" if command else ("container" if "image" in table else "url"),
        command=command,
        image=_str(table, "image", where, None),
        url=url.rstrip("/") if url else None,
        port=_int(table, "port", where, 8000, 1, 65535),
        env=dict(env),
        pass_env=tuple(pass_env),
        health=health,
        startup_timeout=parse_duration(
            table.get("startup_timeout", "30s"), key=f"{where}.startup_timeout"
        ),
        cwd=(rootdir / (_str(table, "cwd", where, ".") or ".")).resolve(),
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
        _check_keys(values, _PROFILE_KEYS, where)
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
    table = _section(table, _LOAD_KEYS, where)
    allowed = [] if allowed is None else allowed
    if not isinstance(allowed, list) or not all(isinstance(h, str) and h for h in allowed):
        raise ConfigError(
            f"[tool.perfsuite].allowed_hosts: expected a list of host names, got {allowed!r}"
        )
    defaults = LoadConfig()
    return LoadConfig(
        max_connections=_int(table, "max_connections", where, defaults.max_connections, 1, 100_000),
        timeout=parse_duration(table.get("timeout", "10s"), key=f"{where}.timeout"),
        connect_timeout=parse_duration(
            table.get("connect_timeout", "5s"), key=f"{where}.connect_timeout"
        ),
        max_body=_int(table, "max_body", where, defaults.max_body, 0, 1 << 30),
        verify=_verify(table.get("verify", True), where),
        ca_bundle=_ca_bundle(_str(table, "ca_bundle", where, None), rootdir, where),
        late_threshold=parse_duration(
            table.get("late_threshold", "10ms"), key=f"{where}.late_threshold"
        ),
        max_requests=_int(table, "max_requests", where, defaults.max_requests, 1, 10**12),
        max_duration=parse_duration(table.get("max_duration", "4h"), key=f"{where}.max_duration"),
        workers=_int(table, "workers", where, 1, 1, 256),
        allowed_hosts=tuple(allowed),
    )


def _verify(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.verify: expected true or false, got {value!r}")
    return value


def _ca_bundle(value: str | None, rootdir: Path, where: str) -> str | None:
    if value is None:
        return None
    path = (rootdir / value).resolve()
    if not path.is_file():
        raise ConfigError(f"{where}.ca_bundle: no such file {str(path)!r}")
    return str(path)


def _fraction(value: object, key: str) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1]) / 100.0
        except ValueError:
            number = -1.0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        number = -1.0
    if not 0.0 <= number < 1.0:
        raise ConfigError(f"{key}: expected a fraction like '5%' or 0.05, got {value!r}")
    return number


def _baseline_config(table: Any, rootdir: Path, folder: str | None) -> BaselineConfig:
    where = "[tool.perfsuite.baseline]"
    table = _section(table, _BASELINE_KEYS, where)
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
        tolerances[metric] = _fraction(value, f"{where}.tolerances.{metric}")
    alpha = _fraction(table.get("alpha", 0.01), f"{where}.alpha")
    if not alpha > 0:
        raise ConfigError(f"{where}.alpha: must be > 0")
    return BaselineConfig(
        dir=(rootdir / (folder or _str(table, "dir", where, "baselines") or "baselines")),
        window=_int(table, "window", where, defaults.window, 1, 1000),
        min_runs=_int(table, "min_runs", where, defaults.min_runs, 2, 1000),
        min_blocks=_int(table, "min_blocks", where, defaults.min_blocks, 2, 10_000),
        alpha=alpha,
        tolerance=_fraction(table.get("tolerance", 0.05), f"{where}.tolerance"),
        tolerances=tolerances,
        metrics=tuple(metrics),
    )


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
    _check_keys(table, _TOP_KEYS, "[tool.perfsuite]")
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
        pool=_pool_config(table.get("pool")),
        resources=_resources_config(table.get("resources")),
        history=_str(table, "history", "[tool.perfsuite]", None),
    )


def _pool_config(table: Any) -> PoolConfig:
    where = "[tool.perfsuite.pool]"
    table = _section(table, _POOL_KEYS, where)
    check = table.get("check", True)
    if not isinstance(check, bool):
        raise ConfigError(f"{where}.check: expected true or false, got {check!r}")
    path = _str(table, "metrics_path", where, "/metrics") or "/metrics"
    if not path.startswith("/"):
        raise ConfigError(f"{where}.metrics_path: expected a path starting with '/', got {path!r}")
    names = {}
    for role in ("in_use", "idle", "waiting", "max"):
        name = _str(table, f"{role}_metric", where, None)
        if name:
            names[role] = name
    hands_out = _str(table, "hands_out", where, "unknown")
    if hands_out not in ("unknown", "in-turn"):
        raise ConfigError(f"{where}.hands_out: expected 'in-turn' or 'unknown', got {hands_out!r}")
    after = _str(table, "after_path", where, None)
    if after is not None and after != "" and not after.startswith("/"):
        raise ConfigError(f"{where}.after_path: expected a path starting with '/', got {after!r}")
    return PoolConfig(
        check=check,
        user=_str(table, "user", where, None),
        hands_out="in-turn" if hands_out == "in-turn" else "unknown",
        after_path=after,
        max_idle=_int(table, "max_idle", where, 10, 0, 100_000),
        timeout=parse_duration(table.get("timeout", "10s"), key=f"{where}.timeout"),
        metrics=_str(table, "metrics", where, "none") or "none",
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


def _resources_config(table: Any) -> ResourcesConfig:
    where = "[tool.perfsuite.resources]"
    table = _section(table, _RESOURCES_KEYS, where)
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


def _slo_table(table: Any) -> dict[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError("[tool.perfsuite.slo]: must be a table of objectives")
    return dict(table)  # parsed (strictly) by the session, which knows the objectives
