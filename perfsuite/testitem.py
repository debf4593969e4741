"""One perf test's state on its pytest item, and what the hooks make of it.

The fixtures put the loads, watches and samples on the item's stash; the
call hook turns them into the pool check, the gate's verdict, JUnit
properties and the test's entry of the run record.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import pytest

from perfsuite.errors import PerfsuiteWarning
from perfsuite.gate import TestVerdict
from perfsuite.load import LoadResult
from perfsuite.probes.machine import MachineLoad
from perfsuite.probes.pool import PoolVerdict, PoolWatch
from perfsuite.probes.prometheus_api import PrometheusAPI
from perfsuite.probes.resources import ResourceSeries
from perfsuite.replay.diff import Differences
from perfsuite.session import PerfSession
from perfsuite.session.ab import Pairs
from perfsuite.session.judging import Rerun
from perfsuite.session.metrics import (
    ScrapedLoad,
    encode_scraped,
    encode_verdict,
    judge_expectations,
    recorded_names,
    unreachable,
)
from perfsuite.session.profiling import (
    KeptProfile,
    baseline_profile,
    encode_profile,
    fails_on_growth,
    judge_load_growth,
    save_baseline_profile,
    save_profile,
)
from perfsuite.session.watchers import Watched
from perfsuite.stats.cost import RequestCost
from perfsuite.stats.growth import GrowthRule, GrowthVerdict
from perfsuite.stats.lag import ReplicaLag
from perfsuite.stats.promql import Expectation, ExpectVerdict
from perfsuite.store.runs import encode_pairs, entry_for_test

__all__ = [
    "AB_KEY",
    "COST_KEY",
    "DIFFS_KEY",
    "EXPECTATIONS_KEY",
    "EXPECT_KEY",
    "GROWTH_KEY",
    "POOL_KEY",
    "PROFILES_KEY",
    "RESOURCES_KEY",
    "RESULTS_KEY",
    "SESSION_KEY",
    "VERDICT_KEY",
    "WATCHED_KEY",
    "WATCHES_KEY",
    "entry",
    "expect_failures",
    "gate_failures",
    "growth_failures",
    "keep_profiles",
    "lag_of",
    "pool_failures",
    "record_properties",
]

SESSION_KEY = pytest.StashKey[PerfSession]()
RESULTS_KEY = pytest.StashKey[list[LoadResult]]()
VERDICT_KEY = pytest.StashKey[TestVerdict]()
WATCHES_KEY = pytest.StashKey[list[PoolWatch]]()
POOL_KEY = pytest.StashKey[PoolVerdict]()
RESOURCES_KEY = pytest.StashKey[list[ResourceSeries]]()
AB_KEY = pytest.StashKey[list[Pairs]]()
COST_KEY = pytest.StashKey[dict[int, RequestCost]]()  # by the load's index in RESULTS_KEY
EXPECTATIONS_KEY = pytest.StashKey[list[Expectation]]()  # the expect markers, parsed
EXPECT_KEY = pytest.StashKey[list[tuple[int, ExpectVerdict]]]()  # (load index, verdict)
WATCHED_KEY = pytest.StashKey[dict[int, Watched]]()  # by the load's index, as COST_KEY
GROWTH_KEY = pytest.StashKey[list[tuple[int, GrowthVerdict]]]()  # (load index, verdict)
PROFILES_KEY = pytest.StashKey[list[KeptProfile]]()
DIFFS_KEY = pytest.StashKey[list[Differences]]()  # each compared replay's


def record_properties(item: pytest.Item) -> None:
    """JUnit XML properties (what record_property does), so CI systems show the numbers."""
    for result in item.stash.get(RESULTS_KEY, []):
        for endpoint in result.endpoints:
            m = result.measured(endpoint)
            for name, value in (
                ("requests", m.requests),
                ("ok", m.ok),
                ("errors", m.errors),
                ("error_rate", round(m.error_rate, 6)),
                ("rps", round(m.ok_rps, 3)),
                ("p50_ms", round(m.latency.p50, 3)),
                ("p95_ms", round(m.latency.p95, 3)),
                ("p99_ms", round(m.latency.p99, 3)),
                ("mean_ms", round(m.latency.mean, 3)),
                ("p99_ok_ms", round(m.latency_ok.p99, 3)),
            ):
                item.user_properties.append((f"perf.{endpoint}.{name}", value))
            if m.stale is not None:
                item.user_properties.append((f"perf.{endpoint}.stale_reads", m.stale))
    verdict = item.stash.get(VERDICT_KEY, None)
    if verdict is not None:
        if verdict.ab_base:
            item.user_properties.append(("perf.ab.base", verdict.ab_base))
        for r in verdict.slo:
            item.user_properties.append(
                (f"perf.slo.{r.objective.metric}", "pass" if r.passed else "fail")
            )
        for where, comparisons in verdict.comparisons.items():
            for c in comparisons:
                item.user_properties.append((f"perf.{where}.{c.metric}.verdict", c.verdict))
    pool = item.stash.get(POOL_KEY, None)
    if pool is not None:
        item.user_properties.append(("perf.pool", pool.status))
    costs = _costs(item)
    if costs:  # the last load's
        for name, value in costs[max(costs)].metrics().items():
            item.user_properties.append((f"perf.cost.{name}", round(value, 6)))
    lags = [lag for lag in lag_of(item) if lag is not None]
    if lags:  # the last load's, per replica over its measured phases
        for n, row in enumerate(lags[-1].measured(), 1):
            for q in ("p50", "p99", "max"):
                value = round(row.value(q), 3)
                item.user_properties.append((f"perf.replica_lag.{n}.{q}_ms", value))


def pool_failures(item: pytest.Item) -> list[str]:
    """Wait for the pool to go idle after the test's last load; why it did not, if so."""
    watches = item.stash.get(WATCHES_KEY, [])
    if not watches:
        return []
    verdict = watches[-1].wait_idle()
    item.stash[POOL_KEY] = verdict
    return [] if verdict.ok else ["connection pool did not return to idle:\n" + verdict.report()]


