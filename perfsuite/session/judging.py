"""Judging a test: its SLOs, its resources, and the comparison with its baselines."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil

from perfsuite.config import PerfConfig
from perfsuite.errors import ConfigError
from perfsuite.gate import FAIL_ON, Gate, TestVerdict, confirm, judged_of, objectives_for
from perfsuite.load import LoadResult
from perfsuite.probes.machine import MachineLoad
from perfsuite.probes.resources import ResourceSeries
from perfsuite.session.ab import Pairs
from perfsuite.stats.compare import CompareOptions
from perfsuite.stats.cost import RequestCost
from perfsuite.stats.lag import ReplicaLag
from perfsuite.stats.slo import (
    COST_METRICS,
    LAG_METRICS,
    RESOURCE_METRICS,
    Objective,
    SloResult,
    evaluate_cost,
    evaluate_diffs,
    evaluate_lag,
    evaluate_resources,
)
from perfsuite.stats.trend import theil_sen
from perfsuite.store.baselines import BaselineStore, commit_of, fingerprint

__all__ = ["Judging", "Rerun"]

# What a rerun of the test measured: its loads, their costs and replicas' lag (by load).
Rerun = tuple[list[LoadResult], Mapping[int, RequestCost], Mapping[int, ReplicaLag]]


class Judging:
    """What the options ask of the gate, and the gate itself (made on first use)."""

    def __init__(
        self,
        config: PerfConfig,
        *,
        provider: Callable[[], str],
        compare: bool,
        save_baseline: bool,
        confirm: bool,
        fail_on: frozenset[str] | None,
    ) -> None:
        self.config = config
        self._provider = provider
        self.default_slo = objectives_for(config.slo, [])  # fail early on a bad value
        self.compare = compare
        self.save_baseline = save_baseline
        self.confirm = confirm
        self.fail_on: frozenset[str] = fail_on or frozenset(FAIL_ON)
        self._gate: Gate | None = None
        # The perf tests of this session (set at collection): the false-alarm rate is theirs.
        self.tests = 1

    def gate(self) -> Gate:
        """The SLO and baseline gate, made on first use (it reads the git commit)."""
        if self._gate is None:
            b = self.config.baseline
            self._gate = Gate(
                BaselineStore(b.dir, window=b.window),
                CompareOptions(
                    metrics=b.metrics,
                    alpha=b.alpha,
                    tolerance=b.tolerance,
                    tolerances=b.tolerances,
                    min_runs=b.min_runs,
                    min_blocks=b.min_blocks,
                    max_other_cores=b.max_other_cores,
                    max_steal=b.max_steal,
                ),
                fingerprint=fingerprint(
                    profile=self.config.profile.name, provider=self._provider()
                ),
                commit=commit_of(self.config.rootdir),
                tests=self.tests,
            )
        return self._gate

    def judge(
        self,
        test_id: str,
        results: list[LoadResult],
        marks: Sequence[Mapping[str, Any]],
        rerun: Callable[[], Rerun],
        resources: Sequence[ResourceSeries] = (),
        ab: Sequence[Pairs] = (),
        costs: Mapping[int, RequestCost] | None = None,
        diffs: Mapping[str, tuple[int, int]] | None = None,
        machine: Callable[[], Sequence[MachineLoad | None]] = tuple,
        lags: Mapping[int, ReplicaLag] | None = None,
    ) -> TestVerdict:
        """SLOs, then the comparison (A/B pairs, or the baselines, confirmed by a rerun
        if asked), then saving. ``diffs``: a replay's comparisons of answers, per
        endpoint (answers that differ, answers compared); ``machine``: what else the
        machine ran during each load (read again after a rerun); ``lags``: the
        replicas' lag during each load that had replicas (by load)."""
        if marks and not results:
            raise ConfigError(f"{test_id} declares SLOs but ran no load (call perf_run)")
        gate = self.gate()
        verdict = TestVerdict()
        objectives = objectives_for(self.config.slo, marks)
        verdict.slo = gate.judge_slo(results, objectives)
        verdict.slo += self._judge_resources(objectives, resources, verdict)
        costs = costs or {}
        verdict.slo += _judge_cost(objectives, list(costs.values()))
        verdict.slo += _judge_diffs(objectives, diffs)
        lags = lags or {}
        verdict.slo += _judge_lag(objectives, list(lags.values()))
        judged = None
        if ab:
            verdict.comparisons, verdict.warnings = gate.compare_pairs(ab)
            verdict.ab_base = ab[0].base_label
        elif (self.compare or self.save_baseline) and results:
            # Saving without --perf-compare still compares, quietly: the stored run
            # says what it was, and a step is not mixed into the level it left.
            verdict.machine = list(machine())
            comparisons, warnings = gate.compare(test_id, results, costs, verdict.machine, lags)
            judged = judged_of(comparisons)
            if self.compare:
                verdict.comparisons, verdict.warnings = comparisons, warnings
                if self.confirm and verdict.regressions():
                    again_results, again_costs, again_lags = rerun()
                    again, _ = gate.compare(
                        test_id, again_results, again_costs, machine(), again_lags
                    )
                    verdict.confirmed = confirm(verdict, again)
        if self.save_baseline and results:
            gate.save(
                test_id,
                results,
                judged=judged,
                confirmed=bool(verdict.confirmed),
                costs=costs,
                lags=lags,
            )
        return verdict

    def _judge_resources(
        self,
        objectives: list[Objective],
        series: Sequence[ResourceSeries],
        verdict: TestVerdict,
    ) -> list[SloResult]:
        res = self.config.resources
        wanted = [o for o in objectives if o.metric in RESOURCE_METRICS]
        if wanted and not any(s.cpu for s in series):
            raise ConfigError(
                "cpu/memory SLOs need a local service process to sample "
                "([tool.perfsuite.service] command) and a load against it"
            )
        for s in series:
            slope = theil_sen(s.seconds, s.rss_mib)
            if slope is not None:
                limit = res.max_growth_mib_per_min
                too_fast = bool(limit is not None and slope.low > 0 and slope.per_minute > limit)
                verdict.growth.append((slope, too_fast))
        return evaluate_resources(
            wanted,
            [c for s in series for c in s.cpu],
            [m for s in series for m in s.rss_mib],
            cores=res.cpu_limit or float(os.cpu_count() or 1),
            memory_mib=res.memory_limit_mib or psutil.virtual_memory().total / 2**20,
        )


def _judge_lag(objectives: list[Objective], lags: Sequence[ReplicaLag]) -> list[SloResult]:
    wanted = [o for o in objectives if o.metric in LAG_METRICS]
    if wanted and not lags:
        raise ConfigError(
            "replica_lag SLOs need replicas: [tool.perfsuite] replicas = 1 (or "
            "[tool.perfsuite.replication] urls), with their lag measured (lag = true)"
        )
    return evaluate_lag(wanted, lags)


def _judge_cost(objectives: list[Objective], costs: Sequence[RequestCost]) -> list[SloResult]:
    wanted = [o for o in objectives if o.metric in COST_METRICS]
    if wanted and not costs:
        raise ConfigError(
            f"{wanted[0].metric} needs the statement digests of the service's database "
            "(performance_schema; see the warning above) and a load against the service"
        )
    return evaluate_cost(wanted, [(c.endpoints, c.metrics()) for c in costs])


def _judge_diffs(
    objectives: list[Objective], diffs: Mapping[str, tuple[int, int]] | None
) -> list[SloResult]:
    wanted = [o for o in objectives if o.metric == "diff_rate"]
    if wanted and diffs is None:
        raise ConfigError(
            "diff_rate needs a replay that compares answers: perf_replay(..., compare=...)"
        )
    return evaluate_diffs(wanted, diffs or {})
