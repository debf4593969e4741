"""Owned folders: locked while their run lives, swept with their processes after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perfsuite.provision import ownership
from perfsuite.provision.mysql_process import DATADIR_PREFIX
from perfsuite.provision.ownership import (
    KNOWN_PREFIXES,
    OWNER_ENV,
    owned_tempdir,
    owner_alive,
    remove_owned,
)
from perfsuite.provision.service import SERVICE_DIR_PREFIX
from perfsuite.provision.worktree import WORKTREE_PREFIX

PREFIX = "perfsuite-test-owned-"

# A run that makes a folder, starts a child whose own child no death signal
# reaches (the shell dies with the run, the sleep does not), then is killed.
RUN = """
import os, signal, sys, time
from pathlib import Path
from perfsuite.provision._proc import owned_tempdir, start_process
folder = owned_tempdir(sys.argv[1], Path(sys.argv[2]))
mark = folder / "grandchild"
start_process(["sh", "-c", f"sleep 300 & echo $! > {mark}; wait"], log_path=folder / "log")
while not (folder / "grandchild").exists():
    time.sleep(0.01)
time.sleep(0.2)
print(folder, flush=True)
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(300)
"""


def _run(tmp_path: Path, how: str) -> tuple[subprocess.Popen[str], Path, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, PREFIX, str(tmp_path), how],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())
    grandchild = int((folder / "grandchild").read_text())
    return proc, folder, grandchild


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_killed_runs_folder_and_processes_are_swept_by_the_next(tmp_path: Path) -> None:
    proc, folder, grandchild = _run(tmp_path, "kill")
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # The kill -9 left the folder and the grandchild (it carries the dead run's token).
    assert folder.exists()
    assert psutil.pid_exists(grandchild)
    token = (folder / "owner.lock").read_text()
    environ = Path(f"/proc/{grandchild}/environ").read_bytes().split(b"\0")
    assert f"{OWNER_ENV}={token}".encode() in environ
    assert not owner_alive(token)  # what it labelled (containers) is a dead run's
    mine = owned_tempdir(PREFIX, tmp_path)  # the next run's first folder sweeps
    try:
        assert not folder.exists()
        assert _gone(grandchild)
    finally:
        remove_owned(mine)


def test_a_live_runs_folder_is_never_swept(tmp_path: Path) -> None:
    proc, folder, grandchild = _run(tmp_path, "live")
    try:
        mine = owned_tempdir(PREFIX, tmp_path)
        remove_owned(mine)
        ownership.sweep_leftovers()
        assert folder.exists()  # its owner holds the lock
        assert owner_alive((folder / "owner.lock").read_text())
        assert psutil.pid_exists(grandchild)
    finally:
        os.killpg(os.getpgid(grandchild), signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=10)


def test_a_reused_pid_does_not_keep_a_folder(tmp_path: Path) -> None:
    # The lock is the mark, not the pid: a folder whose lock is free is stale even
    # if its owner's pid now belongs to someone else (here: this very process).
    stale = tmp_path / f"{PREFIX}reused"
    stale.mkdir()
    (stale / "owner.lock").write_text(f"{os.getpid()}-0000")
    (stale / "owner.pid").write_text(str(os.getpid()))
    remove_owned(owned_tempdir(PREFIX, tmp_path))
    assert not stale.exists()


@pytest.mark.parametrize("prefix", [DATADIR_PREFIX, SERVICE_DIR_PREFIX, WORKTREE_PREFIX])
def test_every_kind_of_folder_is_swept(prefix: str) -> None:
    assert prefix in {p for p, _ in KNOWN_PREFIXES}
