"""Service level objectives: parsed strictly, judged with a confidence interval.

``p95="200ms"`` is an upper bound on the 95th percentile of latency (from
the intended send time) of every request that ended: answered, timed out or
failed, so that a service degrading into timeouts cannot pass on the
requests it still answers; ``p95_ok="200ms"`` bounds the successful ones
alone. ``error_rate="0.1%"`` bounds the share of failed requests;
``min_rps=950`` is a lower bound on successful requests per second. Latency accepts
``us``, ``ms`` and ``s`` (a plain number is milliseconds); rates accept
``%`` or a plain fraction. The verdict is on the measured value; its
interval (block bootstrap) says how sure that value is. Cost objectives
(``queries_per_request=4``, ``rows_examined_per_request=50``,
``no_index_used=0``, ``cpu_per_request="2ms"``, ``db_time_per_request="1ms"``)
bound what the service's requests cost (:mod:`perfsuite.stats.cost`); they
are counts over the load, with no interval. ``diff_rate="0.1%"`` bounds the
share of a replay's answers that differ from the reference's, ``stale_rate="1%"``
the share of stale reads among the successes of the requests with a ``stale=``
predicate (each a Clopper-Pearson interval on the count).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from perfsuite.errors import ConfigError
from perfsuite.stats.blocks import BlockSet, bootstrap_metric
from perfsuite.stats.lag import ReplicaLag

__all__ = [
    "COST_METRICS",
    "KNOWN",
    "LAG_METRICS",
    "LATENCY_METRICS",
    "RESOURCE_METRICS",
    "Objective",
    "SloResult",
    "evaluate",
    "evaluate_cost",
    "evaluate_diffs",
    "evaluate_lag",
    "evaluate_resources",
    "evaluate_stale",
    "parse_slo",
]

_ALL_LATENCY = ("p50", "p90", "p95", "p99", "p999", "max", "mean")
LATENCY_METRICS = (*_ALL_LATENCY, *(f"{m}_ok" for m in _ALL_LATENCY))
_SELECTORS = ("endpoint", "phase")
RESOURCE_METRICS = ("cpu", "memory")
# An objective's name -> the cost metric it bounds (RequestCost.metrics()).
COST_METRICS = {
    "queries_per_request": "queries_per_request",
    "rows_examined_per_request": "rows_examined_per_request",
    "no_index_used": "no_index_used",
    "db_time_per_request": "db_ms_per_request",
    "cpu_per_request": "cpu_ms_per_request",
}
_COST_TIMES = ("db_time_per_request", "cpu_per_request")
# An objective's name -> the percentile of the replicas' lag it bounds (ms).
LAG_METRICS = {f"replica_lag_{q}": q for q in ("p50", "p95", "p99", "max")}
KNOWN = (
    *LATENCY_METRICS,
    *LAG_METRICS,
    "error_rate",
    "diff_rate",
    "stale_rate",
    "min_rps",
    *RESOURCE_METRICS,
    *COST_METRICS,
    *_SELECTORS,
)
# Objectives that bound a share (of requests, answers, reads, cores, memory).
_RATES = ("error_rate", "diff_rate", "stale_rate", *RESOURCE_METRICS)
_LATENCY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s)?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$")
_TO_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}


@dataclass(frozen=True, kw_only=True)
class Objective:
    """One bound on one metric, for one endpoint and phase (``None``: all measured)."""

    metric: str  # a latency metric, "error_rate" or "rps"
    limit: float  # ms for latency, a fraction for the error rate, req/s for rps
    bound: Literal["max", "min"]
    endpoint: str | None = None
    phase: str | None = None
    text: str = ""

    def where(self) -> str:
        """``"order_query in steady"``, ``"all endpoints in all measured phases"``."""
        if self.metric in RESOURCE_METRICS:
            return "the service during the load"
        if self.metric in COST_METRICS:
            return f"each load of {self.endpoint}" if self.endpoint else "each load"
        if self.metric == "diff_rate":
            return f"the answers of {self.endpoint or 'all endpoints'} compared"
        if self.metric in LAG_METRICS:
            phase = f"phase {self.phase}" if self.phase else "all measured phases"
            return f"the slowest replica, {phase}"
        endpoint = self.endpoint or "all endpoints"
        phase = f"phase {self.phase}" if self.phase else "all measured phases"
        return f"{endpoint}, {phase}"

    def format(self, value: float) -> str:
        """A value of this metric with its unit."""
        if self.metric in _RATES:
            return f"{value:.1%}" if self.metric in RESOURCE_METRICS else f"{value:.3%}"
        if self.metric == "rps":
            return f"{value:,.1f} req/s"
        if self.metric in COST_METRICS and self.metric not in _COST_TIMES:
            return f"{value:,.0f}" if self.metric == "no_index_used" else f"{value:,.2f}"
        return f"{value:,.3f} ms" if self.metric in _COST_TIMES else f"{value:,.2f} ms"


def _latency(value: object, key: str, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where} {key}: expected a latency like '200ms', got {value!r}")
    if isinstance(value, int | float):
        ms = float(value)
    elif isinstance(value, str) and (m := _LATENCY.match(value)):
        ms = float(m.group(1)) * _TO_MS[m.group(2)]
    else:
        raise ConfigError(f"{where} {key}: expected a latency like '200ms', '0.5s', got {value!r}")
    if not ms > 0:
        raise ConfigError(f"{where} {key}: a latency limit must be positive, got {value!r}")
    return ms


def _rate(value: object, key: str, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where} {key}: expected a rate like '0.1%', got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str) and (m := _RATE.match(value)):
        rate = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    else:
        raise ConfigError(f"{where} {key}: expected a rate like '0.1%' or 0.001, got {value!r}")
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{where} {key}: a rate must be within 0..100 %, got {value!r}")
    return rate


def _rps(value: object, key: str, where: str) -> float:
    text = value.removesuffix("/s") if isinstance(value, str) else value
    try:
        rps = float(text) if not isinstance(text, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rps = math.nan
    if not rps > 0:
        raise ConfigError(f"{where} {key}: expected a positive number of req/s, got {value!r}")
    return rps


def _count(value: object, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{where} {key}: expected a number >= 0, got {value!r}")
    return float(value)


def parse_slo(values: Mapping[str, object], *, where: str = "slo") -> list[Objective]:
    """``{"p95": "200ms", "error_rate": "0.1%", "endpoint": "x"}`` -> objectives."""
    unknown = sorted(set(values) - set(KNOWN))
    if unknown:
        raise ConfigError(f"{where}: unknown objective {unknown[0]!r} (known: {', '.join(KNOWN)})")
    selectors: dict[str, str | None] = {}
    for key in _SELECTORS:
        sel = values.get(key)
        if sel is not None and (not isinstance(sel, str) or not sel):
            raise ConfigError(f"{where} {key}: expected a name, got {sel!r}")
        selectors[key] = sel
    out = []
    for key, raw in values.items():
        if key in _SELECTORS:
            continue
        if key in COST_METRICS and selectors["phase"]:
            raise ConfigError(f"{where} {key}: cost is measured per load, not per phase")
        if key in LAG_METRICS and selectors["endpoint"]:
            raise ConfigError(f"{where} {key}: the replicas' lag is not per endpoint")
        if key in LATENCY_METRICS or key in _COST_TIMES or key in LAG_METRICS:
            metric, limit, bound = key, _latency(raw, key, where), "max"
        elif key in COST_METRICS:
            metric, limit, bound = key, _count(raw, key, where), "max"
        elif key in _RATES:
            if key == "diff_rate" and selectors["phase"]:
                raise ConfigError(f"{where} diff_rate: answers are compared per replay")
            metric, limit, bound = key, _rate(raw, key, where), "max"
        else:
            metric, limit, bound = "rps", _rps(raw, key, where), "min"
        out.append(
            Objective(
                metric=metric,
                limit=limit,
                bound="max" if bound == "max" else "min",
                endpoint=selectors["endpoint"],
                phase=selectors["phase"],
                text=str(raw),
            )
        )
    if not out:
        raise ConfigError(f"{where}: no objective given")
    return out


@dataclass(frozen=True, kw_only=True)
class SloResult:
    """An objective, what was measured, its 95 % interval, and the verdict."""

    objective: Objective
    measured: float
    low: float
    high: float
    passed: bool
    short: int = 0  # the blocks of a selection too short for an interval (0: not short)
    note: str = ""  # what else decided the verdict (a replica that stopped)

    def describe(self) -> str:
        """An SRE's line: metric, where, measured with interval, limit."""
        o = self.objective
        verb = "within" if self.passed else ("exceeds" if o.bound == "max" else "below")
        kind = (
            "range" if o.metric in (*RESOURCE_METRICS, *COST_METRICS, *LAG_METRICS) else "95 % CI"
        )
        interval = (
            f" ({kind} {o.format(self.low)} to {o.format(self.high)})"
            if math.isfinite(self.low)
            else f" (too short for an interval: {self.short} blocks)"
            if self.short
            else ""
        )
        name = "throughput" if o.metric == "rps" else o.metric
        limit = ("at most " if o.bound == "max" else "at least ") + o.format(o.limit)
        note = f"; {self.note}" if self.note else ""
        return (
            f"{name} of {o.where()}: {o.format(self.measured)}{interval} {verb} SLO {limit}{note}"
        )


