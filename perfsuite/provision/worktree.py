"""Another build of the project, checked out beside it: a temporary git worktree.

``--perf-ab=REF`` runs the base build from ``git worktree add --detach``: the
same repository, no copy of its history, removed afterwards (also after
Ctrl-C; a run killed outright leaves a folder that the next run removes,
and ``git worktree prune`` forgets it).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from perfsuite.errors import ConfigError, ProvisionError
from perfsuite.provision.ownership import owned_tempdir

__all__ = ["WORKTREE_PREFIX", "Worktree", "git_worktree", "resolve_ref"]

WORKTREE_PREFIX = "perfsuite-ab-"
_TIMEOUT = 120.0


@dataclass(frozen=True)
class Worktree:
    """A checked-out build: where, which ref, which commit."""

    path: Path
    ref: str
    commit: str

    @property
    def label(self) -> str:
        """``origin/main (1a2b3c4)``."""
        return f"{self.ref} ({self.commit[:7]})"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ConfigError("--perf-ab needs git, which is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(f"git {' '.join(args)} took over {_TIMEOUT:g} s") from exc


def resolve_ref(root: Path, ref: str) -> str:
    """The commit of ``ref`` in the project's repository, or a clear error."""
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        raise ConfigError(f"--perf-ab={ref}: {root} is not in a git repository")
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise ConfigError(
            f"--perf-ab={ref}: no such commit in {root} (a branch, tag or sha; "
            "in CI, fetch it first: actions/checkout with fetch-depth: 0)"
        )
    return found.stdout.strip()


@contextlib.contextmanager
def git_worktree(root: Path, ref: str) -> Iterator[Worktree]:
    """Check ``ref`` out into a temporary worktree; remove it when the block ends."""
    commit = resolve_ref(root, ref)
    _git(root, "worktree", "prune")  # registrations of trees a killed run left
    parent = owned_tempdir(WORKTREE_PREFIX)
    path = parent / "tree"
    try:
        added = _git(root, "worktree", "add", "--detach", str(path), commit)
        if added.returncode != 0:
            raise ProvisionError(
                f"--perf-ab={ref}: git could not check out {commit[:12]}: "
                f"{added.stderr.strip() or added.stdout.strip()}"
            )
        yield Worktree(path=path, ref=ref, commit=commit)
    finally:
        # Never half-removed: the folder goes even if git refuses, and prune forgets it.
        _git(root, "worktree", "remove", "--force", str(path))
        shutil.rmtree(parent, ignore_errors=True)
        _git(root, "worktree", "prune")