def gate_failures(item: pytest.Item) -> list[str]:
    """Judge the test's loads (SLOs, baselines); the failures its verdict asks for."""
    session = item.config.stash[SESSION_KEY]
    results = item.stash.get(RESULTS_KEY, [])
    marks = [dict(m.kwargs) for m in item.iter_markers("slo")]
    if not results and not marks:
        return []

    def rerun() -> Rerun:
        item.stash[RESULTS_KEY] = []
        item.stash[COST_KEY] = {}
        item.stash[WATCHED_KEY] = {}
        item.runtest()
        return item.stash.get(RESULTS_KEY, []), _costs(item), _lags(item)

    resources = item.stash.get(RESOURCES_KEY, [])
    verdict = session.judging.judge(
        session.test_id(item.path, item.nodeid),
        results,
        marks,
        rerun,
        resources,
        ab=_ab_pairs(item),
        costs=_costs(item),
        diffs=_diff_counts(item),
        machine=lambda: _machine(item),
        lags=_lags(item),
    )
    item.stash[VERDICT_KEY] = verdict
    for warning in verdict.warnings:
        warnings.warn(PerfsuiteWarning(f"{item.nodeid}: {warning}"), stacklevel=1)
    return verdict.failures(session.judging.fail_on)


def expect_failures(item: pytest.Item) -> list[str]:
    """Judge the test's ``expect`` markers on what was scraped during its loads."""
    expectations = item.stash.get(EXPECTATIONS_KEY, [])
    if not expectations:
        return []
    results = item.stash.get(RESULTS_KEY, [])
    scraped = _scraped(item)
    url = item.config.stash[SESSION_KEY].config.metrics.prometheus_url
    remote = PrometheusAPI(url) if url else None
    try:
        verdicts, problems = judge_expectations(
            expectations, [(r, scraped.get(i)) for i, r in enumerate(results)], remote=remote
        )
    finally:
        if remote is not None:
            remote.close()
    item.stash[EXPECT_KEY] = verdicts
    down = unreachable(scraped.values())
    for text in down:
        warnings.warn(PerfsuiteWarning(f"{item.nodeid}: {text}"), stacklevel=1)
    failures = []
    for _, verdict in verdicts:
        if not verdict.ok:
            # No value at all may be a target that never answered: say which.
            extra = "".join(f"\n  {text}" for text in down) if verdict.judged == 0 else ""
            failures.append(verdict.report() + extra)
    return problems + failures