def evaluate(
    objectives: list[Objective],
    blocks_for: Callable[[str | None, str | None], BlockSet],
    *,
    rng: np.random.Generator | None = None,
    resamples: int = 1000,
    min_blocks: int = 10,
) -> list[SloResult]:
    """Judge each objective on the blocks of its selection.

    The verdict is on the measured value; its interval needs ``min_blocks``
    blocks of time (fewer resample into an interval that claims too much).
    """
    rng = rng or np.random.default_rng(0)
    results = []
    for o in objectives:
        if o.metric in (*RESOURCE_METRICS, *COST_METRICS, *LAG_METRICS, "diff_rate", "stale_rate"):
            continue  # judged elsewhere: evaluate_resources, _cost, _lag, _diffs, _stale
        blocks = blocks_for(o.endpoint, o.phase)
        measured = blocks.metric(o.metric)
        short = 0
        if blocks.n >= max(min_blocks, 2):
            boot = bootstrap_metric(blocks, o.metric, resamples=resamples, rng=rng)
            low, high = (float(x) for x in np.nanquantile(boot, [0.025, 0.975]))
        else:
            low = high = math.nan
            short = blocks.n
        if math.isnan(measured):
            passed = False  # nothing measured cannot meet an objective
        elif o.bound == "max":
            passed = measured <= o.limit
        else:
            passed = measured >= o.limit
        results.append(
            SloResult(
                objective=o, measured=measured, low=low, high=high, passed=passed, short=short
            )
        )
    return results


