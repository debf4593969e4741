"""perfsuite's own numbers, live, for Prometheus (``--perf-prometheus-port``).

prometheus_client serves them on ``127.0.0.1:PORT`` from a thread, from the
session's start to its end; the engine hands each second over as it closes.
Counts are cumulative over the session, labelled by test, endpoint and phase
(a second that straddles two phases counts in the one running when it
closed). Latency comes as classic histogram buckets, for
``histogram_quantile(sum by (le) ...)`` across tests and machines, and as
exact percentiles of each phase so far, from the engine's HDR bins (never
average these across series: aggregate the buckets). With several load
workers, their seconds come through their pipes as they close.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from perfsuite.errors import ConfigError
from perfsuite.load.recorder import SecondReport
from perfsuite.stats.hdr import BIN_MIDDLE_US, BIN_TOP_US, BINS, dense_percentiles

__all__ = ["BUCKETS", "QUANTILES", "LiveExporter"]

# Seconds: from a fast local service to a timeout.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
_HIGHEST_S = BIN_TOP_US / 1e6  # each bin's top and middle, in seconds
_MEDIAN_S = BIN_MIDDLE_US / 1e6


@dataclass
class _Cell:
    """One (test, endpoint, phase): counts and latency bins so far."""

    ok: int = 0
    failed: int = 0  # ended with a latency, not a success (status, timeout, connect, closed)
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))


class LiveExporter:
    """Holds the session's live numbers and serves them; fed by :meth:`second`."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self._cells: dict[tuple[str, str, str], _Cell] = {}
        self._runs: dict[str, dict[str, float]] = {}  # test -> late, dropped, ... so far
        self._run_base: dict[str, dict[str, float]] = {}  # what earlier loads of the test had
        self._latest: dict[int, dict[str, float]] = {}  # this load: each worker's so far
        self._cpu: dict[int, float] = {}  # each worker process's CPU seconds so far
        self.test = ""
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # a collector: collect() below
        try:
            self._server, self._thread = start_http_server(
                port, addr="127.0.0.1", registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(f"--perf-prometheus-port {port}: cannot listen: {exc}") from None
        self.port = int(self._server.server_port)

    def start_load(self, test: str) -> None:
        """A load of ``test`` begins: its counts continue from its earlier loads."""
        with self._lock:
            self.test = test
            self._run_base[test] = dict(self._runs.get(test, {}))
            self._latest = {}

    def second(self, report: SecondReport) -> None:
        """One second of the current load (called on the engine's event loop)."""
        with self._lock:
            bins = {report.endpoints[ep]: (index, counts) for _, ep, index, counts in report.bins}
            for sec in report.seconds:
                cell = self._cells.setdefault((self.test, sec.endpoint, report.phase), _Cell())
                cell.ok += sec.ok
                cell.failed += sec.requests - sec.ok
                if sec.endpoint in bins:
                    index, counts = bins[sec.endpoint]
                    np.add.at(cell.counts, index, counts)
            # Each worker counts from its load's start: the load's numbers are the sum
            # of each worker's latest, on top of what the test's earlier loads had.
            self._latest[report.worker] = {
                "late": report.late,
                "late_generator": report.late_generator,
                "dropped": report.dropped,
            }
            base = self._run_base.get(self.test, {})
            self._runs[self.test] = {
                what: base.get(what, 0) + sum(w[what] for w in self._latest.values())
                for what in ("late", "late_generator", "dropped")
            }
            self._cpu[report.worker] = report.cpu_seconds

    def collect(self) -> Iterator[Any]:
        """The families, as prometheus_client asks for them at each scrape."""
        labels = ["test", "endpoint", "phase"]
        requests = CounterMetricFamily(
            "perfsuite_requests",
            "requests that ended (answered, timed out or failed), by outcome",
            labels=[*labels, "outcome"],
        )
        duration = HistogramMetricFamily(
            "perfsuite_request_duration_seconds",
            "latency from the intended send time of every request that ended",
            labels=labels,
        )
        quantiles = GaugeMetricFamily(
            "perfsuite_request_duration_quantile_seconds",
            "exact percentiles (HDR) of the phase so far; aggregate the buckets, not these",
            labels=[*labels, "quantile"],
        )
        runs = CounterMetricFamily(
            "perfsuite_schedule",
            "requests sent late (late), late by the generator's fault (late_generator), "
            "never sent (dropped)",
            labels=["test", "what"],
        )
        # A copy under the lock, the arithmetic outside it: the engine's event loop
        # takes the same lock once a second and must not wait on a scrape.
        with self._lock:
            cells = [(k, c.ok, c.failed, c.counts.copy()) for k, c in self._cells.items()]
            runs_now = {test: dict(numbers) for test, numbers in self._runs.items()}
            cpu_now = sorted(self._cpu.items())
        for (test, endpoint, phase), ok, failed, counts in cells:
            key = [test, endpoint, phase]
            requests.add_metric([*key, "ok"], ok)
            requests.add_metric([*key, "failed"], failed)
            cum = np.cumsum(counts)
            total = int(cum[-1])
            buckets = [
                (f"{b:g}", float(cum[np.searchsorted(_HIGHEST_S, b, side="right") - 1]))
                for b in BUCKETS
            ]
            # The sum from each bin's middle, as the HDR mean is computed.
            total_s = float(np.dot(counts, _MEDIAN_S))
            duration.add_metric(key, [*buckets, ("+Inf", float(total))], sum_value=total_s)
            values = dense_percentiles(counts, [q * 100 for q in QUANTILES])
            for q, value in zip(QUANTILES, values, strict=True):
                quantiles.add_metric([*key, f"{q:g}"], value / 1000.0)
        for test, numbers in runs_now.items():
            for what, value in numbers.items():
                runs.add_metric([test, what], value)
        cpu = CounterMetricFamily(
            "perfsuite_generator_cpu_seconds",
            "CPU time of each load worker's process (worker 0 of a one-worker load: "
            "the pytest process); a new load's workers start from 0",
            labels=["worker"],
        )
        for worker, seconds in cpu_now:
            cpu.add_metric([str(worker)], seconds)
        yield requests
        yield duration
        yield quantiles
        yield runs
        yield cpu

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
