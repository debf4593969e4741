"""PerfSession: reads the options once and owns the lifecycle of a run.

The pytest hooks in ``plugin.py`` only hand over to this object; it can be
built and driven without pytest's machinery beyond a ``pytest.Config``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import pytest

from perfsuite import __version__
from perfsuite.config import PerfConfig, load_config, read_pyproject
from perfsuite.errors import ConfigError, DockerError, LoadGeneratorSaturated
from perfsuite.gate import FAIL_ON, Gate, TestVerdict, confirm, objectives_for
from perfsuite.load import EngineOptions, LoadResult, Phase, Progress, Scenario
from perfsuite.load.parallel import run_parallel
from perfsuite.probes.metrics import PoolGauges, read_gauges, resolve_preset
from perfsuite.probes.pool import DbProbe, PoolWatch
from perfsuite.probes.resources import DockerStatsSampler, ResourceSampler, ResourceSeries
from perfsuite.provision import (
    DockerStatus,
    MySQLServer,
    ProviderChoice,
    Service,
    choose_provider,
    open_mysql,
    probe_docker,
    start_service,
)
from perfsuite.report.markdown import render_markdown
from perfsuite.stats.compare import CompareOptions
from perfsuite.stats.slo import RESOURCE_METRICS, Objective, SloResult, evaluate_resources
from perfsuite.stats.trend import theil_sen
from perfsuite.store.baselines import BaselineStore, branch_of, commit_of, fingerprint
from perfsuite.store.history import History, history_target, history_url, redact
from perfsuite.store.ingest import append_record, run_uid
from perfsuite.store.runs import write_run

__all__ = ["PerfSession"]


def _option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name, default=None) or config.getini(name) or None
    return str(value) if value is not None else None


def project_root(config: pytest.Config) -> Path:
    """The folder of the pyproject.toml that configures perfsuite.

    pytest's rootdir is not always it: a separate option value (``--perf-
    baseline-dir DIR``) counts as a path when rootdir is decided, before
    plugins' options are known. So: the ini file's folder when it is a
    pyproject.toml, else the nearest pyproject.toml with [tool.perfsuite]
    above the invocation folder, else rootdir.
    """
    inipath = config.inipath
    if inipath is not None and inipath.name == "pyproject.toml":
        return inipath.parent
    start = config.invocation_params.dir
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "[tool.perfsuite" in candidate.read_text(errors="replace"):
            return folder
    return config.rootpath


class PerfSession:
    """The perfsuite state of one pytest run (registered as a plugin)."""

    def __init__(self, config: pytest.Config, *, docker: Callable[[], DockerStatus] = probe_docker):
        root = project_root(config)
        self.config: PerfConfig = load_config(
            root,
            read_pyproject(root),
            profile=_option(config, "perf_profile"),
            mysql=_option(config, "perf_mysql"),
            mysql_image=config.getoption("perf_mysql_image", default=None),
            baseline_dir=config.getoption("perf_baseline_dir", default=None),
        )
        self.default_slo = objectives_for(self.config.slo, [])  # fail early on a bad value
        self.save_baseline = bool(config.getoption("perf_save_baseline", default=False))
        self.compare = bool(config.getoption("perf_compare", default=False))
        self.confirm = bool(config.getoption("perf_confirm", default=False))
        self.fail_on: frozenset[str] = config.getoption("perf_fail_on", default=None) or frozenset(
            FAIL_ON
        )
        self._gate: Gate | None = None
        self.mysql_server: MySQLServer | None = None
        self.entries: list[dict[str, Any]] = []
        self.is_worker = hasattr(config, "workerinput")  # a pytest-xdist worker
        self.markdown: str | None = config.getoption("perf_markdown", default=None)
        reports = config.getoption("perf_reports_dir", default=None)
        self.reports_dir = root / (reports or "reports")
        self.history: str | None = history_target(
            config.getoption("perf_history", default=None), self.config.history, self.reports_dir
        )
        pool = self.config.pool
        self._pool_names = (
            resolve_preset(pool.metrics, pool.metric_names) if pool.metrics != "none" else {}
        )
        self._docker = docker
        self._choice: ProviderChoice | None = None
        self._stack = contextlib.ExitStack()
        self._network: Any = None
        self.service: Service | None = None

    # -- what the run uses --------------------------------------------------

    def choice(self) -> ProviderChoice:
        """The MySQL provider of this run, decided once (asks Docker under ``auto``)."""
        if self._choice is None:
            self._choice = choose_provider(self.config.mysql, self._docker)
        return self._choice

    def header(self) -> str:
        """The session header line: version, profile, provider and why."""
        choice = self.choice()
        cfg = self.config.service
        service = cfg.for_mysql(choice.provider).kind if cfg else "none configured"
        return (
            f"perfsuite {__version__}: profile={self.config.profile.name}, "
            f"mysql={choice.provider} ({choice.reason}), service={service}"
        )

    def network(self) -> Any:
        """The Docker network shared by the MySQL and service containers."""
        if self._network is None:
            from perfsuite.provision.containers import docker_network

            self._network = self._stack.enter_context(docker_network())
        return self._network

    # -- lifecycles, driven by the session-scoped fixtures -----------------

    @contextlib.contextmanager
    def mysql(self) -> Iterator[MySQLServer]:
        """The provisioned server with its schema; stopped when the block ends."""
        choice = self.choice()
        network = None
        if choice.provider == "container":
            try:
                network = self.network()
            except DockerError:
                if not choice.fallback:
                    raise
        with open_mysql(self.config.mysql, choice, network=network) as server:
            self.mysql_server = server
            try:
                yield server
            finally:
                self.mysql_server = None

    def seed(self, server: MySQLServer) -> None:
        """Run the ``seed = "module:function"`` callable of the config, if any."""
        if self.config.mysql.seed is None:
            return
        module_name, _, attr = self.config.mysql.seed.partition(":")
        root = str(self.config.rootdir)
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"[tool.perfsuite] seed: cannot import {self.config.mysql.seed!r}: {exc}"
            ) from exc
        func(server)

    @contextlib.contextmanager
    def start_service(self, server: MySQLServer) -> Iterator[Service]:
        """The service under test, healthy; stopped when the block ends."""
        if self.config.service is None:
            raise ConfigError(
                "no service configured: add [tool.perfsuite.service] with a command, "
                "an image or a url"
            )
        cfg = self.config.service.for_mysql(server.provider)
        network = None
        if cfg.kind == "container":
            if server.provider not in ("container", "url"):
                raise ConfigError(
                    "[tool.perfsuite.service] image: a service container needs MySQL in a "
                    f"container too (--perf-mysql=container), not {server.provider!r}"
                )
            network = self.network() if server.provider == "container" else None
        with start_service(cfg, server, network=network) as service:
            self.service = service
            try:
                yield service
            finally:
                self.service = None

    # -- load -----------------------------------------------------------------

    def engine_options(self) -> EngineOptions:
        """The engine's limits, from ``[tool.perfsuite.load]`` and ``allowed_hosts``."""
        load = self.config.load
        return EngineOptions(
            max_connections=load.max_connections,
            timeout=load.timeout,
            late_threshold=load.late_threshold,
            max_requests=load.max_requests,
            max_duration=load.max_duration,
            allowed_hosts=load.allowed_hosts,
        )

    def run_load(
        self,
        scenario: Scenario,
        phases: Phase | list[Any] | tuple[Any, ...],
        *,
        target: str,
        progress: Callable[[Progress], None] | None = None,
    ) -> LoadResult:
        """Run the phases; a saturated generator is an error, not a verdict on the service."""
        result = run_parallel(
            target,
            scenario,
            flatten_phases(phases),
            options=self.engine_options(),
            workers=self.config.load.workers,
            progress=progress,
        )
        if result.saturated:
            raise LoadGeneratorSaturated(
                f"load generator saturated: {result.saturation_reason}\n{result.describe()}"
            )
        return result

    # -- the pool check -------------------------------------------------------

    def pool_watch(self, *, disabled: bool) -> PoolWatch | None:
        """A watch of the service's pool for one load, or None when there is none to watch."""
        pool = self.config.pool
        server, service = self.mysql_server, self.service
        if disabled or not pool.check or server is None or service is None:
            return None
        gauges = None
        if pool.metrics != "none":
            url = service.base_url + pool.metrics_path
            preset, names = pool.metrics, self._pool_names

            def gauges() -> PoolGauges:
                with httpx.Client(timeout=5.0, trust_env=False) as client:
                    return read_gauges(client, url, preset, names)

        probe = DbProbe(server, pool.user or server.user)
        return PoolWatch(probe, gauges, max_idle=pool.max_idle, timeout=pool.timeout)

    # -- the gate -------------------------------------------------------------

    def test_id(self, path: Path, nodeid: str) -> str:
        """A test's id relative to the project, whatever pytest's rootdir was."""
        try:
            relative = path.resolve().relative_to(self.config.rootdir.resolve()).as_posix()
        except ValueError:
            return nodeid
        _, sep, rest = nodeid.partition("::")
        return relative + sep + rest

    def gate(self) -> Gate:
        """The SLO and baseline gate, made on first use (it reads the git commit)."""
        if self._gate is None:
            b = self.config.baseline
            self._gate = Gate(
                BaselineStore(b.dir, window=b.window),
                CompareOptions(
                    metrics=b.metrics, alpha=b.alpha, tolerance=b.tolerance, tolerances=b.tolerances
                ),
                fingerprint=fingerprint(
                    profile=self.config.profile.name, provider=self.choice().provider
                ),
                commit=commit_of(self.config.rootdir),
            )
        return self._gate

    def judge(
        self,
        test_id: str,
        results: list[LoadResult],
        marks: Sequence[Mapping[str, Any]],
        rerun: Callable[[], list[LoadResult]],
        resources: Sequence[ResourceSeries] = (),
    ) -> TestVerdict:
        """SLOs, then the baseline comparison (confirmed by a rerun if asked), then saving."""
        if marks and not results:
            raise ConfigError(f"{test_id} declares SLOs but ran no load (call perf_run)")
        gate = self.gate()
        verdict = TestVerdict()
        objectives = objectives_for(self.config.slo, marks)
        verdict.slo = gate.judge_slo(results, objectives)
        verdict.slo += self._judge_resources(objectives, resources, verdict)
        if self.compare and results:
            verdict.comparisons, verdict.warnings = gate.compare(test_id, results)
            if self.confirm and verdict.regressions():
                again, _ = gate.compare(test_id, rerun())
                verdict.confirmed = confirm(verdict, again)
        if self.save_baseline and results:
            gate.save(test_id, results)
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

    def resource_sampler(self) -> ResourceSampler | DockerStatsSampler | None:
        """A sampler of the service: its local process tree, or its container's stats."""
        if self.service is None:
            return None
        if self.service.container is not None:
            return DockerStatsSampler(self.service.container.get_wrapped_container())
        pid = self.service.pid
        return ResourceSampler(pid) if pid is not None else None

    # -- records and reports --------------------------------------------------

    def add_entry(self, entry: dict[str, Any]) -> None:
        """A perf test's results and verdicts, for the run record and the summaries."""
        self.entries.append(entry)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """(a pytest hook) Collect the entries the reports carry, also from xdist workers."""
        entry = getattr(report, "perfsuite_entry", None)
        if entry is not None and not self.is_worker:
            self.add_entry(entry)

    def finish(self) -> list[str]:
        """Write the run record and the Markdown summary; return what was written."""
        if not self.entries:
            return []
        gate = self.gate()
        path, record = write_run(
            self.reports_dir / "runs",
            commit=gate.commit,
            branch=branch_of(self.config.rootdir),
            fingerprint=gate.fingerprint,
            profile=self.config.profile.name,
            tests=self.entries,
        )
        written = [str(path)]
        if self.history is not None:
            url = history_url(self.history, self.config.rootdir)
            with History(url) as history:
                append_record(history, record, uid=run_uid(record, path.stem))
            written.append(f"{redact(url)} (history)")
        text = render_markdown(self.entries, commit=gate.commit, profile=self.config.profile.name)
        if self.markdown:
            Path(self.markdown).write_text(text, encoding="utf-8")
            written.append(self.markdown)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(text)
        return written

    def close(self) -> None:
        """Remove what the session itself holds (the Docker network)."""
        self._stack.close()

    # -- reporting ----------------------------------------------------------

    def service_log_tail(self, lines: int = 50) -> str | None:
        """The service's last log lines, for the report of a failing test."""
        if self.service is None:
            return None
        return self.service.logs(lines) or None

    @staticmethod
    def short_error(exc: BaseException) -> str:
        """One clear line (or block) for a perfsuite error, no traceback."""
        return f"perfsuite: {type(exc).__name__}: {exc}"


def flatten_phases(phases: Phase | list[Any] | tuple[Any, ...]) -> list[Phase]:
    """Phases as given to ``perf_run``: one, a list, or lists in a list (stairs)."""
    if not isinstance(phases, list | tuple):
        return [phases]
    flat: list[Phase] = []
    for item in phases:
        flat.extend(flatten_phases(item))
    return flat


def perf_lock(session: PerfSession) -> IO[str]:
    """Hold the machine-wide lock of perf tests (closing the file releases it).

    One lock for the machine, whatever the project: two load tests at once
    would steal each other's CPU. The file stays (removing a lock file races).
    """
    del session
    path = Path(tempfile.gettempdir()) / "perfsuite.lock"
    fh = path.open("a+")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh
