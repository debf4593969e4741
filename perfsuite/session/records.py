"""What a session keeps: the tests' entries, then the run record, history and summaries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from perfsuite.config import PerfConfig
from perfsuite.errors import PerfsuiteError
from perfsuite.gate import Gate
from perfsuite.report.markdown import render_markdown
from perfsuite.secrets import redact
from perfsuite.store.baselines import branch_of
from perfsuite.store.history import History, history_url
from perfsuite.store.ingest import append_record, run_uid
from perfsuite.store.runs import write_run

__all__ = ["Records"]


class Records:
    """The perf tests' entries of one session (a pytest plugin: xdist ships them here)."""

    def __init__(
        self,
        config: PerfConfig,
        *,
        reports_dir: Path,
        history: str | None,
        markdown: str | None,
        is_worker: bool,
    ) -> None:
        self.config = config
        self.reports_dir = reports_dir
        self.history = history
        self.markdown = markdown
        self.is_worker = is_worker  # a pytest-xdist worker: its controller records
        self.entries: list[dict[str, Any]] = []
        # Tests stopped by Ctrl-C or SIGTERM: (node id, their loads described).
        self.interrupted: list[tuple[str, list[str]]] = []

    def add(self, entry: dict[str, Any]) -> None:
        """A perf test's results and verdicts, for the run record and the summaries."""
        self.entries.append(entry)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """(a pytest hook) Collect the entries the reports carry, also from xdist workers."""
        entry = getattr(report, "perfsuite_entry", None)
        if entry is not None and not self.is_worker:
            self.add(entry)

    def finish(self, gate: Gate) -> tuple[list[str], list[str]]:
        """Write the run record, the history and the Markdown summary; return what was
        written and what could not be (each part is tried, whatever the others did)."""
        if not self.entries:
            return [], []
        written: list[str] = []
        errors: list[str] = []
        record: dict[str, Any] | None = None
        try:
            path, record = write_run(
                self.reports_dir / "runs",
                commit=gate.commit,
                branch=branch_of(self.config.rootdir),
                fingerprint=gate.fingerprint,
                profile=self.config.profile.name,
                tests=self.entries,
            )
            written.append(str(path))
        except (PerfsuiteError, OSError) as exc:
            errors.append(f"the run record: {exc}")
        if self.history is not None and record is not None:
            url = history_url(self.history, self.config.rootdir)
            try:
                with History(url) as history:
                    append_record(history, record, uid=run_uid(record, path.stem))
                written.append(f"{redact(url)} (history)")
            except (PerfsuiteError, OSError) as exc:
                errors.append(f"the history {redact(url)}: {redact(str(exc))}")
        text = render_markdown(self.entries, commit=gate.commit, profile=self.config.profile.name)
        targets = [t for t in (self.markdown, os.environ.get("GITHUB_STEP_SUMMARY")) if t]
        for target in targets:
            try:
                mode = "a" if target != self.markdown else "w"
                with open(target, mode, encoding="utf-8") as fh:
                    fh.write(text)
                if target == self.markdown:
                    written.append(target)
            except OSError as exc:
                errors.append(f"the Markdown summary {target}: {exc}")
        return written, errors