def growth_failures(item: pytest.Item) -> list[str]:
    """Judge the counts that leak (threads, descriptors, connections, named gauges)."""
    session = item.config.stash[SESSION_KEY]
    c = session.config.profiling
    if not c.growth:
        return []
    rule = GrowthRule(min_rise=c.min_rise)
    results = item.stash.get(RESULTS_KEY, [])
    verdicts = item.stash.setdefault(GROWTH_KEY, [])
    for index, watched in sorted(item.stash.get(WATCHED_KEY, {}).items()):
        for verdict in judge_load_growth(results[index], watched, rule, c.growth_metrics):
            verdicts.append((index, verdict))
    failing = []
    for _, v in verdicts:
        if v.leaked and fails_on_growth(v.name, c):
            failing.append(v.text())
        elif v.leaked:
            note = f"{item.nodeid}: {v.text()} (reported, not failed)"
            warnings.warn(PerfsuiteWarning(note), stacklevel=1)
    if not failing:
        return []
    return ["the service kept what the load gave it:\n  " + "\n  ".join(failing)]


def keep_profiles(item: pytest.Item, *, failed: bool) -> list[KeptProfile]:
    """Write the test's profiles beside the run records when they are kept (and beside
    the baselines when a baseline is saved); say once why one could not be taken."""
    session = item.config.stash[SESSION_KEY]
    test_id = session.test_id(item.path, item.nodeid)
    watched = item.stash.get(WATCHED_KEY, {})
    for w in watched.values():
        if w.profile_error:
            session.loads.profiling.note(w.profile_error)
    taken = [(i, w.profile) for i, w in sorted(watched.items()) if w.profile is not None]
    if not taken:
        return []
    if session.judging.save_baseline and not failed:
        save_baseline_profile(
            session.config.baseline.dir / "profiles", test_id, taken[-1][1].stacks
        )
    if not session.keeps_profile(item, failed=failed):
        return []
    base = baseline_profile(session.config.baseline.dir / "profiles", test_id)
    folder = session.records.reports_dir / "profiles"
    stem = f"{int(time.time())}-{os.getpid()}"
    kept = []
    for index, profile in taken:
        path = save_profile(folder, test_id, index, stem, profile.stacks)
        relative = path.relative_to(session.records.reports_dir).as_posix()
        kept.append(KeptProfile(load=index, path=relative, profile=profile, base=base))
    item.stash[PROFILES_KEY] = kept
    return kept


def _scraped(item: pytest.Item) -> dict[int, ScrapedLoad]:
    """What was scraped during each load of the test, by the load's index."""
    watched = item.stash.get(WATCHED_KEY, {})
    return {i: w.scraped for i, w in watched.items() if w.scraped is not None}


def _costs(item: pytest.Item) -> dict[int, RequestCost]:
    costs: dict[int, RequestCost] = item.stash.get(COST_KEY, {})
    return costs


def _ab_pairs(item: pytest.Item) -> list[Pairs]:
    pairs: list[Pairs] = item.stash.get(AB_KEY, [])
    return pairs


