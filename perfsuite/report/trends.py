"""Trend series from the history: one per test, endpoint and metric, with
the baseline band and the change points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from perfsuite.stats.changepoint import ChangePoint, change_points
from perfsuite.stats.trend import Band, prediction_band
from perfsuite.store.history import HistoryRun, Point

__all__ = ["METRIC_INFO", "MetricInfo", "Series", "Shift", "metric_info", "trend_series"]


class MetricInfo(NamedTuple):
    """How a metric is titled and judged."""

    title: str
    unit: str
    log: bool  # judged on a log scale
    higher_worse: bool


METRIC_INFO: dict[str, MetricInfo] = {
    "p50": MetricInfo("p50 latency", "ms", True, True),
    "p95": MetricInfo("p95 latency", "ms", True, True),
    "p99": MetricInfo("p99 latency", "ms", True, True),
    "mean": MetricInfo("mean latency", "ms", True, True),
    "rps": MetricInfo("throughput", "req/s", True, False),
    "error_rate": MetricInfo("error rate", "%", False, True),
    "median": MetricInfo("median", "ms", True, True),
    "min": MetricInfo("min", "ms", True, True),
    "ops": MetricInfo("operations", "ops/s", True, False),
    "queries_per_request": MetricInfo("queries per request", "", False, True),
    "rows_examined_per_request": MetricInfo("rows examined per request", "", True, True),
    "db_ms_per_request": MetricInfo("database time per request", "ms", True, True),
    "cpu_ms_per_request": MetricInfo("service CPU per request", "ms", True, True),
    "no_index_used": MetricInfo("statements without an index", "", False, True),
    "replica_lag_p50_ms": MetricInfo("replica lag p50", "ms", True, True),
    "replica_lag_p99_ms": MetricInfo("replica lag p99", "ms", True, True),
}


def metric_info(metric: str) -> MetricInfo:
    """A metric's title, unit and scale (a plain latency-like one when unknown)."""
    return METRIC_INFO.get(metric, MetricInfo(metric, "", True, True))


@dataclass(frozen=True, kw_only=True)
class Shift:
    """A change point, named by the run (commit) that introduced it."""

    run: HistoryRun
    point: ChangePoint
    worse: bool


@dataclass(kw_only=True)
class Series:
    """One metric of one test and endpoint across runs (oldest first)."""

    test: str
    endpoint: str
    metric: str
    runs: list[HistoryRun]
    values: list[float | None]
    bands: list[Band | None] = field(default_factory=list)
    shifts: list[Shift] = field(default_factory=list)


def _bands(
    values: Sequence[float | None], window: int, log: bool, cuts: Sequence[int]
) -> list[Band | None]:
    """Run i's band: from the up to ``window`` runs before it, since the level they are at.

    A run at a change point is judged against the old level (and falls out
    of its band); the runs after it against the new level only, as a
    re-saved baseline would be, not against a mix of both.
    """
    bands: list[Band | None] = []
    for i in range(len(values)):
        start = max([0, *(c for c in cuts if c < i)])
        before = [v for v in values[max(start, i - window) : i] if v is not None]
        bands.append(prediction_band(before, log=log) if len(before) >= 3 else None)
    return bands


def _shifts(
    runs: Sequence[HistoryRun], values: Sequence[float | None], metric: str, p_value: float
) -> list[Shift]:
    _, _, log, higher_worse = metric_info(metric)
    kept = [
        (run, v)
        for run, v in zip(runs, values, strict=True)
        if v is not None and (v > 0 or not log)
    ]
    if len(kept) < 6:
        return []
    points = change_points([v for _, v in kept], log=log, p_value=p_value)
    return [
        Shift(run=kept[c.index][0], point=c, worse=(c.after > c.before) == higher_worse)
        for c in points
    ]


def trend_series(
    runs: Sequence[HistoryRun],
    points: Sequence[Point],
    *,
    metrics: Sequence[str],
    window: int = 10,
    p_value: float = 0.001,
) -> dict[tuple[str, str], list[Series]]:
    """Per (test, endpoint): a series for each of ``metrics`` that has data."""
    order = {run.id: i for i, run in enumerate(runs)}
    table: dict[tuple[str, str, str], dict[int, float | None]] = {}
    for p in points:
        if p.run_id in order and p.metric in metrics:
            table.setdefault((p.test, p.endpoint, p.metric), {})[p.run_id] = p.value
    out: dict[tuple[str, str], list[Series]] = {}
    for (test, endpoint, metric), by_run in sorted(
        table.items(), key=lambda kv: (kv[0][0], kv[0][1], metrics.index(kv[0][2]))
    ):
        chosen = [r for r in runs if r.id in by_run]
        values = [by_run[r.id] for r in chosen]
        if metric == "error_rate":  # shown in percent
            values = [None if v is None else v * 100.0 for v in values]
        log = metric_info(metric).log
        shifts = _shifts(chosen, values, metric, p_value)
        cuts = [chosen.index(s.run) for s in shifts]
        out.setdefault((test, endpoint), []).append(
            Series(
                test=test,
                endpoint=endpoint,
                metric=metric,
                runs=chosen,
                values=values,
                bands=_bands(values, window, log, cuts),
                shifts=shifts,
            )
        )
    return out
