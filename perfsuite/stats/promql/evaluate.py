"""Evaluate a subset of PromQL over scraped series, as Prometheus would.

The expression is parsed by the ``promql-parser`` package and checked
against the subset first (:func:`parse`), so that anything outside it is one
clear error naming the construct, before any load runs. The subset:
selectors with label matchers and ``offset``; ``rate``, ``irate``,
``increase``, ``delta``, ``idelta``, the ``*_over_time`` functions,
``histogram_quantile``, ``abs``, ``ceil``, ``floor``, ``clamp*``,
``scalar``, ``vector``, ``time``; ``sum``, ``min``, ``max``, ``avg`` and
``count`` with ``by`` or ``without``; arithmetic and comparisons (``bool``
too) between scalars and vectors, vector with vector one-to-one (``on``,
``ignoring``); ``and``, ``or``, ``unless``. Range windows are left-open, ``(t - range, t]``, as in
Prometheus 3; an instant selector looks back 5 minutes for its last sample.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import promql_parser as pq

from perfsuite.errors import PromQLError
from perfsuite.stats.promql.binary import ARITHMETIC, COMPARISONS, SET_OPERATORS, binary
from perfsuite.stats.promql.functions import (
    OVER_TIME,
    RATES,
    bucket_quantile,
    extrapolated_rate,
    instant_rate,
    quantile,
)
from perfsuite.stats.promql.series import NAME, Labels, Series, SeriesSet, Vector, without_name

__all__ = [
    "AGGREGATIONS",
    "FUNCTIONS",
    "Evaluator",
    "Value",
    "parse",
    "selected_names",
    "step_times",
]

Value = float | Vector

LOOKBACK = 300.0  # seconds: Prometheus's default lookback delta

AGGREGATIONS = ("sum", "min", "max", "avg", "count")
_MATH: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": lambda v: float(math.ceil(v)) if math.isfinite(v) else v,
    "floor": lambda v: float(math.floor(v)) if math.isfinite(v) else v,
}
FUNCTIONS = tuple(
    sorted(
        [
            *RATES,
            *OVER_TIME,
            *_MATH,
            "irate",
            "idelta",
            "quantile_over_time",
            "histogram_quantile",
            "clamp",
            "clamp_min",
            "clamp_max",
            "scalar",
            "vector",
            "time",
        ]
    )
)


def step_times(start: float, end: float, step: float = 1.0) -> list[float]:
    """``start``, ``start + step``, ... up to ``end``: a range query's instants."""
    count = math.floor((end - start) / step + 1e-9) + 1
    return [start + i * step for i in range(max(count, 0))]


def parse(text: str) -> pq.Expr:
    """Parse ``text`` and check that it is inside the subset; :class:`PromQLError` if not."""
    try:
        expr = pq.parse(text)
    except ValueError as exc:
        raise PromQLError(f"cannot parse the PromQL expression {text!r}: {exc}") from None
    problems: list[str] = []
    pq.walk(expr, lambda node: _check(node, problems))
    if problems:
        raise PromQLError(f"{text!r}: {problems[0]}")
    return expr


def _check(node: pq.Expr, problems: list[str]) -> bool:
    """One node against the subset (a walker's visit); records what is outside it."""
    if isinstance(node, pq.SubqueryExpr):
        problems.append("subqueries (expr[range:step]) are not supported")
    elif isinstance(node, pq.VectorSelector):
        if node.at is not None:
            problems.append("the @ modifier is not supported")
        if node.matchers.or_matchers:
            problems.append("'or' inside a selector's braces is not supported")
    elif isinstance(node, pq.Call) and node.func.name not in FUNCTIONS:
        problems.append(
            f"the function {node.func.name}() is not supported; supported: {', '.join(FUNCTIONS)}"
        )
    elif isinstance(node, pq.AggregateExpr) and str(node.op) not in AGGREGATIONS:
        problems.append(
            f"the aggregation {node.op}() is not supported; supported: {', '.join(AGGREGATIONS)}"
        )
    elif isinstance(node, pq.BinaryExpr):
        op, mod = str(node.op), node.modifier
        if op not in COMPARISONS + ARITHMETIC + SET_OPERATORS:
            problems.append(f"the operator {op!r} is not supported")
        elif op in SET_OPERATORS:
            pass  # many-to-many by nature
        elif mod is not None and mod.card != pq.VectorMatchCardinality.OneToOne:
            problems.append("group_left/group_right (many-to-one matching) is not supported")
    return not problems


