"""Readers of single values of ``[tool.perfsuite]``: each names the key it refuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfsuite.errors import ConfigError

__all__ = ["check_keys", "fraction", "int_value", "section", "str_value"]


def check_keys(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where} (known keys: {', '.join(sorted(known))})"
        )


def str_value(table: Mapping[str, Any], key: str, where: str, default: str | None) -> str | None:
    value = table.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def int_value(
    table: Mapping[str, Any], key: str, where: str, default: int, lo: int, hi: int
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def bool_value(table: Mapping[str, Any], key: str, where: str, default: bool = True) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def section(table: Any, known: set[str], where: str) -> dict[str, Any]:
    """A sub-table of [tool.perfsuite] ({} when absent), its keys checked."""
    table = {} if table is None else table
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    check_keys(table, known, where)
    return table


def fraction(value: object, key: str) -> float:
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
