"""The pull-request gate: SLOs and the comparison with stored baselines.

After a perf test's body has passed, its load results are judged: each SLO
on its selection, and, with ``--perf-compare``, each endpoint's metrics
against the test's baseline runs of the same environment fingerprint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfsuite.load.result import LoadResult
from perfsuite.stats.compare import CompareOptions, MetricComparison, compare
from perfsuite.stats.slo import Objective, SloResult, evaluate, parse_slo
from perfsuite.stats.trend import Slope
from perfsuite.store.baselines import BaselineStore, RunRecord
from perfsuite.store.records import StoredLoad, decode_load, encode_load

__all__ = ["Gate", "TestVerdict", "confirm", "objectives_for"]

FAIL_ON = ("slo", "regression")


def objectives_for(
    defaults: Mapping[str, Any], marks: Iterable[Mapping[str, Any]]
) -> list[Objective]:
    """The config's default objectives, overridden by the test's ``slo`` markers."""
    chosen: dict[tuple[str, str | None, str | None], Objective] = {}
    sources = [("[tool.perfsuite.slo]", defaults)] if defaults else []
    sources += [("@pytest.mark.slo", m) for m in marks]
    for where, values in sources:
        for o in parse_slo(values, where=where):
            chosen[(o.metric, o.endpoint, o.phase)] = o
    return list(chosen.values())


@dataclass(kw_only=True)
class TestVerdict:
    """What the gate found for one test."""

    slo: list[SloResult] = field(default_factory=list)
    growth: list[tuple[Slope, bool]] = field(default_factory=list)  # (slope, too fast)
    comparisons: dict[str, list[MetricComparison]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    confirmed: bool | None = None  # --perf-confirm: did the rerun agree?

    def slo_failures(self) -> list[SloResult]:
        """Objectives that were not met."""
        return [r for r in self.slo if not r.passed]

    def regressions(self) -> list[tuple[str, MetricComparison]]:
        """(where, comparison) of every regressed metric."""
        return [
            (where, c)
            for where, cs in self.comparisons.items()
            for c in cs
            if c.verdict == "regressed"
        ]

    def failures(self, fail_on: Iterable[str]) -> list[str]:
        """The lines that fail the test, under ``--perf-fail-on``."""
        fail_on = set(fail_on)
        lines = []
        if "slo" in fail_on:
            lines += [f"SLO violated: {r.describe()}" for r in self.slo_failures()]
            lines += [f"memory grows {_growth(s)}" for s, too_fast in self.growth if too_fast]
        if "regression" in fail_on:
            lines += [f"regression in {where}: {c.describe()}" for where, c in self.regressions()]
        return lines

    def report(self) -> str:
        """Everything judged, one line each (for the test's report section)."""
        lines = [("ok  " if r.passed else "FAIL") + f" SLO {r.describe()}" for r in self.slo]
        lines += [
            ("FAIL" if too_fast else "ok  ") + f" memory growth {_growth(s)}"
            for s, too_fast in self.growth
        ]
        for where, cs in self.comparisons.items():
            lines.append(f"baseline comparison, {where}:")
            lines += [f"  {c.describe()}" for c in cs]
        if self.confirmed is not None:
            lines.append(
                "confirmed by a rerun" if self.confirmed else "not confirmed by a rerun: dropped"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


class Gate:
    """Judges and stores the load results of perf tests."""

    def __init__(
        self,
        store: BaselineStore,
        options: CompareOptions,
        *,
        fingerprint: Mapping[str, Any],
        commit: str | None,
    ) -> None:
        self.store = store
        self.options = options
        self.fingerprint = dict(fingerprint)
        self.commit = commit

    def judge_slo(
        self, results: Sequence[LoadResult], objectives: list[Objective]
    ) -> list[SloResult]:
        """Every objective on every load of the test."""
        out: list[SloResult] = []
        for result in results:

            def blocks_for(endpoint: str | None, phase: str | None, r: LoadResult = result) -> Any:
                return r.blockset(endpoint=endpoint, phase=phase)

            out += evaluate(objectives, blocks_for)
        return out

    def compare(
        self, test_id: str, results: Sequence[LoadResult]
    ) -> tuple[dict[str, list[MetricComparison]], list[str]]:
        """Compare each load's endpoints with the baseline runs of the same fingerprint."""
        runs = self.store.runs(test_id)
        if not runs:
            return {}, [f"no baseline for {test_id} in {self.store.folder}: no verdict"]
        same = [r for r in runs if r.fingerprint == self.fingerprint]
        if not same:
            diff = _fingerprint_diff(runs[-1].fingerprint, self.fingerprint)
            return {}, [f"the baseline was measured elsewhere ({diff}): no verdict"]
        out: dict[str, list[MetricComparison]] = {}
        warnings = []
        rng = np.random.default_rng(12345)
        for i, result in enumerate(results):
            current = decode_load(encode_load(result))
            base: list[StoredLoad] = [decode_load(r.loads[i]) for r in same if len(r.loads) > i]
            if not base:
                warnings.append(f"load {i + 1}: not in the baseline: no verdict")
                continue
            for endpoint in current.endpoints:
                if not all(endpoint in b.endpoints for b in base):
                    warnings.append(f"endpoint {endpoint}: not in the baseline: no verdict")
                    continue
                where = endpoint if len(results) == 1 else f"load {i + 1}, {endpoint}"
                out[where] = compare(
                    current.blockset(endpoint),
                    [b.blockset(endpoint) for b in base],
                    self.options,
                    rng=rng,
                )
        return out, warnings

    def save(self, test_id: str, results: Sequence[LoadResult]) -> None:
        """Store this run as the newest baseline run of the test."""
        record = RunRecord.new(
            commit=self.commit,
            fingerprint=self.fingerprint,
            loads=[encode_load(r) for r in results],
        )
        self.store.save(test_id, record)


def _growth(slope: Slope) -> str:
    return (
        f"{slope.per_minute:+.2f} MB/min (95 % CI {slope.low:+.2f} to {slope.high:+.2f}) "
        f"over {slope.points} samples"
    )


def _fingerprint_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed) or "unknown difference"


def confirm(verdict: TestVerdict, again: dict[str, list[MetricComparison]]) -> bool:
    """Keep a regression only where the rerun regressed too; True if any remains."""
    kept = False
    for where, comparisons in verdict.comparisons.items():
        rerun = {c.metric: c.verdict for c in again.get(where, [])}
        updated = []
        for c in comparisons:
            if c.verdict == "regressed" and rerun.get(c.metric) != "regressed":
                c = dataclasses.replace(
                    c, verdict="inconclusive", method=c.method + ", rerun disagreed"
                )
            kept = kept or c.verdict == "regressed"
            updated.append(c)
        verdict.comparisons[where] = updated
    return kept
