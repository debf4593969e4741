"""What goes into the history: run records and pytest-benchmark's saved runs.

A run record gives, per test and endpoint, the same metrics the baseline
gate judges (over the measured phases, read from the stored blocks), plus
per test the pool check and the service's peak CPU and memory. A
pytest-benchmark file (``.benchmarks/<machine>/NNNN_<commit>_<date>.json``)
gives, per benchmark, its min/median/mean/max/stddev in milliseconds and
its operations per second, so micro and load benchmarks trend side by side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from perfsuite.errors import StoreError
from perfsuite.stats.lag import ReplicaLag, replica_key
from perfsuite.store.history import History
from perfsuite.store.records import decode_load
from perfsuite.store.runs import KIND as RUN_KIND
from perfsuite.store.runs import SCHEMA as RUN_SCHEMA

__all__ = [
    "TREND_METRICS",
    "append_record",
    "benchmark_points",
    "import_paths",
    "record_points",
    "run_uid",
]

# The metrics kept per test and endpoint (latency in ms, error rate as a fraction).
TREND_METRICS = ("p50", "p95", "p99", "mean", "rps", "error_rate")
_BENCH_STATS = ("min", "median", "mean", "max", "stddev")

PointRow = tuple[str, str, str, float | None]


def _finite(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else float(x)


def record_points(record: Mapping[str, Any]) -> Iterator[PointRow]:
    """(test, endpoint, metric, value) of a run record.

    A test stopped by Ctrl-C or SIGTERM gives none: a part of a load is not a
    point of its trend (the record keeps what it measured). Nor does an A/B
    test: its rounds are short and run beside another build, not the runs of
    one build that a trend is made of.
    """
    for entry in record["tests"]:
        if entry.get("outcome") == "interrupted" or entry.get("ab"):
            continue
        test = entry["id"]
        loads = entry["loads"]
        for i, data in enumerate(loads):
            stored = decode_load(data)
            if not any(p["role"] == "measure" for p in stored.phases):
                continue
            for endpoint in stored.endpoints:
                name = endpoint if len(loads) == 1 else f"{endpoint} (load {i + 1})"
                try:
                    blocks = stored.blockset(endpoint)
                except ValueError:  # no measured blocks for this endpoint
                    continue
                for metric in TREND_METRICS:
                    yield test, name, metric, _finite(blocks.metric(metric))
        pool = entry.get("pool")
        if pool is not None:
            yield test, "*", "pool_ok", 1.0 if pool["ok"] else 0.0
        costs = entry.get("cost") or []
        for i, cost in enumerate(costs):
            if cost is None:
                continue
            where = "*" if len(costs) == 1 else f"* (load {i + 1})"
            for metric, value in cost["per_request"].items():
                if value is not None:
                    yield test, where, metric, _finite(float(value))
        lags = entry.get("replica_lag") or []
        for i, lag in enumerate(lags):
            if lag is None:
                continue
            for row in ReplicaLag.from_json(lag).measured():
                name = replica_key(row.replica)
                where = name if len(lags) == 1 else f"{name} (load {i + 1})"
                for q in ("p50", "p99"):
                    yield test, where, f"replica_lag_{q}_ms", _finite(row.value(q))
        for series in entry.get("resources", []):
            if series.get("cpu_percent"):
                yield test, "*", "cpu_max", max(series["cpu_percent"])
            if series.get("rss_mib"):
                yield test, "*", "rss_max_mib", max(series["rss_mib"])


def run_uid(record: Mapping[str, Any], fallback: str) -> str:
    """The history key of a run record: its random id (records before it had one: the file name)."""
    return f"run:{record.get('id') or fallback}"


def append_record(history: History, record: Mapping[str, Any], *, uid: str) -> bool:
    """Add a run record to the history; False if it is there already."""
    _check_run(record, uid)
    return history.append(
        uid=uid,
        source="perfsuite",
        created=record["created"],
        commit=record.get("commit"),
        branch=record.get("branch"),
        profile=record.get("profile"),
        fingerprint=record.get("fingerprint"),
        points=list(record_points(record)),
        record=record,
    )


def _check_run(record: Mapping[str, Any], where: str) -> None:
    if record.get("kind") != RUN_KIND:
        raise StoreError(f"{where}: not a perfsuite run record")
    if not isinstance(record.get("schema"), int) or record["schema"] > RUN_SCHEMA:
        raise StoreError(
            f"{where}: run record schema {record.get('schema')!r} is newer than this "
            f"perfsuite reads ({RUN_SCHEMA}); upgrade perfsuite"
        )


def benchmark_points(data: Mapping[str, Any]) -> Iterator[PointRow]:
    """(test, "-", metric, value) of a pytest-benchmark file; times in ms."""
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        test = bench.get("fullname") or bench["name"]
        for key in _BENCH_STATS:
            if stats.get(key) is not None:
                yield test, "-", key, float(stats[key]) * 1000.0
        if stats.get("ops") is not None:
            yield test, "-", "ops", float(stats["ops"])


def _is_benchmark(data: Any) -> bool:
    return isinstance(data, dict) and "benchmarks" in data and "machine_info" in data


def _append_benchmark(history: History, data: Mapping[str, Any], path: Path) -> bool:
    commit = data.get("commit_info") or {}
    created = str(data.get("datetime") or commit.get("time") or "")
    if not created:
        raise StoreError(f"{path}: a pytest-benchmark file with no datetime")
    machine = data.get("machine_info") or {}
    # The file's content names it: the same saved run imported twice is one run.
    uid = (
        "pytest-benchmark:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    )
    return history.append(
        uid=uid[:191],
        source="pytest-benchmark",
        created=created.replace("+00:00", "Z"),
        commit=commit.get("id"),
        branch=commit.get("branch"),
        profile=None,
        fingerprint={
            "cpu": (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor"),
            "python": machine.get("python_version"),
            "node": machine.get("node"),
        },
        points=list(benchmark_points(data)),
    )


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.json") if not p.name.startswith(".tmp-"))
        elif path.exists():
            yield path
        else:
            raise StoreError(f"{path}: no such file or folder")


def import_paths(history: History, paths: list[Path]) -> tuple[int, int]:
    """Import run records and pytest-benchmark files (or folders of them).

    Returns (added, already there). Files that are neither are refused.
    """
    added = skipped = 0
    for path in _files(paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: cannot read: {exc}") from exc
        if _is_benchmark(data):
            new = _append_benchmark(history, data, path)
        elif isinstance(data, dict) and data.get("kind") == RUN_KIND:
            new = append_record(history, data, uid=run_uid(data, path.stem))
        else:
            raise StoreError(f"{path}: neither a perfsuite run record nor a pytest-benchmark file")
        added += new
        skipped += not new
    return added, skipped
