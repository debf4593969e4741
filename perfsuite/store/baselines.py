"""Baselines: one versioned JSON file per test, with its last N runs.

``baselines/<test>-<hash>.json`` (the hash: of the whole node id)::

    {"schema": 3, "kind": "perfsuite-baseline", "test": "<node id>",
     "runs": [{"created": ..., "commit": ..., "fingerprint": {...},
               "judged": "regressed" | "improved" | "same" | null,
               "confirmed": false,
               "loads": [<encode_load(...)>, ...],
               "cost": [{"queries_per_request": ..., ...} | null, ...],
               "lag": [{"<replica>": <encode_blocks(...)>, ...} | null, ...]}, ...]}

The newest run is last. ``judged`` is what the gate said of the run when it
was saved (null: not compared), ``confirmed`` whether a rerun agreed: the
comparison window is the current level (:mod:`perfsuite.stats.levels`).
``cost`` is each load's cost per request
(:meth:`perfsuite.stats.cost.RequestCost.gated`; null for a load without it);
``lag`` each load's replication lag per replica, its measured phases' heartbeats
as blocks of a second (:meth:`perfsuite.stats.lag.ReplicaLag.blockset`; null
for a load without replicas). Readers refuse a schema they do not know and
migrate older ones (schema 1 had no ``judged``, schema 2 no ``cost``, schema 3
no ``lag``), and a file whose ``test`` is not the
test asked for. Writes are atomic (temp + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perfsuite import __version__
from perfsuite.errors import StoreError
from perfsuite.stats.levels import Mark
from perfsuite.store.files import write_json_atomic

__all__ = ["SCHEMA", "BaselineStore", "RunRecord", "branch_of", "commit_of", "fingerprint"]

SCHEMA = 4
KIND = "perfsuite-baseline"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(*, profile: str, provider: str) -> dict[str, Any]:
    """What must match for two runs to be comparable."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "perfsuite": __version__,
        "profile": profile,
        "provider": provider,
    }


