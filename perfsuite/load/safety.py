"""Where load may go, and how many sockets we may hold.

A load tool pointed at production by a typo is a real risk: targets must be
loopback or explicitly allowed. Every run is bounded in time and count.
"""

from __future__ import annotations

import ipaddress
import resource
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from perfsuite.errors import ConfigError, LoadError

__all__ = ["check_target", "raise_nofile"]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_target(url: str, allowed_hosts: Collection[str] = ()) -> tuple[str, int]:
    """(host, port) of an http:// or https:// URL that may receive load, else
    :class:`ConfigError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"load target must be an http:// or https:// URL, got {url!r}")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConfigError(f"load target has a bad port: {url!r}") from exc
    if host not in allowed_hosts and not _is_loopback(host):
        raise ConfigError(
            f"refusing to send load to {host!r}: it is not loopback (127.0.0.0/8, ::1) and "
            f"not listed in [tool.perfsuite] allowed_hosts"
        )
    return host, port


def raise_nofile(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (or beyond, when privileged).

    Raises :class:`LoadError` when ``needed`` descriptors cannot be had.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    elif hard == resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    if soft != resource.RLIM_INFINITY and soft < needed:
        # A privileged process (root, CAP_SYS_RESOURCE) may raise the hard limit
        # itself, up to fs.nr_open; an unprivileged one gets the error below.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(needed, hard)))
            return needed
        except (ValueError, OSError):
            pass
        raise LoadError(
            f"{needed} file descriptors are needed (max_connections plus a margin) but the "
            f"hard limit RLIMIT_NOFILE is {hard}; raise it (ulimit -Hn, or LimitNOFILE= in "
            f"systemd) or lower max_connections"
        )
    return int(soft)
