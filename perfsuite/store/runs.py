"""Run records: ``reports/runs/<timestamp>_<commit>.json``, one per perf session.

::

    {"schema": 1, "kind": "perfsuite-run", "id": <uuid4 hex>, "created": ...,
     "commit": ..., "branch": ...,
     "fingerprint": {...}, "profile": "ci",
     "tests": [{"id", "outcome", "loads": [<encode_load>], "slo": [...],
                "comparisons": {where: [...]}, "warnings": [...],
                "growth": [...], "pool": {...} | null, "resources": [...]}]}

The same load data as the baselines (HDR histograms, blocks, summaries),
plus what was judged. Reports are rendered from these records only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perfsuite.load.result import LoadResult
from perfsuite.stats.compare import MetricComparison
from perfsuite.stats.slo import SloResult
from perfsuite.store.files import write_json_atomic
from perfsuite.store.records import encode_load

__all__ = ["SCHEMA", "entry_for_test", "write_run"]

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
) -> dict[str, Any]:
    """One test of a run record, JSON-ready."""
    return {
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