def entry(item: pytest.Item, outcome: str) -> dict[str, Any]:
    """The test's entry of the run record."""
    session = item.config.stash[SESSION_KEY]
    verdict = item.stash.get(VERDICT_KEY, None)
    pool = item.stash.get(POOL_KEY, None)
    results: list[LoadResult] = item.stash.get(RESULTS_KEY, [])
    return entry_for_test(
        test_id=session.test_id(item.path, item.nodeid),
        outcome=outcome,
        results=results,
        ab=encode_pairs(_ab_pairs(item)),
        slo=verdict.slo if verdict else (),
        comparisons=verdict.comparisons if verdict else None,
        warnings=verdict.warnings if verdict else (),
        growth=[
            {"per_minute": s.per_minute, "low": s.low, "high": s.high, "too_fast": bad}
            for s, bad in (verdict.growth if verdict else [])
        ],
        pool=None
        if pool is None
        else {
            "ok": pool.ok,
            "judged": pool.judged,
            "reasons": pool.reasons,
            "report": pool.report(),
            "series": pool.series(),
        },
        resources=[r.as_json() for r in item.stash.get(RESOURCES_KEY, [])],
        cost=_costs(item),
        metrics=_metrics(item, len(results)),
        counts=[{"load": i, **_growth_json(v)} for i, v in item.stash.get(GROWTH_KEY, [])],
        profiles=[encode_profile(k) for k in item.stash.get(PROFILES_KEY, [])],
        diffs=[d.as_json() for d in item.stash.get(DIFFS_KEY, [])],
        machine=[m.as_json() if m is not None else None for m in _machine(item)],
        replica_lag=[lag.as_json() if lag is not None else None for lag in lag_of(item)],
    )


def _watched(item: pytest.Item) -> list[Watched | None]:
    """What the watchers gathered during each of the test's loads (None: not watched)."""
    watched = item.stash.get(WATCHED_KEY, {})
    return [watched.get(i) for i in range(len(item.stash.get(RESULTS_KEY, [])))]


def _machine(item: pytest.Item) -> list[MachineLoad | None]:
    """What else the machine ran during each of the test's loads (None: not watched)."""
    return [w.machine if w is not None else None for w in _watched(item)]


def lag_of(item: pytest.Item) -> list[ReplicaLag | None]:
    """The replicas' lag during each of the test's loads (None: no replicas)."""
    return [w.lag if w is not None else None for w in _watched(item)]


def _lags(item: pytest.Item) -> dict[int, ReplicaLag]:
    """The replicas' lag of each of the test's loads that had replicas, by load."""
    return {i: lag for i, lag in enumerate(lag_of(item)) if lag is not None}


def _diff_counts(item: pytest.Item) -> dict[str, tuple[int, int]] | None:
    """The test's compared replays, summed per endpoint (None: no answer was compared)."""
    found = item.stash.get(DIFFS_KEY, [])
    if not found:
        return None
    counts: dict[str, tuple[int, int]] = {}
    for diffs in found:
        for name, (differ, compared) in diffs.counts().items():
            was = counts.get(name, (0, 0))
            counts[name] = (was[0] + differ, was[1] + compared)
    return counts


def _growth_json(v: GrowthVerdict) -> dict[str, Any]:
    return {
        "name": v.name,
        "verdict": v.verdict,
        "before": v.before,
        "after": v.after,
        "slope": None if v.slope is None else round(v.slope, 6),
        "p": v.p,
        "samples": v.steady_samples,
        "text": v.text(),
    }


def _metrics(item: pytest.Item, loads: int) -> dict[str, Any] | None:
    scraped = _scraped(item)
    verdicts = item.stash.get(EXPECT_KEY, [])
    if not scraped and not verdicts:
        return None
    config = item.config.stash[SESSION_KEY].config.metrics
    pins = config.pin
    names = recorded_names(item.stash.get(EXPECTATIONS_KEY, []), pins)
    return {
        "loads": [
            encode_scraped(scraped[i], names, config.record_series) if i in scraped else None
            for i in range(loads)
        ],
        "expectations": [encode_verdict(load, v) for load, v in verdicts],
        "pins": list(pins),
    }