def _from_ci_or_git(rootdir: Path, variables: tuple[str, ...], *git_args: str) -> str | None:
    """The first CI variable that is set, else what ``git`` prints (None without git)."""
    for var in variables:
        if os.environ.get(var):
            return os.environ[var]
    try:
        out = subprocess.run(
            ["git", *git_args],
            cwd=rootdir,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def commit_of(rootdir: Path) -> str | None:
    """The commit under test: CI's variables, else ``git rev-parse HEAD``."""
    ci = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILD_VCS_NUMBER", "GIT_COMMIT")
    return _from_ci_or_git(rootdir, ci, "rev-parse", "HEAD")


def branch_of(rootdir: Path) -> str | None:
    """The branch under test: CI's variables, else git's current branch."""
    ci = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME", "BRANCH_NAME")
    branch = _from_ci_or_git(rootdir, ci, "rev-parse", "--abbrev-ref", "HEAD")
    return None if branch == "HEAD" else branch  # a detached HEAD has no branch


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One stored run of one test."""

    created: str
    commit: str | None
    fingerprint: Mapping[str, Any]
    loads: list[dict[str, Any]]
    judged: str | None = None  # what the gate said when it was saved (None: not compared)
    confirmed: bool = False  # a rerun agreed with that regression or improvement
    cost: list[dict[str, float] | None] | None = None  # per load (None: not measured)
    lag: list[dict[str, Any] | None] | None = None  # per load: replica -> blocks

    @classmethod
    def new(
        cls,
        *,
        commit: str | None,
        fingerprint: Mapping[str, Any],
        loads: list[dict[str, Any]],
        judged: str | None = None,
        confirmed: bool = False,
        cost: list[dict[str, float] | None] | None = None,
        lag: list[dict[str, Any] | None] | None = None,
    ) -> RunRecord:
        """A record stamped now."""
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(
            created=created,
            commit=commit,
            fingerprint=dict(fingerprint),
            loads=loads,
            judged=judged,
            confirmed=confirmed,
            cost=cost,
            lag=lag,
        )

    @property
    def mark(self) -> Mark:
        """What the gate said of it, for the current level."""
        return Mark(self.judged, self.confirmed)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "created": self.created,
            "commit": self.commit,
            "fingerprint": dict(self.fingerprint),
            "judged": self.judged,
            "confirmed": self.confirmed,
            "loads": self.loads,
            "cost": self.cost,
            "lag": self.lag,
        }


def file_name(test_id: str) -> str:
    """A file name for a node id: readable, and unique by a hash of the whole id.

    The readable part alone collides (``t[a b]`` and ``t[a-b]`` give one slug):
    the hash keeps every test in a file of its own.
    """
    digest = hashlib.sha1(test_id.encode()).hexdigest()[:10]
    return f"{_slug(test_id)[:120]}-{digest}.json"


def _slug(test_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", test_id.replace("::", ".")).strip("-.")


def _legacy_file_name(test_id: str) -> str:
    """The name before perfsuite 0.x kept a hash on every file (read, then moved)."""
    slug = _slug(test_id)
    if len(slug) > 150:
        digest = hashlib.sha1(test_id.encode()).hexdigest()[:10]
        slug = f"{slug[:120]}-{digest}"
    return f"{slug}.json"


class BaselineStore:
    """The folder of baseline files (``--perf-baseline-dir``)."""

    def __init__(self, folder: Path, *, window: int = 10) -> None:
        if window < 1:
            raise StoreError(f"the baseline window must be >= 1, got {window}")
        self.folder = folder
        self.window = window

    def __repr__(self) -> str:
        return f"<BaselineStore {self.folder} window={self.window}>"

    def path(self, test_id: str) -> Path:
        """The file of a test."""
        return self.folder / file_name(test_id)

    def runs(self, test_id: str) -> list[RunRecord]:
        """The stored runs of a test, oldest first ([] when there is no file).

        A file of the older naming is read when it holds this very test (its
        slug may be another test's: ``t[a b]`` and ``t[a-b]`` shared one).
        """
        data = self._read(self.path(test_id))
        if data is None:
            legacy = self._read(self.folder / _legacy_file_name(test_id))
            if legacy is None or legacy.get("test") != test_id:
                return []
            data = legacy
        elif data.get("test") != test_id:
            raise StoreError(
                f"{self.path(test_id)} holds the baseline of {data.get('test')!r}, "
                f"not of {test_id!r} (a copied or renamed file?)"
            )
        return [RunRecord(**run) for run in data["runs"]]

    def _read(self, path: Path) -> dict[str, Any] | None:
        """A baseline file, migrated to the current schema (None: no file)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path} is not valid JSON: {exc}") from exc
        return _migrate(data, path)

    def all_runs(self) -> dict[str, list[RunRecord]]:
        """Every test's stored runs in the folder, each file read once.

        A file that is not a readable baseline of a known schema is left out
        (that test's own comparison says what is wrong with it).
        """
        out: dict[str, list[RunRecord]] = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                test = data.get("test") if isinstance(data, dict) else None
                # A file under another test's name (copied, renamed) is not that test's.
                if isinstance(test, str) and path.name in (
                    file_name(test),
                    _legacy_file_name(test),
                ):
                    out[test] = [RunRecord(**run) for run in _migrate(data, path)["runs"]]
            except (OSError, json.JSONDecodeError, StoreError, TypeError):
                continue
        return out

    def save(self, test_id: str, run: RunRecord) -> Path:
        """Append a run, keep the newest ``window``, write atomically."""
        runs = [*self.runs(test_id), run][-self.window :]
        data = {
            "schema": SCHEMA,
            "kind": KIND,
            "test": test_id,
            "runs": [r.as_json() for r in runs],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(test_id)
        write_json_atomic(path, data)
        legacy = self.folder / _legacy_file_name(test_id)
        if legacy != path and self._holds(legacy, test_id):
            legacy.unlink()  # its runs are in the new file now
        return path

    def _holds(self, path: Path, test_id: str) -> bool:
        try:
            data = self._read(path)
        except StoreError:
            return False
        return data is not None and data.get("test") == test_id


def _migrate(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise StoreError(f"{path} is not a perfsuite baseline file")
    schema = data.get("schema")
    if schema == 1:  # no judged/confirmed yet: runs saved without a comparison
        runs = [{**run, "judged": None, "confirmed": False} for run in data.get("runs", [])]
        return {**data, "schema": SCHEMA, "runs": runs}
    if schema in (2, 3):  # no cost (2) or lag (3) yet
        return {**data, "schema": SCHEMA}
    if schema == SCHEMA:
        return data
    if isinstance(schema, int) and schema > SCHEMA:
        raise StoreError(
            f"{path} has schema {schema}, newer than this perfsuite ({__version__}) "
            f"reads ({SCHEMA}); upgrade perfsuite"
        )
    raise StoreError(f"{path} has an unknown schema {schema!r}")
