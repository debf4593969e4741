"""The pull-request gate: SLOs and the comparison with stored baselines.

After a perf test's body has passed, its load results are judged: each SLO
on its selection, and, with ``--perf-compare``, each endpoint's metrics
against the test's baseline runs of the same environment fingerprint, and
each load's cost per request against theirs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perfsuite.errors import ConfigError, StoreError
from perfsuite.load.result import LoadResult
from perfsuite.probes.machine import MachineLoad, busy_reason
from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.compare import CompareOptions, MetricComparison, compare, run_metrics
from perfsuite.stats.cost import RequestCost
from perfsuite.stats.cost_compare import compare_cost, compare_cost_pairs
from perfsuite.stats.lag import ReplicaLag, lag_blockset, replica_key
from perfsuite.stats.lag_compare import LAG_METRICS, compare_lag, compare_lag_pairs
from perfsuite.stats.levels import current_level
from perfsuite.stats.noise import NoisePrior, pool_noise
from perfsuite.stats.paired import MIN_PAIRS, compare_pairs
from perfsuite.stats.slo import Objective, SloResult, evaluate, evaluate_stale
from perfsuite.store.baselines import BaselineStore, RunRecord
from perfsuite.store.records import (
    StoredLoad,
    decode_blocks,
    decode_load,
    encode_blocks,
    encode_load,
)
from perfsuite.verdict import FAIL_ON, TestVerdict, confirm, judged_of, objectives_for

if TYPE_CHECKING:
    from perfsuite.session.ab import Pairs

__all__ = ["FAIL_ON", "Gate", "TestVerdict", "confirm", "judged_of", "objectives_for"]


class _Stored:
    """One stored run, decoded once, its block sets made once."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.loads: list[StoredLoad] = [decode_load(load) for load in record.loads]
        self._sets: dict[tuple[int, str], BlockSet] = {}
        self._lags: dict[tuple[int, str], BlockSet | None] = {}

    def lag(self, load: int, replica: str) -> BlockSet | None:
        """A replica's lag during load ``load`` as blocks (None: not stored), decoded
        once (the folder's pooled lag noise and the test's comparison both read it)."""
        key = (load, replica)
        if key not in self._lags:
            lags = self.record.lag or []
            stored = lags[load] if len(lags) > load else None
            found = stored.get(replica) if stored else None
            self._lags[key] = lag_blockset(decode_blocks(found)) if found else None
        return self._lags[key]

    def has(self, load: int, endpoint: str) -> bool:
        """Did this run measure that endpoint in that load?"""
        return len(self.loads) > load and endpoint in self.loads[load].endpoints

    def blockset(self, load: int, endpoint: str) -> BlockSet:
        """The endpoint's blocks over the load's measured phases."""
        key = (load, endpoint)
        if key not in self._sets:
            self._sets[key] = self.loads[load].blockset(endpoint)
        return self._sets[key]


def _unbelieved(c: MetricComparison, busy: str) -> MetricComparison:
    """A regression measured on a busy machine: its numbers, no verdict. A neighbour
    slows a run as a slower build would; only a rerun on a quiet machine can tell."""
    if c.verdict != "regressed":
        return c
    method = f"{c.method}; not believed, the machine was busy: {busy}"
    return dataclasses.replace(c, verdict="inconclusive", method=method)


def _cells(runs: Sequence[_Stored]) -> list[tuple[int, str]]:
    """(load, endpoint) measured by every run."""
    if not runs:
        return []
    return [
        (i, endpoint)
        for i, load in enumerate(runs[-1].loads)
        for endpoint in load.endpoints
        if all(r.has(i, endpoint) for r in runs)
    ]


def stale_counts(result: LoadResult, endpoint: str | None, phase: str | None) -> tuple[int, int]:
    """The selection's stale reads and the successes they are among (``stale_rate``)."""
    summary = result.summary(endpoint=endpoint, phase=phase)
    if summary.stale is None:
        raise ConfigError(
            f"stale_rate: no request of {endpoint or 'the load'} has a stale= predicate "
            "(Request(..., stale=...) or Step(..., stale=...)) to judge its answers by"
        )
    return summary.stale, summary.stale_of


