"""The ``perfsuite`` command: outside pytest, for the same configuration.

``perfsuite info`` prints what a perf run here would use; ``perfsuite mysql``
starts the throwaway MySQL of the config (schema loaded) and keeps it until
Ctrl-C, for poking at the service by hand. Load commands come with the engine.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from perfsuite import __version__
from perfsuite.config import PerfConfig, load_config, read_pyproject
from perfsuite.errors import PerfsuiteError
from perfsuite.provision import choose_provider, open_mysql, probe_docker

__all__ = ["main"]


def _config(args: argparse.Namespace) -> PerfConfig:
    root = Path(args.rootdir).resolve()
    return load_config(root, read_pyproject(root), profile=args.profile, mysql=args.mysql)


def _info(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    config = _config(args)
    choice = choose_provider(config.mysql, probe_docker)
    service = config.service.kind if config.service else "none configured"
    out(f"perfsuite {__version__}")
    out(f"rootdir:  {config.rootdir}")
    out(
        f"profile:  {config.profile.name} (durations x{config.profile.duration_scale:g}, "
        f"rates x{config.profile.rate_scale:g})"
    )
    out(f"mysql:    {choice.provider} ({choice.reason})")
    out(f"service:  {service}")
    return 0


def _mysql(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    config = _config(args)
    choice = choose_provider(config.mysql, probe_docker)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open_mysql(config.mysql, choice) as server:
            out(f"mysql ({server.provider}): {server.url}")
            out(f"admin: {server.admin_user}@{server.host}:{server.port}")
            out("serving until Ctrl-C")
            sys.stdout.flush()
            stop.wait(timeout=args.timeout)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    out("stopped and removed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (shared by ``main`` and the tests)."""
    parser = argparse.ArgumentParser(prog="perfsuite", description=__doc__)
    parser.add_argument("--version", action="version", version=f"perfsuite {__version__}")
    parser.add_argument("--rootdir", default=".", help="folder of pyproject.toml (default .)")
    parser.add_argument("--profile", default=None, help="profile name (default ci)")
    parser.add_argument("--mysql", default=None, help="auto, process, container or a URL")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print what a perf run here would use")
    mysql = sub.add_parser("mysql", help="start the configured MySQL until Ctrl-C")
    mysql.add_argument(
        "--timeout", type=float, default=24 * 3600.0, help="stop after this many seconds"
    )
    return parser


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    """Entry point of the ``perfsuite`` console script."""
    args = build_parser().parse_args(argv)
    commands = {"info": _info, "mysql": _mysql}
    try:
        return commands[args.command](args, out)
    except PerfsuiteError as exc:
        print(f"perfsuite: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
