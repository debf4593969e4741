"""Run records: ``reports/runs/<timestamp>_<commit>.json``, one per perf session.

::

    {"schema": 1, "kind": "perfsuite-run", "id": <uuid4 hex>, "created": ...,
     "commit": ..., "branch": ...,
     "fingerprint": {...}, "profile": "ci",
     "tests": [{"id", "outcome", "loads": [<encode_load>], "slo": [...],
                "comparisons": {where: [...]}, "warnings": [...],
                "growth": [...], "pool": {...} | null, "resources": [...],
                "cost": [<encode_cost> | null, one per load],
                "ab": {"base": "<ref (sha)> or URL", "pairs": N,
                       "loads": [{"first": ["base" | "candidate", ...],
                                  "endpoints": {endpoint: {metric:
                                      {"base": [...], "candidate": [...]}}},
                                  "cost": {"base": [{...} | null], "candidate": [...]},
                                  "lag": {replica: {"p50" | "p95" | "p99":
                                      {"base": [ms], "candidate": [ms]}}},
                                  "redone": [...]}]},
                "metrics": {"loads": [{"scrapes", "scraped_series", "failed": {job: n},
                                       "errors": {job: [...]},
                                       "dropped_series", "filtered_series", "types",
                                       "series": [{"labels", "t": [s], "v": [...]}]} | null],
                            "expectations": [{"text", "phase", "ok", "judged", "broken",
                                              "report"}]},
                "counts": [{"load", "name", "verdict", "before", "after", "slope", "p",
                            "samples", "text"}],
                "profiles": [{"load", "file", "profiler", "unit", "start", "seconds",
                              "samples", "hottest": [{"name", "self", "total"}],
                              "hotter": [{"name", "change"}], "goroutines": [...]}],
                "machine": [{"seconds", "cores", "others_cores", "steal"} | null],
                "replica_lag": [{"phases": [{"replica", "phase", "role", "heartbeats",
                                             "pending", "p50", "p95", "p99", "max",
                                             "histogram"}],
                                 "seconds": [{"t", "replica", "heartbeats", "p99", "max"}],
                                 "errors": [...]} | null]}]}

``replica_lag`` (optional, one per load): each replica's lag behind the
primary (ms), per phase (``histogram``: HDR, microseconds) and per second
of the load; ``pending``: heartbeats not applied when the load ended (their
wait so far is counted); ``errors``: a replica's own words when one of its
threads stopped.

``machine`` (optional, one per load): what else the machine ran meanwhile:
CPU cores used by processes not of the session (null when the service or its
database is not a local process of ours), and the hypervisor's steal share.
``cost`` is what each load cost the service's database (statement digests
of its schema, server counters) and CPU, in total and per answered request;
absent when the server's performance_schema could not give it.
``metrics`` only when something was scraped: the series of each load that
the expectations select or ``pin`` names (``t``: seconds from its first
phase's start; a value that is not a number is null), and the ``expect``
markers' verdicts with the judged values at each step.
``counts`` (optional): the growth check of each load's threads, descriptors,
connections and named gauges (``slope`` per second over the longest measured
phase, ``p`` Mann-Kendall's). ``profiles`` (optional): the CPU profiles kept
(a failed test's, or all with ``--perf-flamegraph=always``), each a
collapsed-stacks ``file`` relative to the reports folder; ``hotter``: the
functions whose share of self time grew most against the baseline's profile.
``ab`` only in A/B sessions: its ``loads`` are the candidate's rounds, and
``ab`` has every round's metrics of both builds (``first``: which build ran
first in each pair; ``lag``: each round's lag of each replica over its measured
phases, the replicas being both builds'). The same load data as the baselines
(HDR histograms, blocks, summaries), plus what was judged. Reports are rendered
from these records only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfsuite.load.result import LoadResult
from perfsuite.stats.compare import MetricComparison
from perfsuite.stats.cost import RequestCost
from perfsuite.stats.lag import replica_key
from perfsuite.stats.lag_compare import LAG_METRICS
from perfsuite.stats.slo import SloResult
from perfsuite.store.files import write_json_atomic
from perfsuite.store.records import encode_load

if TYPE_CHECKING:
    from perfsuite.session.ab import Pairs

__all__ = ["SCHEMA", "encode_cost", "encode_pairs", "entry_for_test", "write_run"]

SCHEMA = 1
KIND = "perfsuite-run"


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 6)  # NaN -> null


def _slo(r: SloResult) -> dict[str, Any]:
    o = r.objective
    return {
        "metric": o.metric,
        "endpoint": o.endpoint,
        "phase": o.phase,
        "limit": o.limit,
        "bound": o.bound,
        "measured": _num(r.measured),
        "low": _num(r.low),
        "high": _num(r.high),
        "passed": r.passed,
        "text": r.describe(),
    }


def _comparison(c: MetricComparison) -> dict[str, Any]:
    return {
        "metric": c.metric,
        "verdict": c.verdict,
        "baseline": _num(c.baseline),
        "current": _num(c.current),
        "change": _num(c.change),
        "low": _num(c.low),
        "high": _num(c.high),
        "p_value": _num(c.p_value),
        "method": c.method,
        "tolerance": c.tolerance,
        "reason": c.reason,
        "text": c.describe(),
    }


# The metrics of each round an A/B entry keeps, per side (the candidate's rounds are
# the entry's loads, whole; the base's are summarised).
AB_METRICS = ("p50", "p95", "p99", "mean", "error_rate", "rps")


def encode_pairs(loads: Sequence[Pairs]) -> dict[str, Any] | None:
    """An A/B test's pairs: the base, and per load and endpoint each round's metrics."""
    if not loads:
        return None
    out = []
    for pairs in loads:
        endpoints = pairs.candidate[0].endpoints if pairs.candidate else []
        out.append(
            {
                "first": list(pairs.order),
                "endpoints": {
                    e: {
                        m: {
                            side: [_num(r.blockset(endpoint=e).metric(m)) for r in rounds]
                            for side, rounds in (
                                ("base", pairs.base),
                                ("candidate", pairs.candidate),
                            )
                        }
                        for m in AB_METRICS
                    }
                    for e in endpoints
                },
                # Each round's cost per request (null: not measured), base and candidate.
                "cost": {
                    side: [
                        None if c is None else {k: _num(v) for k, v in c.gated().items()}
                        for c in costs
                    ]
                    for side, costs in (
                        ("base", pairs.base_cost),
                        ("candidate", pairs.candidate_cost),
                    )
                },
                # Each round's replica lag over its measured phases, ms (a round not watched,
                # as a base build given by URL: null, in its pair's place).
                "lag": _paired_lag(pairs),
                # Pairs run again, and why (the generator saturated in one of their rounds).
                "redone": list(pairs.redone),
            }
        )
    return {"base": loads[0].base_label, "pairs": len(loads[0].base), "loads": out}


def _paired_lag(pairs: Pairs) -> dict[str, dict[str, dict[str, list[float | None]]]]:
    """Per replica and lag percentile, each round's value (ms), base and candidate;
    null where a round has none (not watched, or no heartbeat), so that the n-th
    values of both sides stay the n-th pair."""
    sides = {
        side: [
            {replica_key(row.replica): row for row in (lag.measured() if lag else ())}
            for lag in lags
        ]
        for side, lags in (("base", pairs.base_lag), ("candidate", pairs.candidate_lag))
    }
    keys = dict.fromkeys(key for rounds in sides.values() for rows in rounds for key in rows)
    return {
        key: {
            q: {
                side: [_num(rows[key].value(q)) if key in rows else None for rows in rounds]
                for side, rounds in sides.items()
            }
            for q in LAG_METRICS
        }
        for key in keys
    }


def encode_cost(cost: RequestCost, *, top: int = 20) -> dict[str, Any]:
    """One load's cost, JSON-ready: per request, totals, and its costliest statements."""
    return {
        "requests": cost.requests,
        "endpoints": list(cost.endpoints),
        "per_request": {name: _num(value) for name, value in cost.metrics().items()},
        "queries": cost.queries,
        "cpu_seconds": None if cost.cpu_seconds is None else _num(cost.cpu_seconds),
        "status": dict(cost.status),
        "phases": [
            {
                "phase": p.phase,
                "role": p.role,
                "requests": p.requests,
                "per_request": {name: _num(value) for name, value in p.metrics().items()},
            }
            for p in cost.phases
        ],
        "statements": [
            {
                "digest": s.digest,
                "text": s.text,
                "calls": s.calls,
                "total_ms": _num(s.total_ms),
                "max_ms": None if s.max_ms is None else _num(s.max_ms),
                "rows_examined": s.rows_examined,
                "rows_sent": s.rows_sent,
                "no_index_used": s.no_index_used,
                "no_good_index_used": s.no_good_index_used,
                "tmp_disk_tables": s.tmp_disk_tables,
                "sort_merge_passes": s.sort_merge_passes,
                "errors": s.errors,
            }
            for s in cost.statements[:top]
        ],
    }