def evaluate_resources(
    objectives: list[Objective],
    cpu_percent: list[float],
    rss_mib: list[float],
    *,
    cores: float,
    memory_mib: float,
) -> list[SloResult]:
    """``cpu`` (mean, share of ``cores``) and ``memory`` (peak RSS, share of ``memory_mib``)."""
    results = []
    for o in objectives:
        if o.metric == "cpu":
            values = [c / 100.0 / cores for c in cpu_percent]
            measured = float(np.mean(values)) if values else math.nan
        elif o.metric == "memory":
            values = [m / memory_mib for m in rss_mib]
            measured = max(values) if values else math.nan
        else:
            continue
        low, high = (min(values), max(values)) if values else (math.nan, math.nan)
        passed = not math.isnan(measured) and measured <= o.limit
        results.append(SloResult(objective=o, measured=measured, low=low, high=high, passed=passed))
    return results


def evaluate_cost(
    objectives: list[Objective], loads: Sequence[tuple[Sequence[str], Mapping[str, float]]]
) -> list[SloResult]:
    """Cost objectives on each load's cost: ``(its endpoints, RequestCost.metrics())``.

    A load's cost is of all its requests: an objective for one endpoint is
    judged on the loads of that endpoint alone; every load must meet it.
    """
    results = []
    for o in objectives:
        if o.metric not in COST_METRICS:
            continue
        key = COST_METRICS[o.metric]
        values = [
            m[key]
            for endpoints, m in loads
            if key in m and (o.endpoint is None or list(endpoints) == [o.endpoint])
        ]
        measured = max(values) if values else math.nan
        passed = not math.isnan(measured) and measured <= o.limit
        low, high = (min(values), max(values)) if len(values) > 1 else (math.nan, math.nan)
        results.append(SloResult(objective=o, measured=measured, low=low, high=high, passed=passed))
    return results


