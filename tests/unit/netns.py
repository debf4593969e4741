"""Network namespaces a test makes for itself: separate "hosts" on one bridge.

Each namespace gets a veth pair to a bridge in the root namespace, an address
of 10.231.<n>.0/24 (``n`` from this process's id, so that two test sessions do
not meet) and its own loopback. Everything is removed on close: the processes
started in the namespaces, the namespaces, the bridge. Needs root and
iproute2; :func:`namespaces_or_skip` says why not where they cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Namespaces:
    """``names`` as namespaces on one bridge; ``addr[name]`` their addresses."""

    def __init__(self, names: Sequence[str]) -> None:
        n = os.getpid() % 200 + 20
        self.tag = f"ps{os.getpid() % 100000}"
        self.bridge = f"{self.tag}br"
        self.root_addr = f"10.231.{n}.1"
        self.addr: dict[str, str] = {}
        self.ns: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.root_addr}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(names, start=2):
                ns, host, peer = f"{self.tag}-{name}", f"{self.tag}{name}h", f"{self.tag}{name}n"
                _ip("netns", "add", ns)
                self.ns[name] = ns
                _ip("link", "add", host, "type", "veth", "peer", "name", peer)
                _ip("link", "set", peer, "netns", ns)
                _ip("link", "set", host, "master", self.bridge, "up")
                self.addr[name] = f"10.231.{n}.{i}"
                _ip("-n", ns, "addr", "add", f"{self.addr[name]}/24", "dev", peer)
                _ip("-n", ns, "link", "set", peer, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def popen(self, name: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """``argv`` started in namespace ``name`` (killed on close, with its namespace's)."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[name], *argv],
            **kwargs,  # type: ignore[call-overload]
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill what runs in the namespaces, then remove them and the bridge."""
        for ns in self.ns.values():
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=10)
        for ns in self.ns.values():
            _ip("netns", "del", ns, check=False)  # its veth end goes, and so the pair
        _ip("link", "del", self.bridge, check=False)


@contextlib.contextmanager
def namespaces_or_skip(names: Sequence[str]) -> Iterator[Namespaces]:
    """:class:`Namespaces`, or a skip that says why they cannot be made here."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (ip)")
    try:
        made = Namespaces(names)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"network namespaces cannot be made here: {exc.stderr.strip()}")
    try:
        yield made
    finally:
        made.close()
