"""``[tool.perfsuite.profiling]``: CPU profiles and growth checks of the service."""

from __future__ import annotations

import re
import shlex
from typing import Any

from perfsuite.config.model import ProfilingConfig, parse_duration
from perfsuite.config.values import bool_value, int_value, section, str_value
from perfsuite.errors import ConfigError

__all__ = ["KEEP", "PROFILERS", "profiling_config"]

PROFILERS = ("auto", "py-spy", "pprof", "command", "none")
KEEP = ("failed", "always", "never")
_KEYS = {
    "profiler",
    "pprof_url",
    "command",
    "seconds",
    "rate",
    "keep",
    "growth",
    "growth_metrics",
    "settle",
    "min_rise",
}
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _choice(table: dict[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        raise ConfigError(f"{where}.{key}: expected one of {', '.join(choices)}; got {value!r}")
    return str(value)


def _command(table: dict[str, Any], where: str, profiler: str) -> str | None:
    command = str_value(table, "command", where, None)
    if profiler == "command" and not command:
        raise ConfigError(f'{where}: profiler = "command" needs command = "..."')
    if command is not None:
        try:
            parts = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"{where}.command: cannot split {command!r}: {exc}") from None
        if not any("{output}" in part for part in parts):
            raise ConfigError(
                f"{where}.command: must write collapsed stacks to {{output}}, got {command!r}"
            )
    return command


def profiling_config(table: Any) -> ProfilingConfig:
    """``[tool.perfsuite.profiling]``, checked."""
    where = "[tool.perfsuite.profiling]"
    table = section(table, _KEYS, where)
    profiler = _choice(table, "profiler", where, PROFILERS)
    url = str_value(table, "pprof_url", where, None)
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{where}.pprof_url: expected an http:// or https:// URL, got {url!r}")
    seconds = parse_duration(table.get("seconds", "10s"), key=f"{where}.seconds")
    if not 1 <= seconds <= 600:
        raise ConfigError(f"{where}.seconds: expected 1s to 600s, got {seconds:g}s")
    growth = bool_value(table, "growth", where)
    names = table.get("growth_metrics", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and _NAME.match(n) for n in names):
        raise ConfigError(f"{where}.growth_metrics: expected a list of metric names, got {names!r}")
    settle = parse_duration(table.get("settle", "2s"), key=f"{where}.settle")
    if not 0 <= settle <= 120:
        raise ConfigError(f"{where}.settle: expected 0s to 120s, got {settle:g}s")
    rise = table.get("min_rise", 5)
    if isinstance(rise, bool) or not isinstance(rise, int | float) or rise < 0:
        raise ConfigError(f"{where}.min_rise: expected a count of at least 0, got {rise!r}")
    return ProfilingConfig(
        profiler=profiler,
        pprof_url=None if url is None else url.rstrip("/"),
        command=_command(table, where, profiler),
        seconds=seconds,
        rate=int_value(table, "rate", where, 100, 1, 1000),
        keep=_choice(table, "keep", where, KEEP),
        growth=growth,
        growth_metrics=tuple(names),
        settle=settle,
        min_rise=float(rise),
    )
