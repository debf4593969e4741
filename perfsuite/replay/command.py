"""``perfsuite replay FILE URL``: its arguments, and what it does with them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from perfsuite.cliargs import add_engine_arguments
from perfsuite.config import PerfConfig, parse_duration
from perfsuite.errors import ConfigError
from perfsuite.replay import COMBINED, read_capture
from perfsuite.replay.normalise import Learn, Rules

__all__ = ["add_replay_command", "replay_command"]

_INTERRUPTED = 130  # as the other commands: 128 + SIGINT


def _learn(text: str) -> Learn:
    parts = text.split()
    if len(parts) != 3:
        raise ConfigError(f"--learn: expected 'METHOD PATH-REGEX FIELD', got {text!r}")
    return Learn(method=parts[0], path=parts[1], field=parts[2])


def replay_command(args: argparse.Namespace, config: PerfConfig, out: Callable[[str], None]) -> int:
    """``perfsuite replay FILE URL``: replay, print what was replayed and the table."""
    # The engine is imported when a replay runs, not for every command's start.
    from perfsuite.cliargs import engine_options, headers
    from perfsuite.load.progress import LiveLine
    from perfsuite.replay.run import replay
    from perfsuite.replay.schedule import Pace

    ids = {}
    for pair in args.id:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise ConfigError(f"--id: expected RECORDED=CURRENT, got {pair!r}")
        ids[old] = new
    rules = Rules(
        methods=frozenset(m.upper() for m in args.method) if args.method else None,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        set_headers=headers(args.header),
        allow_writes=args.allow_writes,
        ids=ids,
        learn=tuple(_learn(text) for text in args.learn),
    )
    pace = Pace(
        speed=args.speed,
        max_gap=None if args.max_gap is None else parse_duration(args.max_gap, key="--max-gap"),
        rate=args.rate,
    )
    capture = read_capture(args.file, args.format, log_format=args.log_format or COMBINED)
    options = engine_options(args, config)
    live = LiveLine(sys.stderr, enabled=not args.quiet)
    try:
        done = replay(
            args.url, capture, rules=rules, pace=pace, options=options, workers=args.workers,
            progress=live, compare=args.compare,
        )  # fmt: skip
    finally:
        live.close()
    out(done.describe())
    if done.result.interrupted:
        return _INTERRUPTED
    return 1 if done.result.saturated else 0


def add_replay_command(sub: Any) -> None:
    """The ``replay`` subcommand's arguments."""
    rep = sub.add_parser("replay", help="replay a capture against URL, at its recorded pace")
    rep.add_argument("file", help="HAR, access log (.log, .gz), GoReplay .gor, perfsuite .jsonl")
    rep.add_argument("url", help="the target: scheme, host and port")
    rep.add_argument("--format", default="auto", help="auto, har, access-log, gor, jsonl")
    rep.add_argument("--log-format", default=None, help="an nginx log_format (default combined)")
    rep.add_argument("--speed", type=float, default=1.0, help="2: twice as fast (default 1)")
    rep.add_argument("--max-gap", default=None, help="no gap longer than this (e.g. 1s)")
    rep.add_argument("--rate", type=float, default=None, help="evenly spaced, req/s, in order")
    rep.add_argument("--method", action="append", default=[], help="only these (repeatable)")
    rep.add_argument("--include", action="append", default=[], help="target regex: only these")
    rep.add_argument("--exclude", action="append", default=[], help="target regex: never these")
    rep.add_argument("--header", action="append", default=[], help="'Name: value' to set")
    rep.add_argument("--id", action="append", default=[], help="RECORDED=CURRENT id mapping")
    rep.add_argument(
        "--learn", action="append", default=[], help="'POST ^/orders$ id': ids from answers"
    )
    rep.add_argument(
        "--allow-writes", action="store_true", help="replay POST, PUT, DELETE... (default: no)"
    )
    rep.add_argument(
        "--compare",
        default=None,
        metavar="URL|recorded",
        help="compare each answer with this reference's (asked twice), or the recording's",
    )
    add_engine_arguments(rep)
