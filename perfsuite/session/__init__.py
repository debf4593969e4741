"""PerfSession: reads the options once and owns the lifecycle of a run.

The pytest hooks in ``plugin.py`` only hand over to this object; it can be
built and driven without pytest's machinery beyond a ``pytest.Config``.
Its parts follow the run's lifecycle, one module each: ``provisioning``
(MySQL, seed, service), ``loads`` (the engine and the watchers of the
service), ``judging`` (SLOs and baselines) and ``records`` (run record,
history, summaries); ``lock`` is the machine-wide lock of perf work.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from perfsuite import __version__
from perfsuite.config import PerfConfig, load_config, read_pyproject
from perfsuite.config.parse import load_agents
from perfsuite.errors import ConfigError, PerfsuiteError
from perfsuite.provision import DockerStatus, ProviderChoice, probe_docker
from perfsuite.session.ab import ABOptions
from perfsuite.session.export import LiveExporter
from perfsuite.session.judging import Judging
from perfsuite.session.loads import Loads, flatten_phases
from perfsuite.session.lock import perf_lock
from perfsuite.session.provisioning import Provisioning
from perfsuite.session.records import Records
from perfsuite.signals import run_signals
from perfsuite.store.history import history_target

__all__ = ["PerfSession", "flatten_phases", "perf_lock", "project_root"]


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


def _exporter(config: pytest.Config) -> LiveExporter | None:
    """The live exporter of ``--perf-prometheus-port`` (an xdist worker: PORT + its number)."""
    port = config.getoption("perf_prometheus_port", default=None)
    if port is None:
        return None
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    if not worker and getattr(config.option, "dist", "no") != "no":
        return None  # xdist's controller runs no test: its workers serve
    if port and worker.startswith("gw"):
        port += int(worker[2:])
    return LiveExporter(int(port))


class PerfSession:
    """The perfsuite state of one pytest run: its config, and one part per lifecycle."""

    def __init__(self, config: pytest.Config, *, docker: Callable[[], DockerStatus] = probe_docker):
        root = project_root(config)
        self.config: PerfConfig = load_config(
            root,
            read_pyproject(root),
            profile=_option(config, "perf_profile"),
            mysql=_option(config, "perf_mysql"),
            mysql_image=config.getoption("perf_mysql_image", default=None),
            baseline_dir=config.getoption("perf_baseline_dir", default=None),
            cost=False if config.getoption("perf_no_cost", default=False) else None,
        )
        tx = config.getoption("perf_tx", default=None) or config.getini("perf_tx")
        if tx:  # over [tool.perfsuite.load]'s workers and tx
            load = dataclasses.replace(
                self.config.load, tx=load_agents(list(tx), "--perf-tx"), workers=1
            )
            self.config = dataclasses.replace(self.config, load=load)
        keep = config.getoption("perf_flamegraph", default=None)
        if keep is not None:
            profiling = dataclasses.replace(self.config.profiling, keep=keep)
            self.config = dataclasses.replace(self.config, profiling=profiling)
        self.ab = ABOptions(
            ref=config.getoption("perf_ab", default=None),
            url=config.getoption("perf_ab_url", default=None),
            pairs=int(config.getoption("perf_ab_pairs", default=10)),
            base_env=dict(config.getoption("perf_ab_env", default=None) or []),
        )
        if self.ab.enabled:
            self.ab.check(self.config.rootdir)
            for option in ("perf_compare", "perf_save_baseline"):
                if config.getoption(option, default=False):
                    flag = "--" + option.replace("_", "-")
                    raise ConfigError(
                        f"{flag} and --perf-ab: an A/B session compares the two builds; "
                        "stored baselines are for the runs of one build"
                    )
        self.provisioning = Provisioning(self.config, docker)
        self.exporter = _exporter(config)
        self.loads = Loads(self.config, self.provisioning, exporter=self.exporter)
        self.judging = Judging(
            self.config,
            provider=lambda: self.provisioning.choice().provider,
            compare=bool(config.getoption("perf_compare", default=False)) or self.ab.enabled,
            save_baseline=bool(config.getoption("perf_save_baseline", default=False)),
            confirm=bool(config.getoption("perf_confirm", default=True)),
            fail_on=config.getoption("perf_fail_on", default=None),
        )
        reports_dir = root / (config.getoption("perf_reports_dir", default=None) or "reports")
        self.records = Records(
            self.config,
            reports_dir=reports_dir,
            history=history_target(
                config.getoption("perf_history", default=None), self.config.history, reports_dir
            ),
            markdown=config.getoption("perf_markdown", default=None),
            is_worker=hasattr(config, "workerinput"),
        )
        # What the session end wrote and could not write, once it has (None: not yet).
        self.finished: tuple[list[str], list[str]] | None = None
        self._stack = contextlib.ExitStack()
        # SIGTERM (a CI runner cancelling the job) ends the session as Ctrl-C does.
        self._stack.enter_context(run_signals())

    def choice(self) -> ProviderChoice:
        """The MySQL provider of this run, decided once (asks Docker under ``auto``)."""
        return self.provisioning.choice()

    def header(self) -> str:
        """The session header line: version, profile, provider and why."""
        choice = self.choice()
        cfg = self.config.service
        service = cfg.for_mysql(choice.provider).kind if cfg else "none configured"
        live = (
            f", live metrics at http://127.0.0.1:{self.exporter.port}/metrics"
            if self.exporter is not None
            else ""
        )
        return (
            f"perfsuite {__version__}: profile={self.config.profile.name}, "
            f"mysql={choice.provider} ({choice.reason}), service={service}{live}"
        )

    def takes_profiles(self) -> bool:
        """Whether the service is profiled during the loads: unless profiles are never
        kept (``--perf-flamegraph=never``), as a test's verdict is not known before."""
        return self.config.profiling.keep != "never"

    def keeps_profile(self, item: pytest.Item, *, failed: bool) -> bool:
        """Whether this test's profiles are kept: it failed, or always, or its marker."""
        keep = self.config.profiling.keep
        marked = item.get_closest_marker("flamegraph") is not None
        return keep == "always" or (keep == "failed" and (failed or marked))

    def test_id(self, path: Path, nodeid: str) -> str:
        """A test's id relative to the project, whatever pytest's rootdir was."""
        try:
            relative = path.resolve().relative_to(self.config.rootdir.resolve()).as_posix()
        except ValueError:
            return nodeid
        _, sep, rest = nodeid.partition("::")
        return relative + sep + rest

    def finish(self) -> tuple[list[str], list[str]]:
        """Write the run record, the history and the summaries (once); return what was
        written and what could not be."""
        if self.finished is not None:
            return [], []
        self.finished = [], []
        if self.records.entries:
            try:
                gate = self.judging.gate()
            except PerfsuiteError as exc:
                self.finished = [], [f"the run record: {exc}"]
            else:
                self.finished = self.records.finish(gate)
        return self.finished

    def close(self) -> None:
        """Give SIGTERM (and an ignored SIGINT) back as they were; stop serving metrics."""
        self._stack.close()
        if self.exporter is not None:
            self.exporter.close()

    @staticmethod
    def short_error(exc: BaseException) -> str:
        """One clear line (or block) for a perfsuite error, no traceback."""
        return f"perfsuite: {type(exc).__name__}: {exc}"
