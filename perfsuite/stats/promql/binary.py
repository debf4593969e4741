"""PromQL's binary operators between scalars and instant vectors.

As Prometheus does it (``VectorBinop`` and ``VectorscalarBinop`` in
``promql/engine.go``): arithmetic drops the metric name; a comparison
filters (keeping the vector's own value, whichever side the scalar is on)
unless ``bool`` turns it into 0 or 1; vector with vector matches one-to-one
on every label but the name, or ``on``/``ignoring`` the listed ones, and a
match group that holds two series on one side is an error; ``and``, ``or``
and ``unless`` keep series by whether their match group is on the other side.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import promql_parser as pq

from perfsuite.errors import PromQLError
from perfsuite.stats.promql.series import NAME, Labels, Vector, without_name

__all__ = ["ARITHMETIC", "COMPARISONS", "SET_OPERATORS", "binary", "compare"]


def _arith(fn: Callable[[Any, Any], Any]) -> Callable[[float, float], float]:
    def apply(a: float, b: float) -> float:
        # IEEE results (inf, nan) for a division by zero or an overflow, as Go gives.
        with np.errstate(all="ignore"):
            return float(fn(np.float64(a), np.float64(b)))

    return apply


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": _arith(operator.add),
    "-": _arith(operator.sub),
    "*": _arith(operator.mul),
    "/": _arith(operator.truediv),
    "%": _arith(np.fmod),  # Go's math.Mod: the sign of the dividend
    "^": _arith(np.power),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
ARITHMETIC = tuple(_ARITH)
COMPARISONS = tuple(_COMPARE)
SET_OPERATORS = ("and", "or", "unless")


def compare(op: str, a: float, b: float) -> bool:
    """``a op b`` for a comparison operator (false with a NaN, as in Prometheus)."""
    return _COMPARE[op](a, b)


def binary(op: str, lhs: Any, rhs: Any, modifier: pq.BinModifier | None) -> float | Vector:
    """``lhs op rhs`` where each side is a scalar (float) or an instant vector."""
    as_bool = modifier is not None and modifier.return_bool
    if isinstance(lhs, float) and isinstance(rhs, float):
        if op in _ARITH:
            return _ARITH[op](lhs, rhs)
        return 1.0 if _COMPARE[op](lhs, rhs) else 0.0
    if isinstance(lhs, float) or isinstance(rhs, float):
        return _with_scalar(op, lhs, rhs, as_bool=as_bool)
    if op in SET_OPERATORS:
        return _set(op, lhs, rhs, modifier)
    return _vectors(op, lhs, rhs, modifier, as_bool=as_bool)


def _set(op: str, lhs: Vector, rhs: Vector, modifier: pq.BinModifier | None) -> Vector:
    """``and``: the left's series that match one on the right; ``unless``: those that
    do not; ``or``: all of the left, and the right's that match none on the left."""
    right = {_signature(labels, modifier) for labels in rhs}
    if op == "and":
        return {k: v for k, v in lhs.items() if _signature(k, modifier) in right}
    if op == "unless":
        return {k: v for k, v in lhs.items() if _signature(k, modifier) not in right}
    left = {_signature(labels, modifier) for labels in lhs}
    out = dict(lhs)
    out.update({k: v for k, v in rhs.items() if _signature(k, modifier) not in left})
    return out


def _with_scalar(op: str, lhs: Any, rhs: Any, *, as_bool: bool) -> Vector:
    swap = isinstance(lhs, float)
    vector: Vector = rhs if swap else lhs
    scalar: float = lhs if swap else rhs
    out: Vector = {}
    for labels, v in vector.items():
        a, b = (scalar, v) if swap else (v, scalar)
        if op in _ARITH:
            out[without_name(labels)] = _ARITH[op](a, b)
        elif as_bool:
            out[without_name(labels)] = 1.0 if _COMPARE[op](a, b) else 0.0
        elif _COMPARE[op](a, b):
            out[labels] = v
    return out


def _signature(labels: Labels, modifier: pq.BinModifier | None) -> Labels:
    matching = modifier.matching if modifier is not None else None
    if matching is not None and matching.type == pq.LabelModifierType.Include:
        return tuple(pair for pair in labels if pair[0] in matching.labels)
    ignored = set(matching.labels) if matching is not None else set()
    return tuple(pair for pair in without_name(labels) if pair[0] not in ignored)


def _result_labels(
    labels: Labels, op: str, modifier: pq.BinModifier | None, as_bool: bool
) -> Labels:
    if op in _ARITH or as_bool:
        labels = without_name(labels)
    matching = modifier.matching if modifier is not None else None
    if matching is None:
        return labels
    if matching.type == pq.LabelModifierType.Include:
        return tuple(p for p in labels if p[0] in matching.labels or p[0] == NAME)
    return tuple(p for p in labels if p[0] not in matching.labels)


def _one_per_group(
    vector: Vector, modifier: pq.BinModifier | None, side: str
) -> dict[Labels, tuple[Labels, float]]:
    groups: dict[Labels, tuple[Labels, float]] = {}
    for labels, v in vector.items():
        key = _signature(labels, modifier)
        if key in groups:
            raise PromQLError(
                f"found two series for the match group {dict(key)} on the {side}-hand side "
                "(many-to-many matching is not allowed): match on() fewer labels or aggregate"
            )
        groups[key] = (labels, v)
    return groups


def _vectors(
    op: str, lhs: Vector, rhs: Vector, modifier: pq.BinModifier | None, *, as_bool: bool
) -> Vector:
    right = _one_per_group(rhs, modifier, "right")
    left = _one_per_group(lhs, modifier, "left")
    out: Vector = {}
    for key, (labels, a) in left.items():
        if key not in right:
            continue
        b = right[key][1]
        if op in _ARITH:
            value = _ARITH[op](a, b)
        elif as_bool:
            value = 1.0 if _COMPARE[op](a, b) else 0.0
        elif _COMPARE[op](a, b):
            value = a
        else:
            continue
        result = _result_labels(labels, op, modifier, as_bool)
        if result in out:
            raise PromQLError(f"two results of {op} have the same labels {dict(result)}")
        out[result] = value
    return out