def selected_names(expr: pq.Expr) -> list[str]:
    """The metric names an expression selects (those it names)."""
    names: list[str] = []

    def visit(node: pq.Expr) -> bool:
        if isinstance(node, pq.VectorSelector) and node.name and node.name not in names:
            names.append(node.name)
        return True

    pq.walk(expr, visit)
    return names


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _matches(matcher: pq.Matcher, labels: dict[str, str]) -> bool:
    value = labels.get(matcher.name, "")
    op = matcher.op
    if op == pq.MatchOp.Equal:
        return value == matcher.value
    if op == pq.MatchOp.NotEqual:
        return value != matcher.value
    # Prometheus anchors label regexes at both ends.
    found = _regex(matcher.value).fullmatch(value) is not None
    return found if op == pq.MatchOp.Re else not found


def _seconds(delta: Any) -> float:
    return 0.0 if delta is None else float(delta.total_seconds())


class Evaluator:
    """Evaluates parsed expressions over one set of series."""

    def __init__(self, data: SeriesSet, *, lookback: float = LOOKBACK) -> None:
        self.data = data
        self.lookback = lookback
        self._selected: dict[str, list[Series]] = {}

    def at(self, expr: pq.Expr, t: float) -> Value:
        """The expression's value at time ``t``: a scalar or an instant vector."""
        if isinstance(expr, pq.MatrixSelector):
            raise PromQLError(
                f"{expr} is a range vector: wrap it in a function such as max_over_time()"
            )
        return self._eval(expr, t)

    def steps(self, expr: pq.Expr, start: float, end: float, step: float) -> list[Value]:
        """Values at ``start``, ``start + step``, ... up to ``end`` (a range query)."""
        return [self.at(expr, t) for t in step_times(start, end, step)]

    # -- nodes ---------------------------------------------------------------

    def _eval(self, node: pq.Expr, t: float) -> Value:
        if isinstance(node, pq.NumberLiteral):
            return float(node.val)
        if isinstance(node, pq.ParenExpr):
            return self._eval(node.expr, t)
        if isinstance(node, pq.UnaryExpr):
            inner = self._eval(node.expr, t)
            if isinstance(inner, float):
                return -inner
            return {without_name(labels): -v for labels, v in inner.items()}
        if isinstance(node, pq.VectorSelector):
            return self._instant(node, t)
        if isinstance(node, pq.Call):
            return self._call(node, t)
        if isinstance(node, pq.AggregateExpr):
            return self._aggregate(node, t)
        if isinstance(node, pq.BinaryExpr):
            return self._binary(node, t)
        raise PromQLError(f"{type(node).__name__} is not supported here")

    def _select(self, selector: pq.VectorSelector) -> list[Series]:
        key = str(selector)
        if key not in self._selected:
            matchers = selector.matchers.matchers
            self._selected[key] = [
                one
                for one in self.data.named(selector.name)
                if all(_matches(m, dict(one.labels)) for m in matchers)
            ]
        return self._selected[key]

    def _instant(self, selector: pq.VectorSelector, t: float) -> Vector:
        at = t - _seconds(selector.offset)
        out: Vector = {}
        for one in self._select(selector):
            i = int(np.searchsorted(one.times, at, side="right")) - 1
            if i >= 0 and one.times[i] > at - self.lookback:
                out[one.labels] = float(one.values[i])
        return out

    def _windows(
        self, arg: Any, t: float
    ) -> tuple[list[tuple[Labels, Series, slice]], float, float]:
        """The samples of a range selector in ``(t - range, t]``, per series."""
        if not isinstance(arg, pq.MatrixSelector):
            raise PromQLError(f"expected a range vector such as metric[1m], got {arg}")
        selector = arg.vector_selector
        end = t - _seconds(selector.offset)
        start = end - _seconds(arg.range)
        out = []
        for one in self._select(selector):
            lo = int(np.searchsorted(one.times, start, side="right"))
            hi = int(np.searchsorted(one.times, end, side="right"))
            if hi > lo:
                out.append((one.labels, one, slice(lo, hi)))
        return out, start, end

    def _call(self, node: pq.Call, t: float) -> Value:
        name, args = node.func.name, list(node.args)
        if name in RATES or name in ("irate", "idelta"):
            windows, start, end = self._windows(args[0], t)
            out: Vector = {}
            for labels, one, span in windows:
                times, values = one.times[span], one.values[span]
                if name in RATES:
                    counter, per_second = RATES[name]
                    v = extrapolated_rate(
                        times, values, start, end, is_counter=counter, is_rate=per_second
                    )
                else:
                    v = instant_rate(times, values, is_rate=name == "irate")
                if v is not None:
                    out[without_name(labels)] = v
            return out
        if name in OVER_TIME or name == "quantile_over_time":
            q = self._scalar(args[0], t) if name == "quantile_over_time" else 0.0
            windows, _, _ = self._windows(args[-1], t)
            keep_name = name == "last_over_time"
            return {
                (labels if keep_name else without_name(labels)): (
                    quantile(q, one.values[span])
                    if name == "quantile_over_time"
                    else OVER_TIME[name](one.values[span])
                )
                for labels, one, span in windows
            }
        if name == "histogram_quantile":
            return self._histogram_quantile(self._scalar(args[0], t), self._vector(args[1], t))
        return self._simple_call(name, args, t)

    def _simple_call(self, name: str, args: Sequence[Any], t: float) -> Value:
        if name == "time":
            return t
        if name == "vector":
            return {(): self._scalar(args[0], t)}
        if name == "scalar":
            values = list(self._vector(args[0], t).values())
            return values[0] if len(values) == 1 else math.nan
        vector = self._vector(args[0], t)
        if name in _MATH:
            fn = _MATH[name]
            return {without_name(labels): fn(v) for labels, v in vector.items()}
        low, high = -math.inf, math.inf
        if name == "clamp":
            low, high = self._scalar(args[1], t), self._scalar(args[2], t)
        elif name == "clamp_min":
            low = self._scalar(args[1], t)
        else:  # clamp_max: the only function left in the checked subset
            high = self._scalar(args[1], t)
        if low > high:
            return {}
        return {without_name(labels): min(max(v, low), high) for labels, v in vector.items()}

    def _histogram_quantile(self, q: float, vector: Vector) -> Vector:
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for labels, count in vector.items():
            le = dict(labels).get("le")
            if le is None:
                continue  # Prometheus ignores series without an le label
            try:
                bound = float(le)
            except ValueError:
                continue
            key = tuple(pair for pair in labels if pair[0] not in (NAME, "le"))
            groups.setdefault(key, []).append((bound, count))
        return {key: bucket_quantile(q, buckets) for key, buckets in groups.items()}

    def _aggregate(self, node: pq.AggregateExpr, t: float) -> Vector:
        op = str(node.op)
        vector = self._vector(node.expr, t)
        mod = node.modifier
        groups: dict[Labels, list[float]] = {}
        for labels, v in vector.items():
            if mod is None:
                key: Labels = ()
            elif mod.type == pq.AggModifierType.By:
                key = tuple(pair for pair in labels if pair[0] in mod.labels)
            else:
                key = tuple(pair for pair in without_name(labels) if pair[0] not in mod.labels)
            groups.setdefault(key, []).append(v)
        reduce: dict[str, Callable[[list[float]], float]] = {
            "sum": lambda vs: float(math.fsum(vs)),
            "min": lambda vs: min((v for v in vs if not math.isnan(v)), default=math.nan),
            "max": lambda vs: max((v for v in vs if not math.isnan(v)), default=math.nan),
            "avg": lambda vs: float(math.fsum(vs)) / len(vs),
            "count": lambda vs: float(len(vs)),
        }
        return {key: reduce[op](values) for key, values in groups.items()}

    def _scalar(self, node: Any, t: float) -> float:
        value = self._eval(node, t)
        if not isinstance(value, float):
            raise PromQLError(f"expected a scalar, got an instant vector: {node}")
        return value

    def _vector(self, node: Any, t: float) -> Vector:
        value = self._eval(node, t)
        if isinstance(value, float):
            raise PromQLError(f"expected an instant vector, got a scalar: {node}")
        return value

    def _binary(self, node: pq.BinaryExpr, t: float) -> Value:
        return binary(str(node.op), self._eval(node.lhs, t), self._eval(node.rhs, t), node.modifier)
