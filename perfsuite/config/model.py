"""The frozen configuration objects, and durations (``"30s"``, ``"500ms"``)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfsuite.errors import ConfigError

__all__ = [
    "DEFAULT_PROFILES",
    "BaselineConfig",
    "LoadConfig",
    "MySQLConfig",
    "PerfConfig",
    "PoolConfig",
    "Profile",
    "ProfilingConfig",
    "ProviderName",
    "ReplicationConfig",
    "ResourcesConfig",
    "ServiceConfig",
    "ServiceKind",
    "parse_duration",
]

ProviderName = Literal["auto", "process", "container", "url"]
ServiceKind = Literal["command", "container", "url"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|min|h)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object, *, key: str) -> float:
    """Parse ``"30s"``, ``"500ms"``, ``"2m"`` or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like '30s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ConfigError(f"{key}: expected a duration like '30s' or '500ms', got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{key}: a duration must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True, kw_only=True)
class Profile:
    """Scales the phases of a perf test: ``smoke`` for CI, ``full`` for the real thing."""

    name: str
    duration_scale: float = 1.0
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        for key in ("duration_scale", "rate_scale"):
            value = getattr(self, key)
            if not value > 0:
                raise ConfigError(f"profiles.{self.name}.{key}: must be > 0, got {value!r}")

    def duration(self, seconds: float) -> float:
        """A phase duration, written for the ``full`` profile, scaled to this one."""
        return seconds * self.duration_scale

    def rate(self, per_second: float) -> float:
        """An arrival rate (or a concurrency), written for ``full``, scaled to this one."""
        return per_second * self.rate_scale

    def count(self, n: int) -> int:
        """A request count scaled by both duration and rate, at least 1."""
        return max(1, round(n * self.duration_scale * self.rate_scale))


DEFAULT_PROFILES: Mapping[str, Profile] = {
    "smoke": Profile(name="smoke", duration_scale=0.01, rate_scale=0.1),
    "ci": Profile(name="ci", duration_scale=0.02, rate_scale=0.5),
    "full": Profile(name="full", duration_scale=1.0, rate_scale=1.0),
}


@dataclass(frozen=True, kw_only=True)
class ReplicationConfig:
    """Read replicas of the MySQL server: ``replicas`` and ``[tool.perfsuite.replication]``."""

    replicas: int = 0  # replicas started beside the primary (process or container provider)
    urls: tuple[str, ...] = ()  # replicas that exist already (url provider)
    delay: int = 0  # MASTER_DELAY, whole seconds (MariaDB's own granularity)
    parallel_threads: int = 0  # slave_parallel_threads: 0 applies in one thread
    heartbeat: float = 0.1  # seconds between heartbeats written on the primary
    lag: bool = True  # measure the lag during every perf test

    @property
    def wanted(self) -> bool:
        """Are there replicas, started or given?"""
        return bool(self.replicas or self.urls)


@dataclass(frozen=True, kw_only=True)
class MySQLConfig:
    """How to get a MySQL server: which provider, and what to load into it."""

    provider: ProviderName = "auto"
    url: str | None = None
    image: str = "mysql:8.4"
    mysqld: str | None = None
    port: int = 0
    database: str = "perf"
    sql_files: tuple[Path, ...] = ()
    seed: str | None = None
    startup_timeout: float = 60.0
    # Statement digests for the cost per request: servers we start get performance_schema.
    cost: bool = True
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """The service under test: a local command, a container image, or a running URL.

    With both a command and an image, ``kind`` is ``command``; :meth:`for_mysql`
    picks the image when MySQL runs in a container.
    """

    kind: ServiceKind
    command: tuple[str, ...] = ()
    image: str | None = None
    url: str | None = None
    port: int = 8000
    env: Mapping[str, str] = field(default_factory=dict)
    # Variables passed from perfsuite's environment into a service container
    # when set (a local command inherits the whole environment anyway).
    pass_env: tuple[str, ...] = ()
    health: str = "/health"
    startup_timeout: float = 30.0
    cwd: Path = Path()

    def for_mysql(self, provider: str) -> ServiceConfig:
        """This config as the given MySQL provider runs it (image with a container MySQL)."""
        if self.image is not None and self.command and provider == "container":
            return dataclasses.replace(self, kind="container")
        return self


