"""Expectations on scraped metrics: a PromQL comparison judged over a time window.

``max_over_time(pool_waiting[30s]) == 0`` holds in a window when, at every
step (once a second by default), every series of the side that is not a
number compares true with the number. A step where that side has no value
(no series yet, a ``rate`` with one sample, a quantile of no observations:
``NaN``) is not judged; a window with no judged step at all fails, naming
the metrics the expression selects and those that were seen. Prometheus's
own ``bool`` form is not accepted here: the expectation itself is the
comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import promql_parser as pq

from perfsuite.errors import PromQLError
from perfsuite.stats.promql.binary import COMPARISONS, compare
from perfsuite.stats.promql.evaluate import Evaluator, Value, parse, selected_names, step_times
from perfsuite.stats.promql.series import Labels, Vector

__all__ = ["ExpectVerdict", "Expectation", "judge", "judge_values"]

_MIRROR = {">": "<", "<": ">", ">=": "<=", "<=": ">="}


@dataclass(frozen=True, kw_only=True)
class Expectation:
    """One expectation: a PromQL comparison with a number, and where it is judged."""

    text: str
    phase: str | None = None  # None: every measured phase of the test
    expr: pq.Expr = field(init=False, repr=False, compare=False)
    side: pq.Expr = field(init=False, repr=False, compare=False)
    number: pq.Expr = field(init=False, repr=False, compare=False)
    op: str = field(init=False, repr=False, compare=False)
    swapped: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expr = parse(self.text)
        while isinstance(expr, pq.ParenExpr):
            expr = expr.expr
        op = str(expr.op) if isinstance(expr, pq.BinaryExpr) else ""
        if op not in COMPARISONS:
            raise PromQLError(
                f"{self.text!r}: an expectation is a comparison with a number, "
                "such as 'max_over_time(metric[30s]) < 5'"
            )
        assert isinstance(expr, pq.BinaryExpr)
        if expr.modifier is not None and expr.modifier.return_bool:
            raise PromQLError(f"{self.text!r}: leave out 'bool': the expectation is the comparison")
        lhs_number = _is_number(expr.lhs)
        if lhs_number == _is_number(expr.rhs):
            raise PromQLError(
                f"{self.text!r}: one side of {op} must be a number (or scalar()), the other "
                "the metric expression"
            )
        side, number = (expr.rhs, expr.lhs) if lhs_number else (expr.lhs, expr.rhs)
        for name, value in (
            ("expr", expr),
            ("side", side),
            ("number", number),
            ("op", op),
            ("swapped", lhs_number),
        ):
            object.__setattr__(self, name, value)

    @property
    def metric_text(self) -> str:
        """The side that is judged, as PromQL."""
        return str(self.side)


def _is_number(node: pq.Expr) -> bool:
    """Whether a side is a scalar: a number, or a function or sum of them that gives one."""
    while isinstance(node, pq.ParenExpr | pq.UnaryExpr):
        node = node.expr
    if isinstance(node, pq.NumberLiteral):
        return True
    if isinstance(node, pq.Call):
        return node.func.name in ("scalar", "time")
    if isinstance(node, pq.BinaryExpr):
        return _is_number(node.lhs) and _is_number(node.rhs)
    return False


@dataclass(frozen=True, kw_only=True)
class ExpectVerdict:
    """How an expectation fared in its window: per step, the judged side's values."""

    expectation: Expectation
    ok: bool
    judged: int  # steps where the side had a value
    broken: int  # steps where a series compared false
    times: list[float]  # seconds from the judge's origin (the load's first phase)
    values: list[Vector]  # the judged side's values at each step
    thresholds: list[float]  # the number at each step
    worst: tuple[float, Labels, float] | None  # (time, series, value) furthest from holding
    names_seen: list[str]

    def report(self) -> str:
        """One readable paragraph: what was expected, where, and what was seen."""
        e = self.expectation
        where = f"phase {e.phase}" if e.phase else "the measured phases"
        head = f"expect {e.text} in {where}:"
        if self.judged == 0:
            wanted = ", ".join(selected_names(e.expr)) or e.metric_text
            seen = ", ".join(self.names_seen[:40]) or "none"
            more = f" (and {len(self.names_seen) - 40} more)" if len(self.names_seen) > 40 else ""
            return (
                f"{head} no value in {len(self.times)} steps; it selects {wanted}; "
                f"metric names seen: {seen}{more}"
            )
        if self.ok:
            return f"{head} held at all {self.judged} steps judged"
        assert self.worst is not None
        t, labels, value = self.worst
        series = "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"
        return (
            f"{head} broken at {self.broken} of {self.judged} steps judged; "
            f"furthest: {value:.6g} at +{t:.0f} s, {series}\n  {self._timeline(labels)}"
        )

    def _timeline(self, labels: Labels, most: int = 60) -> str:
        """One series' values at each step, against the threshold."""
        shown = ["-" if labels not in v else f"{v[labels]:.4g}" for v in self.values[:most]]
        more = f", ... ({len(self.values) - most} more)" if len(self.values) > most else ""
        first = f"+{self.times[0]:.0f} s" if self.times else ""
        limit = self.thresholds[0] if self.thresholds else math.nan
        op = self.expectation.op
        if self.expectation.swapped:  # "1 > x" expects x < 1
            op = _MIRROR.get(op, op)
        return (
            f"that series from {first}, a step a second: {', '.join(shown)}{more} "
            f"(expected {op} {limit:.6g})"
        )