class Gate:
    """Judges and stores the load results of perf tests."""

    def __init__(
        self,
        store: BaselineStore,
        options: CompareOptions,
        *,
        fingerprint: Mapping[str, Any],
        commit: str | None,
        tests: int = 1,
    ) -> None:
        self.store = store
        self.options = options
        self.fingerprint = dict(fingerprint)
        self.commit = commit
        self.tests = tests  # the session's compared tests: alpha is split over them
        self._levels: dict[str, list[_Stored]] = {}
        self._prior: NoisePrior | None = None
        self._lag_prior: NoisePrior | None = None

    def judge_slo(
        self, results: Sequence[LoadResult], objectives: list[Objective]
    ) -> list[SloResult]:
        """Every objective on every load of the test."""
        out: list[SloResult] = []
        for result in results:

            def blocks_for(endpoint: str | None, phase: str | None, r: LoadResult = result) -> Any:
                return r.blockset(endpoint=endpoint, phase=phase)

            out += evaluate(objectives, blocks_for, min_blocks=self.options.min_blocks)
            out += evaluate_stale(objectives, functools.partial(stale_counts, result))
        return out

    def level(self, test_id: str, runs: Sequence[RunRecord] | None = None) -> list[_Stored]:
        """The test's stored runs of this environment that make up the current level
        (``runs``: the test's stored runs, when already read)."""
        if test_id not in self._levels:
            stored = self.store.runs(test_id) if runs is None else runs
            same = [_Stored(r) for r in stored if r.fingerprint == self.fingerprint]
            series = [[r.blockset(*cell).metric("p50") for r in same] for cell in _cells(same)]
            keep = current_level([r.record.mark for r in same], series)
            self._levels[test_id] = [same[k] for k in keep]
        return self._levels[test_id]

    def prior(self) -> NoisePrior:
        """The run-to-run noise pooled over every test's current level in the folder."""
        if self._prior is None:
            metrics = self.options.metrics
            series = []
            for test, stored in self.store.all_runs().items():
                try:
                    runs = self.level(test, stored)
                except StoreError:
                    continue  # that test's own comparison says what is wrong with its file
                series += [
                    [run_metrics(r.blockset(*c), metrics) for r in runs] for c in _cells(runs)
                ]
            self._prior = pool_noise(series, metrics)
        return self._prior

    def lag_prior(self) -> NoisePrior:
        """The run-to-run noise of lag, pooled over every replica of every test's
        current level in the folder (lag's own: a queue's, not latency's)."""
        if self._lag_prior is None:
            series = []
            for test, stored in self.store.all_runs().items():
                try:
                    runs = self.level(test, stored)
                except StoreError:
                    continue
                keys = {(i, k) for r in runs for i, lag in enumerate(r.record.lag or []) if lag
                        for k in lag}  # fmt: skip
                for load, key in sorted(keys):
                    sets = [b for r in runs if (b := r.lag(load, key)) is not None]
                    series.append([run_metrics(b, LAG_METRICS) for b in sets])
            self._lag_prior = pool_noise(series, LAG_METRICS)
        return self._lag_prior

    def compare(
        self,
        test_id: str,
        results: Sequence[LoadResult],
        costs: Mapping[int, RequestCost] | None = None,
        machine: Sequence[MachineLoad | None] = (),
        lags: Mapping[int, ReplicaLag] | None = None,
    ) -> tuple[dict[str, list[MetricComparison]], list[str]]:
        """Compare each load's endpoints, its cost per request and its replicas' lag
        with the current level of the same fingerprint; a load on a busy machine
        (``machine``, per load) is not believed when it regresses."""
        runs = self.store.runs(test_id)
        if not runs:
            return {}, [f"no baseline for {test_id} in {self.store.folder}: no verdict"]
        if not any(r.fingerprint == self.fingerprint for r in runs):
            diff = _fingerprint_diff(runs[-1].fingerprint, self.fingerprint)
            return {}, [f"the baseline was measured elsewhere ({diff}): no verdict"]
        level = self.level(test_id, runs)
        if not level:  # every stored run was a step not yet confirmed
            return {}, [f"no baseline run of {test_id} in its current level: no verdict"]
        out: dict[str, list[MetricComparison]] = {}
        warnings = []
        rng = np.random.default_rng(12345)
        currents = [decode_load(encode_load(r)) for r in results]
        cells = [(i, e) for i, c in enumerate(currents) for e in c.endpoints]
        # The session's false-alarm rate, split over its tests and this test's endpoints
        # (and its loads' costs, whose times are judged on it too).
        lagged = [(i, r) for i, lag in sorted((lags or {}).items()) for r in lag.replicas()]
        families = len(cells) + len(costs or {}) + len(lagged)
        share = self.options.alpha / max(self.tests, 1) / max(families, 1)
        for i, endpoint in cells:
            if not all(r.has(i, endpoint) for r in level):
                what = f"load {i + 1}" if not all(len(r.loads) > i for r in level) else endpoint
                warnings.append(f"{what}: not in the baseline: no verdict")
                continue
            where = endpoint if len(results) == 1 else f"load {i + 1}, {endpoint}"
            found = compare(
                currents[i].blockset(endpoint),
                [r.blockset(i, endpoint) for r in level],
                self.options,
                prior=self.prior(),
                alpha=share,
                rng=rng,
            )
            busy = self._busy(machine[i] if i < len(machine) else None)
            if busy and any(c.verdict == "regressed" for c in found):
                found = [_unbelieved(c, busy) for c in found]
                what = f"load {i + 1}" if len(results) > 1 else "the load"
                warnings.append(f"{what} ran on a busy machine ({busy}): regressions not believed")
            out[where] = found
        for i, cost in sorted((costs or {}).items()):
            stored = [r.record.cost[i] for r in level if r.record.cost and len(r.record.cost) > i]
            theirs = [c for c in stored if c]
            if theirs:
                where = "cost" if len(results) == 1 else f"load {i + 1}, cost"
                out[where] = compare_cost(
                    cost.gated(), theirs, alpha=share, tolerances=self.options.tolerances
                )
        for i, replica in lagged:
            where = f"{replica_key(replica)} lag"
            where = where if len(results) == 1 else f"load {i + 1}, {where}"
            found_lag = self._compare_lag((lags or {})[i], i, replica, level, share, rng)
            if isinstance(found_lag, str):
                warnings.append(f"{where}: {found_lag}")
            else:
                out[where] = found_lag
        return out, list(dict.fromkeys(warnings))

    def _compare_lag(
        self,
        lag: ReplicaLag,
        load: int,
        replica: str,
        level: Sequence[_Stored],
        alpha: float,
        rng: np.random.Generator,
    ) -> list[MetricComparison] | str:
        """A replica's lag against the baseline runs' (their own spread: the folder's
        pooled noise is latency's, not lag's); why not, as text."""
        current = lag.blockset(replica)
        stored = [b for r in level if (b := r.lag(load, replica_key(replica))) is not None]
        if current is None:
            return "no heartbeat in the measured phases: no verdict"
        if not stored:
            return "not in the baseline: no verdict"
        return compare_lag(
            current, stored, self.options, alpha=alpha, rng=rng, prior=self.lag_prior()
        )

    def _busy(self, machine: MachineLoad | None) -> str:
        if machine is None:
            return ""
        o = self.options
        return busy_reason(machine, max_others=o.max_other_cores, max_steal=o.max_steal)

    def compare_pairs(
        self, loads: Sequence[Pairs]
    ) -> tuple[dict[str, list[MetricComparison]], list[str]]:
        """A/B: judge each load's endpoints, cost and replicas' lag on its pairs of rounds."""
        out: dict[str, list[MetricComparison]] = {}
        warnings = []
        cells = [
            (i, e) for i, p in enumerate(loads) if p.candidate for e in p.candidate[0].endpoints
        ]
        lagged = [(i, r) for i, p in enumerate(loads) for r in _paired_replicas(p)]
        share = self.options.alpha / max(self.tests, 1) / max(len(cells) + len(lagged), 1)
        for i, endpoint in cells:
            pairs = loads[i]
            if len(pairs.base) < MIN_PAIRS:
                warnings.append(f"{len(pairs.base)} pairs of rounds; {MIN_PAIRS} are needed")
            where = endpoint if len(loads) == 1 else f"load {i + 1}, {endpoint}"
            out[where] = compare_pairs(
                [r.blockset(endpoint=endpoint) for r in pairs.base],
                [r.blockset(endpoint=endpoint) for r in pairs.candidate],
                self.options,
                alpha=share,
            )
        for i, pairs in enumerate(loads):
            base = [c.gated() for c in pairs.base_cost if c is not None]
            candidate = [c.gated() for c in pairs.candidate_cost if c is not None]
            if base and candidate:
                where = "cost" if len(loads) == 1 else f"load {i + 1}, cost"
                out[where] = compare_cost_pairs(
                    base, candidate, alpha=share, tolerances=self.options.tolerances
                )
        for i, replica in lagged:
            where = f"{replica_key(replica)} lag"
            where = where if len(loads) == 1 else f"load {i + 1}, {where}"
            sides = _paired_lag(loads[i], replica)
            if sides is None:
                warnings.append(f"{where}: a round without a heartbeat measured: no verdict")
                continue
            out[where] = compare_lag_pairs(*sides, self.options, alpha=share)
        return out, list(dict.fromkeys(warnings))

    def save(
        self,
        test_id: str,
        results: Sequence[LoadResult],
        *,
        judged: str | None = None,
        confirmed: bool = False,
        costs: Mapping[int, RequestCost] | None = None,
        lags: Mapping[int, ReplicaLag] | None = None,
    ) -> None:
        """Store this run as the newest baseline run, with what the gate said of it."""
        costs = costs or {}
        record = RunRecord.new(
            commit=self.commit,
            fingerprint=self.fingerprint,
            loads=[encode_load(r) for r in results],
            judged=judged,
            confirmed=confirmed,
            cost=[
                {k: round(v, 6) for k, v in costs[i].gated().items() if math.isfinite(v)}
                if i in costs
                else None
                for i in range(len(results))
            ]
            if costs
            else None,
            lag=[_lag_json(lags[i]) if i in lags else None for i in range(len(results))]
            if lags
            else None,
        )
        self.store.save(test_id, record)
        self._levels.pop(test_id, None)