@dataclass(frozen=True, kw_only=True)
class LoadConfig:
    """Limits of the load generator (``[tool.perfsuite.load]``) and where load may go."""

    max_connections: int = 1_000
    timeout: float = 10.0
    connect_timeout: float = 5.0
    max_body: int = 1 << 20
    verify: bool = True  # https:// targets: check their certificates
    ca_bundle: str | None = None  # ... against these CAs (a PEM file) instead of the system's
    late_threshold: float = 0.010
    max_requests: int = 50_000_000
    max_duration: float = 4 * 3600.0
    workers: int = 1
    # Load agents on execnet, in pytest-xdist's spelling (``2*popen``, ``ssh=host``);
    # empty: ``workers`` forked processes.
    tx: tuple[str, ...] = ()
    max_clock_uncertainty: float = 0.005  # seconds: an agent's clock known to within this
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """``[tool.perfsuite.baseline]``: where baselines live and how strict the gate is."""

    dir: Path = Path("baselines")
    window: int = 10
    alpha: float = 0.01  # false alarms per session, over all tests, endpoints and metrics
    tolerance: float = 0.05
    min_runs: int = 3  # a test's own runs for its own noise estimate
    min_blocks: int = 10  # blocks of time (seconds) a run needs to be judged
    tolerances: Mapping[str, float] = field(default_factory=lambda: {"error_rate": 0.001})
    metrics: tuple[str, ...] = ("p50", "p95", "p99", "mean", "error_rate", "rps")
    # A run on a busier machine is not believed when it regresses.
    max_other_cores: float = 0.25  # CPU of other processes, in cores
    max_steal: float = 0.05  # the hypervisor's share of the CPUs


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """``[tool.perfsuite.pool]``: the check that the pool goes back to idle."""

    check: bool = True
    user: str | None = None  # the service's database user (default: the app account)
    # "in-turn": the pool hands every idle connection out in turn (FIFO: aiomysql,
    # SQLAlchemy's QueuePool), so one that runs nothing after the load is leaked.
    hands_out: Literal["unknown", "in-turn"] = "unknown"
    # Requests sent after the load to see which connections the pool hands out
    # (None: the service's health path; "": none sent).
    after_path: str | None = None
    max_idle: int = 10
    timeout: float = 10.0
    metrics: str = "none"  # a preset of perfsuite.probes.metrics, "custom", or "none"
    metrics_path: str = "/metrics"
    metric_names: Mapping[str, str] = field(default_factory=dict)  # role -> sample name


@dataclass(frozen=True, kw_only=True)
class ResourcesConfig:
    """``[tool.perfsuite.resources]``: what ``cpu``/``memory`` SLOs are percentages of."""

    cpu_limit: float | None = None  # cores; default: this machine's
    memory_limit_mib: float | None = None  # default: this machine's memory
    max_growth_mib_per_min: float | None = None  # memory growth that fails a test


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """``[tool.perfsuite.metrics]``: Prometheus endpoints scraped during every perf test."""

    service: bool = True  # the service's own metrics path
    path: str | None = None  # the service's path (default: [tool.perfsuite.pool] metrics_path)
    targets: Mapping[str, str] = field(default_factory=dict)  # job -> URL, scraped too
    database: bool = True  # SHOW GLOBAL STATUS as mysql_global_status_* series
    interval: float = 1.0
    max_series: int = 2000
    keep: tuple[str, ...] = ()  # regexes on metric names: only these (default: all)
    drop: tuple[str, ...] = ()  # regexes on metric names: never these
    pin: tuple[str, ...] = ()  # metric names the HTML report draws, expectations or not
    # Scrape every perf test, not only those with expectations, pins or growth gauges:
    # measured on the example service (benchmarks/scrape_cost.py, 8 pairs at 500
    # req/s), a scrape a second cost nothing out of the run-to-run noise.
    every_test: bool = True
    # Series per load kept in the run record: those the expectations and pins name
    # always, then the others (histogram buckets last) up to this many; the rest counted.
    record_series: int = 200
    # A Prometheus server (its base URL): expectations are sent to its query_range API.
    prometheus_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProfilingConfig:
    """``[tool.perfsuite.profiling]``: CPU profiles (flame graphs) and growth checks of the
    service. Not the size profiles (``--perf-profile``): the sections are apart on purpose."""

    # "auto": py-spy for a local Python service, pprof when pprof_url is set. Measured
    # on the example service (benchmarks/profiling_cost.py, 10 pairs): p50 +1.7 %, p99
    # +3.4 %, service CPU per request +5 % while sampling at 100 Hz; throughput the same.
    profiler: str = "auto"  # auto | py-spy | pprof | command | none
    pprof_url: str | None = None  # a Go service's base URL (its /debug/pprof/...)
    command: str | None = None  # writes collapsed stacks to {output}; {pid}, {seconds}
    seconds: float = 10.0  # the window, in the middle of the longest measured phase
    rate: int = 100  # py-spy's samples per second
    keep: str = "failed"  # failed | always | never (--perf-flamegraph overrides)
    # Threads, descriptors, connections, and the gauges below; no false alarm in 20
    # runs of the example service (120 counts judged).
    growth: bool = True
    # Scraped gauges judged too (go_goroutines, asyncio tasks); naming one scrapes the
    # service's metrics during every perf test. These fail a test that leaks them, as
    # do sockets left in CLOSE_WAIT; threads, descriptors and connections are reported
    # (a pool that fills under load and stays full looks like a leak to counts alone:
    # the pool check judges connections).
    growth_metrics: tuple[str, ...] = ()
    settle: float = 2.0  # s after the load: its level after is read meanwhile
    min_rise: float = 5.0  # counts: less growth is never a leak


@dataclass(frozen=True, kw_only=True)
class PerfConfig:
    """The whole perfsuite configuration of one pytest run."""

    rootdir: Path
    mysql: MySQLConfig
    service: ServiceConfig | None
    profile: Profile
    profiles: Mapping[str, Profile]
    load: LoadConfig = field(default_factory=LoadConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    slo: Mapping[str, Any] = field(default_factory=dict)
    pool: PoolConfig = field(default_factory=PoolConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    profiling: ProfilingConfig = field(default_factory=ProfilingConfig)
    # A path (relative to the root) or a SQLAlchemy URL; None: <reports>/history.sqlite.
    history: str | None = None