def entry_for_test(
    *,
    test_id: str,
    outcome: str,
    results: Sequence[LoadResult],
    slo: Sequence[SloResult] = (),
    comparisons: Mapping[str, Sequence[MetricComparison]] | None = None,
    warnings: Sequence[str] = (),
    growth: Sequence[Mapping[str, Any]] = (),
    pool: Mapping[str, Any] | None = None,
    resources: Sequence[Mapping[str, Any]] = (),
    ab: Mapping[str, Any] | None = None,
    cost: Mapping[int, RequestCost] | None = None,
    metrics: Mapping[str, Any] | None = None,
    counts: Sequence[Mapping[str, Any]] = (),
    profiles: Sequence[Mapping[str, Any]] = (),
    diffs: Sequence[Mapping[str, Any]] = (),
    machine: Sequence[Mapping[str, Any] | None] = (),
    replica_lag: Sequence[Mapping[str, Any] | None] = (),
) -> dict[str, Any]:
    """One test of a run record, JSON-ready (``ab``: :func:`encode_pairs`; ``metrics``:
    the scraped series per load and the expectations' verdicts; ``counts``: the growth
    verdicts; ``profiles``: the kept profiles' files and hottest functions; ``diffs``:
    each compared replay's differences per endpoint; ``machine``: what else the
    machine ran during each load, null where not watched; ``replica_lag``: the
    replicas' lag during each load, null where there was none)."""
    extra: dict[str, Any] = {"ab": dict(ab)} if ab else {}
    if any(m is not None for m in machine):
        extra["machine"] = [dict(m) if m is not None else None for m in machine]
    if any(lag is not None for lag in replica_lag):
        extra["replica_lag"] = [dict(lag) if lag is not None else None for lag in replica_lag]
    if diffs:
        extra["diffs"] = [dict(d) for d in diffs]
    if metrics:
        extra["metrics"] = dict(metrics)
    if counts:
        extra["counts"] = [dict(c) for c in counts]
    if profiles:
        extra["profiles"] = [dict(p) for p in profiles]
    if cost:  # one per load, null for a load without it
        extra["cost"] = [encode_cost(cost[i]) if i in cost else None for i in range(len(results))]
    return {
        **extra,
        "id": test_id,
        "outcome": outcome,
        "loads": [encode_load(r) for r in results],
        "slo": [_slo(r) for r in slo],
        "comparisons": {
            where: [_comparison(c) for c in cs] for where, cs in (comparisons or {}).items()
        },
        "warnings": list(warnings),
        "growth": list(growth),
        "pool": dict(pool) if pool is not None else None,
        "resources": list(resources),
    }


def write_run(
    folder: Path,
    *,
    commit: str | None,
    branch: str | None = None,
    fingerprint: Mapping[str, Any],
    profile: str,
    tests: list[dict[str, Any]],
) -> tuple[Path, dict[str, Any]]:
    """Write a run record atomically; return its path and the record."""
    now = datetime.now(UTC)
    record = {
        "schema": SCHEMA,
        "kind": KIND,
        # Parallel CI jobs of one commit can start in the same second: the
        # random id is what tells their runs apart in a shared history.
        "id": uuid.uuid4().hex,
        "created": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "commit": commit,
        "branch": branch,
        "fingerprint": dict(fingerprint),
        "profile": profile,
        "tests": tests,
    }
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{now:%Y%m%dT%H%M%SZ}_{(commit or 'nocommit')[:12]}"
    path = folder / f"{name}.json"
    n = 1
    while path.exists():  # two sessions in one second
        n += 1
        path = folder / f"{name}_{n}.json"
    write_json_atomic(path, record)
    return path, record