def judge(
    expectation: Expectation,
    evaluator: Evaluator,
    start: float,
    end: float,
    *,
    step: float = 1.0,
    origin: float | None = None,
) -> ExpectVerdict:
    """Judge ``expectation`` at each step from ``start`` to ``end`` (seconds) on local
    series; the verdict's times are from ``origin`` (default: ``start``)."""
    times = step_times(start, end, step)
    sides = [evaluator.at(expectation.side, t) for t in times]
    numbers = [evaluator.at(expectation.number, t) for t in times]
    zero = start if origin is None else origin
    return judge_values(
        expectation,
        [t - zero for t in times],
        sides,
        [n if isinstance(n, float) else math.nan for n in numbers],
        names_seen=evaluator.data.names(),
    )


def judge_values(
    expectation: Expectation,
    times: list[float],
    sides: list[Value],
    numbers: list[float],
    *,
    names_seen: list[str],
) -> ExpectVerdict:
    """Judge an expectation on its two sides' values at each step, however obtained
    (evaluated here, or answered by a Prometheus server)."""
    e = expectation
    values: list[Vector] = []
    judged = broken = 0
    worst: tuple[float, Labels, float] | None = None
    worst_gap = -math.inf
    for t, side, number in zip(times, sides, numbers, strict=True):
        vector: Vector = {(): side} if isinstance(side, float) else side
        present = {k: v for k, v in vector.items() if not math.isnan(v)}
        values.append(present)
        if not present or math.isnan(number):
            continue
        judged += 1
        failing = [
            (k, v)
            for k, v in present.items()
            if not (compare(e.op, number, v) if e.swapped else compare(e.op, v, number))
        ]
        if failing:
            broken += 1
            for k, v in failing:
                gap = abs(v - number)
                # The earliest of equal gaps: values a server computed in another
                # order differ in their last bits, and must name the same step.
                if worst is None or gap > worst_gap + 1e-9 * max(worst_gap, 1.0):
                    worst_gap, worst = gap, (t, k, v)
    return ExpectVerdict(
        expectation=e,
        ok=judged > 0 and broken == 0,
        judged=judged,
        broken=broken,
        times=list(times),
        values=values,
        thresholds=list(numbers),
        worst=worst,
        names_seen=names_seen,
    )