def evaluate_diffs(
    objectives: list[Objective], counts: Mapping[str, tuple[int, int]]
) -> list[SloResult]:
    """``diff_rate`` on a replay's comparisons: per endpoint, (answers that differ,
    answers compared); an objective without an endpoint is judged on them all."""
    results = []
    for o in objectives:
        if o.metric != "diff_rate":
            continue
        chosen = [c for e, c in counts.items() if o.endpoint is None or e == o.endpoint]
        results.append(_share(o, sum(d for d, _ in chosen), sum(n for _, n in chosen)))
    return results


def evaluate_stale(
    objectives: list[Objective], counts_for: Callable[[str | None, str | None], tuple[int, int]]
) -> list[SloResult]:
    """``stale_rate`` on one load: ``counts_for(endpoint, phase)`` gives the selection's
    (stale reads, successes) of the requests with a ``stale=`` predicate."""
    return [
        _share(o, *counts_for(o.endpoint, o.phase)) for o in objectives if o.metric == "stale_rate"
    ]


def _share(o: Objective, count: int, of: int) -> SloResult:
    """``count`` of ``of`` against a bound on their share, with a Clopper-Pearson
    interval: exact for a count, also at 0 of n."""
    from scipy.stats import beta  # only these objectives need it

    measured = count / of if of else math.nan
    low = high = math.nan
    if of:
        low = float(beta.ppf(0.025, count, of - count + 1)) if count else 0.0
        high = float(beta.ppf(0.975, count + 1, of - count)) if count < of else 1.0
    passed = not math.isnan(measured) and measured <= o.limit
    return SloResult(objective=o, measured=measured, low=low, high=high, passed=passed)


def evaluate_lag(objectives: list[Objective], lags: Sequence[ReplicaLag]) -> list[SloResult]:
    """The replicas' lag objectives on each load's lag: the slowest replica of the
    slowest load must meet them. A replica that stopped replicating fails them all,
    whatever its heartbeats said before; heartbeats still pending at the end count
    with the time they had waited, so the value is then a lower bound."""
    results = []
    for o in objectives:
        if o.metric not in LAG_METRICS:
            continue
        rows = [row for lag in lags for row in lag.measured(o.phase) if row.heartbeats]
        values = [row.value(LAG_METRICS[o.metric]) for row in rows]
        measured = max(values) if values else math.nan
        notes = [e for lag in lags for e in lag.errors]
        pending = sum(row.pending for row in rows)
        if pending:
            notes.append(f"{pending} heartbeats not applied by the end: a lower bound")
        stopped = any(lag.errors for lag in lags)
        passed = not math.isnan(measured) and measured <= o.limit and not stopped
        low, high = (min(values), max(values)) if len(values) > 1 else (math.nan, math.nan)
        results.append(
            SloResult(
                objective=o,
                measured=measured,
                low=low,
                high=high,
                passed=passed,
                note="; ".join(notes),
            )
        )
    return results
