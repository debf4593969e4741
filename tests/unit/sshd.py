"""Debian's OpenSSH server as a test starts it: its own keys, port and config."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_or_skip() -> str:
    """The sshd binary, or a skip that says what is missing."""
    if not os.path.exists(SSHD) or os.geteuid() != 0:
        pytest.skip("needs Debian's openssh-server (sshd) and root (.ci/run installs it)")
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    return SSHD


def make_keys(folder: Path) -> None:
    """A host key, a client key, and the client's key authorized."""
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
            check=True,
        )
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())


def server_config(folder: Path, name: str, address: str, port: int) -> Path:
    """An sshd config listening on ``address:port``, with ``folder``'s keys."""
    path = folder / f"sshd_config_{name}"
    path.write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"PidFile {folder / f'sshd_{name}.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    return path


def client_config(folder: Path, hosts: Mapping[str, tuple[str, int]]) -> Path:
    """An ssh client config naming each host alias's address and port."""
    path = folder / "ssh_config"
    path.write_text(
        "".join(
            f"Host {alias}\n  HostName {address}\n  Port {port}\n  User root\n"
            f"  IdentityFile {folder / 'client_key'}\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n"
            for alias, (address, port) in hosts.items()
        )
    )
    return path


def wait_listening(
    address: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 10
) -> None:
    """Return once ``address:port`` accepts; fail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex((address, port)) == 0:
                return
        assert proc.poll() is None, "sshd exited"
        assert time.monotonic() < deadline, "sshd did not listen"
        time.sleep(0.05)