def _lag_json(lag: ReplicaLag) -> dict[str, Any]:
    """Each replica's blocks over the load's measured phases (as the gate reads them)."""
    out = {}
    for replica in lag.replicas():
        blocks = lag.measured_blocks(replica)
        if blocks:
            out[replica_key(replica)] = encode_blocks(blocks)
    return out


def _fingerprint_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed) or "unknown difference"


def _paired_replicas(pairs: Pairs) -> list[str]:
    """The replicas whose lag both builds' rounds measured."""
    if not pairs.base_lag or any(lag is None for lag in [*pairs.base_lag, *pairs.candidate_lag]):
        return []
    first = pairs.candidate_lag[0]
    return first.replicas() if first is not None else []


def _paired_lag(pairs: Pairs, replica: str) -> tuple[list[BlockSet], list[BlockSet]] | None:
    """A replica's lag blocks in each round, base and candidate (None: a round has none)."""
    key = replica_key(replica)
    sides: list[list[BlockSet]] = []
    for lags in (pairs.base_lag, pairs.candidate_lag):
        found = []
        for lag in lags:
            named = [r for r in lag.replicas() if replica_key(r) == key] if lag else []
            blocks = lag.blockset(named[0]) if lag is not None and named else None
            if blocks is None:
                return None
            found.append(blocks)
        sides.append(found)
    return sides[0], sides[1]
