"""Prometheus scraping during a perf test: any targets, once a second, from a thread.

Each scrape is parsed with prometheus_client's parsers (Prometheus text, or
OpenMetrics when the target answers with its content type) and every sample
becomes a point of its series at the scrape's start time, as Prometheus
stamps it, with the ``job`` (the target's name) and ``instance`` (host:port)
labels Prometheus adds. Counters are kept as they are read: PromQL's
``rate`` handles their resets. A cap on the number of series and a name
filter keep a service with thousands of series from flooding the record;
what they leave out is counted. A target that fails a scrape is retried at
the next one; its errors are kept, not raised, since the test's own result
comes first.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import numpy as np
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from perfsuite.stats.promql import Labels, Series, SeriesSet, labels_of

__all__ = ["Samples", "ScrapeTarget", "Scraped", "Scraper", "Source"]

_OPENMETRICS = "application/openmetrics-text"
_KEEP_ERRORS = 5


@dataclass(frozen=True, kw_only=True)
class ScrapeTarget:
    """One endpoint to scrape: its job name and its URL."""

    job: str
    url: str

    @property
    def instance(self) -> str:
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"


# (metric family -> its type, [(sample name, labels, value)]): one reading of a source.
Samples = tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]


class Source(Protocol):
    """Something read like a scrape target that is not an HTTP endpoint (the database)."""

    job: str
    instance: str

    def read(self) -> Samples:
        """One reading; raises on failure (kept as the source's error)."""
        ...

    def close(self) -> None:
        """Release what the source holds."""
        ...


@dataclass(kw_only=True)
class Scraped:
    """What the scrapes gathered: points per series, and what went wrong."""

    points: dict[Labels, tuple[list[float], list[float]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # metric family -> its type
    stamps: list[float] = field(default_factory=list)  # when each scrape had read every target
    failures: dict[str, list[str]] = field(default_factory=dict)  # job -> its first errors
    failed: dict[str, int] = field(default_factory=dict)  # job -> failed scrapes
    dropped_series: int = 0  # over the cap
    filtered_series: int = 0  # left out by the name filter

    @property
    def scrapes(self) -> int:
        """How many scrapes there were (each reads every target once)."""
        return len(self.stamps)

    def series_set(self) -> SeriesSet:
        """The series, for the PromQL evaluator."""
        return SeriesSet(
            tuple(
                Series(labels, np.array(times), np.array(values))
                for labels, (times, values) in self.points.items()
            )
        )


class Scraper:
    """Scrapes its targets once an interval from a thread, until stopped."""

    def __init__(
        self,
        targets: Sequence[ScrapeTarget | Source],
        *,
        interval: float = 1.0,
        timeout: float = 2.0,
        max_series: int = 2000,
        keep: Sequence[str] = (),
        drop: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = list(targets)
        self.interval = interval
        self.max_series = max_series
        self._keep = [re.compile(p) for p in keep]
        self._drop = [re.compile(p) for p in drop]
        self._clock = clock
        self._client = httpx.Client(timeout=timeout, headers={"Accept": _ACCEPT})
        self._ignored: set[Labels] = set()
        self.scraped = Scraped()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scrape_once(self) -> None:
        """Scrape every target now (also used a moment before and after the load)."""
        for target in self.targets:
            stamp = self._clock()
            try:
                samples = self._read(target)
            except Exception as exc:  # kept, and tried again at the next scrape
                with self._lock:
                    failed = self.scraped.failed
                    failed[target.job] = failed.get(target.job, 0) + 1
                    errors = self.scraped.failures.setdefault(target.job, [])
                    if len(errors) < _KEEP_ERRORS:  # a target that is down fails every time
                        errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            with self._lock:
                self._add(target, stamp, samples)
        with self._lock:
            self.scraped.stamps.append(self._clock())

    def _read(self, target: ScrapeTarget | Source) -> Samples:
        if not isinstance(target, ScrapeTarget):
            return target.read()
        response = self._client.get(target.url)
        response.raise_for_status()
        return _parse(response.text, response.headers.get("content-type", ""))

    def _add(self, target: ScrapeTarget | Source, stamp: float, samples: Samples) -> None:
        families, rows = samples
        scraped = self.scraped
        scraped.types.update(families)
        for name, labels, value in rows:
            if not self._wanted(name):
                key = labels_of({**labels, "__name__": name})
                if key not in self._ignored:
                    self._ignored.add(key)
                    scraped.filtered_series += 1
                continue
            key = labels_of(
                {"job": target.job, "instance": target.instance, **labels, "__name__": name}
            )
            points = scraped.points.get(key)
            if points is None:
                if len(scraped.points) >= self.max_series:
                    if key not in self._ignored:
                        self._ignored.add(key)
                        scraped.dropped_series += 1
                    continue
                points = scraped.points[key] = ([], [])
            if points[0] and points[0][-1] >= stamp:
                continue  # two samples of one series in one scrape: the first counts
            points[0].append(stamp)
            points[1].append(value)

    def _wanted(self, name: str) -> bool:
        if self._keep and not any(p.search(name) for p in self._keep):
            return False
        return not any(p.search(name) for p in self._drop)

    def start(self) -> None:
        """Scrape once now, then once an interval from a thread."""
        first = time.monotonic()
        self.scrape_once()

        def loop() -> None:
            # On a fixed cadence, as Prometheus scrapes: a window of two intervals then
            # always holds two scrapes, however long each one took. A scrape that
            # overran its interval skips the ticks it missed.
            tick = 1
            while True:
                late = time.monotonic() - first
                tick = max(tick, math.floor(late / self.interval) + 1)
                if self._stop.wait(first + tick * self.interval - time.monotonic()):
                    return
                self.scrape_once()
                tick += 1

        self._thread = threading.Thread(target=loop, name="perfsuite-scrape", daemon=True)
        self._thread.start()

    def stop(self, *, last: bool = True) -> Scraped:
        """Stop the thread, scrape a last time (unless ``last`` is false: after Ctrl-C
        nothing waits on a target), and return what was gathered."""
        self._stop.set()
        if self._thread is not None:
            # After Ctrl-C, no wait on a scrape in flight: the thread is a daemon.
            self._thread.join(timeout=self.interval + 10 if last else 0.5)
        if last:
            self.scrape_once()
        self._client.close()
        for target in self.targets:
            if not isinstance(target, ScrapeTarget):
                target.close()
        return self.scraped


# Prometheus's own Accept header, in its order of preference (text first: both parse).
_ACCEPT = f"{_OPENMETRICS};version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"


def _parse(text: str, content_type: str) -> Samples:
    """(family -> type, [(sample name, labels, value)]) of one exposition."""
    if content_type.startswith(_OPENMETRICS):
        families = openmetrics_families(text)  # type: ignore[no-untyped-call]  # untyped there
    else:
        families = text_string_to_metric_families(text)
    types: dict[str, str] = {}
    rows: list[tuple[str, dict[str, str], float]] = []
    for family in families:
        types[family.name] = family.type
        for sample in family.samples:
            rows.append((sample.name, dict(sample.labels), float(sample.value)))
    return types, rows
