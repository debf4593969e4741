"""What the load commands (``run``, ``replay``) read from their arguments alike."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from perfsuite.config import PerfConfig, parse_duration
from perfsuite.errors import ConfigError

if TYPE_CHECKING:  # the engine is imported when a load runs, not at every command's start
    from perfsuite.load.options import EngineOptions

__all__ = ["add_engine_arguments", "engine_options", "headers"]


def headers(values: list[str]) -> dict[str, str]:
    """``--header 'Name: value'`` options, as a mapping."""
    found = {}
    for header in values:
        key, sep, value = header.partition(":")
        if not sep:
            raise ConfigError(f"--header: expected 'Name: value', got {header!r}")
        found[key.strip()] = value.strip()
    return found


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine's options a load command takes."""
    parser.add_argument("--timeout", default="10s", help="per-request timeout (default 10s)")
    parser.add_argument("--connections", type=int, default=None, help="at most this many")
    parser.add_argument("--cacert", default=None, help="https: verify against these CAs (PEM)")
    parser.add_argument(
        "--insecure", action="store_true", help="https: do not verify the certificate"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument(
        "--tx",
        action="append",
        metavar="SPEC",
        help="execnet load agents instead of --workers, in pytest-xdist's spelling "
        "(2*popen, ssh=user@host//python=PATH); may be repeated",
    )
    parser.add_argument(
        "--allow-host", action="append", default=[], help="a non-loopback host that may get load"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress line")


def engine_options(args: argparse.Namespace, config: PerfConfig) -> EngineOptions:
    """The engine's options: the arguments', else the configuration's."""
    from perfsuite.load.options import EngineOptions

    return EngineOptions(
        max_connections=args.connections or config.load.max_connections,
        timeout=parse_duration(args.timeout, key="--timeout"),
        verify=config.load.verify and not args.insecure,
        ca_bundle=args.cacert or config.load.ca_bundle,
        max_duration=config.load.max_duration,
        max_requests=config.load.max_requests,
        allowed_hosts=(*config.load.allowed_hosts, *args.allow_host),
    )
