"""A test's scraped metrics: scraped during each load, then its expectations judged.

The scraper reads the service's own metrics path, the targets of
``[tool.perfsuite.metrics]`` and the database's global status once an
interval, from a moment before the load to a moment after it. The phases'
times are the load's own (a monotonic clock), put on the wall clock the
scrapes are stamped with when the first phase starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from perfsuite.config import MetricsConfig
from perfsuite.errors import PromQLError
from perfsuite.load import LoadResult
from perfsuite.probes.dbstatus import GlobalStatus
from perfsuite.probes.prometheus_api import PrometheusAPI
from perfsuite.probes.scrape import Scraped, Scraper, ScrapeTarget, Source
from perfsuite.provision.server import MySQLServer
from perfsuite.stats.promql import (
    NAME,
    Evaluator,
    Expectation,
    ExpectVerdict,
    Labels,
    judge,
    judge_values,
    selected_names,
    step_times,
)

_STATUS = "mysql_global_status_"

__all__ = [
    "MetricsWatch",
    "ScrapedLoad",
    "encode_scraped",
    "encode_verdict",
    "expectations_of",
    "judge_expectations",
    "judge_remote",
    "recorded_names",
    "scraper_for",
    "unreachable",
]


@dataclass(frozen=True, kw_only=True)
class ScrapedLoad:
    """What was scraped during one load, and when (wall clock) its first phase began."""

    scraped: Scraped
    wall_start: float | None  # None: the load never started


class MetricsWatch:
    """Scrapes around one load; told by the load when its first phase starts."""

    def __init__(self, scraper: Scraper) -> None:
        self._scraper = scraper
        self._wall_start: float | None = None

    def start(self) -> None:
        """The first scrape (before the load), then once an interval."""
        self._scraper.start()

    def mark(self, wall_start: float) -> None:
        """The load's first phase started at ``wall_start`` (``time.time()``)."""
        self._wall_start = wall_start

    def stop(self, *, last: bool = True) -> ScrapedLoad:
        """The last scrape (after the load; none when ``last`` is false), and everything
        scraped."""
        return ScrapedLoad(scraped=self._scraper.stop(last=last), wall_start=self._wall_start)


def scraper_for(
    config: MetricsConfig,
    expectations: list[Expectation],
    *,
    service_metrics_url: str | None,
    server: MySQLServer | None,
    also: tuple[str, ...] = (),
) -> Scraper | None:
    """A scraper for one load, or None when there is nothing to scrape.

    Every test is scraped unless ``every_test`` is off; then only a test with
    expectations, or a configuration with pins or gauges judged for growth
    (``also``). The database's status is read only when a name asks for it,
    as its reads count among the server's own statements.
    """
    names = recorded_names(expectations, config.pin + also)
    if not names and not config.every_test:
        return None
    targets: list[ScrapeTarget | Source] = []
    if config.service and service_metrics_url is not None:
        targets.append(ScrapeTarget(job="service", url=service_metrics_url))
    targets += [ScrapeTarget(job=job, url=url) for job, url in config.targets.items()]
    if config.database and server is not None and any(n.startswith(_STATUS) for n in names):
        targets.append(GlobalStatus(server))
    if not targets:
        return None
    return Scraper(
        targets,
        interval=config.interval,
        max_series=config.max_series,
        keep=config.keep,
        drop=config.drop,
    )


def expectations_of(item: pytest.Item) -> list[Expectation]:
    """The test's ``expect`` markers, parsed (a bad one is a :class:`PromQLError`)."""
    found = []
    for mark in item.iter_markers("expect"):
        if len(mark.args) != 1 or not isinstance(mark.args[0], str):
            raise PromQLError("expect(...) takes one PromQL comparison, as a string")
        unknown = set(mark.kwargs) - {"phase"}
        if unknown:
            raise PromQLError(
                f"expect(...): unknown argument {sorted(unknown)[0]!r} (known: phase)"
            )
        phase = mark.kwargs.get("phase")
        if phase is not None and not isinstance(phase, str):
            raise PromQLError(f"expect(..., phase=...): expected a phase name, got {phase!r}")
        found.append(Expectation(text=mark.args[0], phase=phase))
    return found


def _window(
    result: LoadResult, phase: str | None, scraped: ScrapedLoad
) -> tuple[float, float] | None:
    """The phase's span (or the measured phases') in seconds from the load's start;
    ``before`` and ``after``: the scrapes before its first phase, after its last."""
    origin = scraped.wall_start or 0.0
    if phase in ("before", "after"):
        end = max((p.start + p.duration for p in result.phases), default=0.0)
        stamps = [
            t - origin
            for t in scraped.scraped.stamps
            if (t - origin < 0 if phase == "before" else t - origin > end)
        ]
        return (min(stamps), max(stamps)) if stamps else None
    if phase is not None:
        spans = [(p.start, p.start + p.duration) for p in result.phases if p.name == phase]
    else:
        spans = [(p.start, p.start + p.duration) for p in result.phases if p.role == "measure"]
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def judge_expectations(
    expectations: list[Expectation],
    loads: list[tuple[LoadResult, ScrapedLoad | None]],
    *,
    remote: PrometheusAPI | None = None,
) -> tuple[list[tuple[int, ExpectVerdict]], list[str]]:
    """Each expectation judged in each load that has its phase: (the load's index, the
    verdict), and why an expectation could not be judged at all. Times in the verdicts
    are seconds from the load's first phase. With ``remote``, that Prometheus answers
    the expressions over the window instead of the local evaluator."""
    verdicts: list[tuple[int, ExpectVerdict]] = []
    problems: list[str] = []
    evaluators: dict[int, Evaluator] = {}  # one per load: its series built once
    for expectation in expectations:
        judged = False
        for i, (result, scraped) in enumerate(loads):
            if scraped is None or scraped.wall_start is None:
                continue
            window = _window(result, expectation.phase, scraped)
            if window is None:
                continue
            origin = scraped.wall_start
            start, end = origin + window[0], origin + window[1]
            if remote is None:
                if i not in evaluators:
                    evaluators[i] = Evaluator(scraped.scraped.series_set())
                verdict = judge(expectation, evaluators[i], start, end, origin=origin)
            else:
                try:
                    verdict = judge_remote(expectation, remote, start, end, origin)
                except PromQLError as exc:
                    problems.append(f"expect {expectation.text}: not judged: {exc}")
                    judged = True
                    continue
            verdicts.append((i, verdict))
            judged = True
        if not judged:
            problems.append(_why_not(expectation, loads))
    return verdicts, problems


