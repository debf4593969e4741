"""What the gate found for one test: objectives chosen, verdicts, and what fails it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from perfsuite.errors import ConfigError
from perfsuite.probes.machine import MachineLoad
from perfsuite.stats.compare import MetricComparison
from perfsuite.stats.levels import DIRECTIONS
from perfsuite.stats.slo import KNOWN, Objective, SloResult, parse_slo
from perfsuite.stats.trend import Slope

__all__ = ["DEFAULT_SLO", "FAIL_ON", "TestVerdict", "confirm", "judged_of", "objectives_for"]

FAIL_ON = ("slo", "regression")


# Every perf test's objectives before the config's and the markers': a run that
# mostly fails is never green by default (remove with error_rate = "off").
DEFAULT_SLO: Mapping[str, Any] = {"error_rate": "1%"}
_SELECTORS = ("endpoint", "phase")


def _removed(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, str) and value.lower() == "off")


def objectives_for(
    defaults: Mapping[str, Any], marks: Iterable[Mapping[str, Any]]
) -> list[Objective]:
    """perfsuite's defaults, then the config's, then the test's ``slo`` markers: each
    overrides the one before for the same metric and selection; ``"off"`` (or
    ``None``, ``false``) removes one."""
    chosen: dict[tuple[str, str | None, str | None], Objective] = {}
    sources = [("perfsuite's default objectives", DEFAULT_SLO)]
    sources += [("[tool.perfsuite.slo]", defaults)] if defaults else []
    sources += [("@pytest.mark.slo", m) for m in marks]
    for where, values in sources:
        selection = (values.get("endpoint"), values.get("phase"))
        unknown = sorted(set(values) - {*KNOWN, *_SELECTORS})
        if unknown:
            raise ConfigError(
                f"{where}: unknown objective {unknown[0]!r} (known: {', '.join(KNOWN)})"
            )
        kept = {k: v for k, v in values.items() if k in _SELECTORS or not _removed(v)}
        for key in set(values) - set(kept):
            metric = "rps" if key == "min_rps" else key
            chosen.pop((metric, *selection), None)
        if set(kept) - set(_SELECTORS):
            for o in parse_slo(kept, where=where):
                chosen[(o.metric, o.endpoint, o.phase)] = o
        elif not set(values) - set(_SELECTORS):
            parse_slo(values, where=where)  # says "no objective given"
    return list(chosen.values())


@dataclass(kw_only=True)
class TestVerdict:
    """What the gate found for one test."""

    slo: list[SloResult] = field(default_factory=list)
    growth: list[tuple[Slope, bool]] = field(default_factory=list)  # (slope, too fast)
    comparisons: dict[str, list[MetricComparison]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    confirmed: bool | None = None  # --perf-confirm: did the rerun agree?
    ab_base: str | None = None  # A/B: the base build the comparisons are against
    machine: list[MachineLoad | None] = field(default_factory=list)  # per load, when compared

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
            against = f"A/B against {self.ab_base}" if self.ab_base else "baseline comparison"
            lines.append(f"{against}, {where}:")
            lines += [f"  {c.describe()}" for c in cs]
        if self.confirmed is not None:
            lines.append(
                "confirmed by a rerun" if self.confirmed else "not confirmed by a rerun: dropped"
            )
        for i, m in enumerate(self.machine):
            if m is not None:
                where = f" during load {i + 1}" if len(self.machine) > 1 else ""
                lines.append(f"machine{where}: {m.describe()}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def judged_of(comparisons: Mapping[str, Sequence[MetricComparison]]) -> str | None:
    """A run's mark for the store: regressed, improved, same, or None (not compared)."""
    found = {c.verdict for cs in comparisons.values() for c in cs}
    if not found:
        return None
    return next((d for d in DIRECTIONS if d in found), "same")


def _growth(slope: Slope) -> str:
    return (
        f"{slope.per_minute:+.2f} MB/min (95 % CI {slope.low:+.2f} to {slope.high:+.2f}) "
        f"over {slope.points} samples"
    )


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