def judge_remote(
    expectation: Expectation, remote: PrometheusAPI, start: float, end: float, origin: float
) -> ExpectVerdict:
    """Judge an expectation on what a Prometheus server answers over the window."""
    times = step_times(start, end)
    sides = remote.range(str(expectation.side), times)
    numbers = remote.numbers(str(expectation.number), times)
    names = remote.names() if not any(sides) else []  # only for a message
    return judge_values(expectation, [t - origin for t in times], sides, numbers, names_seen=names)


def encode_verdict(load: int, verdict: ExpectVerdict) -> dict[str, Any]:
    """JSON-ready: the verdict, and the judged side's values at each step (for charts)."""
    keys = sorted({labels for vector in verdict.values for labels in vector})
    e = verdict.expectation
    return {
        "text": e.text,
        "phase": e.phase,
        "metric": e.metric_text,
        "ok": verdict.ok,
        "judged": verdict.judged,
        "broken": verdict.broken,
        "report": verdict.report(),
        "load": load,
        "t": [round(t, 3) for t in verdict.times],
        "threshold": [_finite(v) for v in verdict.thresholds],
        "series": [
            {"labels": dict(k), "v": [_finite(vector.get(k)) for vector in verdict.values]}
            for k in keys
        ],
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None  # JSON has no NaN


def _why_not(expectation: Expectation, loads: list[tuple[LoadResult, ScrapedLoad | None]]) -> str:
    head = f"expect {expectation.text}: not judged:"
    if not loads:
        return f"{head} the test ran no load"
    if expectation.phase is not None:
        names = sorted({p.name for result, _ in loads for p in result.phases})
        known = expectation.phase in ("before", "after")
        if not known and not any(
            p.name == expectation.phase for result, _ in loads for p in result.phases
        ):
            return (
                f"{head} no phase named {expectation.phase!r} "
                f"(phases: {', '.join(names)}; and before, after: the scrapes around the load)"
            )
    return (
        f"{head} nothing was scraped during the load (the load went to a target of its "
        "own, or [tool.perfsuite.metrics] turns every source off)"
    )


def unreachable(loads: Iterable[ScrapedLoad]) -> list[str]:
    """One line for each source that failed every scrape of a load, with its first error."""
    lines = []
    for load in loads:
        s = load.scraped
        for job, failed in sorted(s.failed.items()):
            if failed >= s.scrapes:
                first = (s.failures.get(job) or ["?"])[0]
                lines.append(f"job {job} could not be scraped ({failed} of {s.scrapes}): {first}")
    return sorted(set(lines))


def encode_scraped(scraped: ScrapedLoad, names: set[str], limit: int) -> dict[str, Any]:
    """JSON-ready: the series of one load (times in seconds from the first phase), how
    many were scraped in all, and what failed.

    The series of ``names`` (those the expectations select, and the pins) are
    always kept; the others fill up to ``limit`` series, histogram buckets last
    (they are the many), and the rest are only counted: a database's status
    alone is 500 series a second.
    """
    s = scraped.scraped
    origin = scraped.wall_start if scraped.wall_start is not None else 0.0

    def order(labels: Labels) -> tuple[bool, bool, Labels]:
        name = dict(labels).get(NAME, "")
        return name not in names, name.endswith("_bucket"), labels

    chosen = sorted(s.points, key=order)
    named = sum(dict(labels).get(NAME) in names for labels in chosen)
    kept = chosen[: max(limit, named)]
    return {
        "scrapes": s.scrapes,
        "scraped_series": len(s.points),
        "recorded_series": len(kept),
        "failed": dict(s.failed),
        "errors": {job: list(errors) for job, errors in s.failures.items()},
        "dropped_series": s.dropped_series,
        "filtered_series": s.filtered_series,
        "types": dict(s.types),
        "series": [
            {
                "labels": dict(labels),
                "t": [round(t - origin, 3) for t in s.points[labels][0]],
                "v": [_finite(v) for v in s.points[labels][1]],
            }
            for labels in kept
        ],
    }


def recorded_names(expectations: list[Expectation], pins: tuple[str, ...]) -> set[str]:
    """The metric names whose series a test's record keeps."""
    return {n for e in expectations for n in selected_names(e.expr)} | set(pins)
