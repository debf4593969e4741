"""The ``perfsuite`` command: outside pytest, for the same configuration.

``perfsuite run URL`` is an ad-hoc load run, like wrk or vegeta; ``perfsuite
replay FILE URL`` replays a capture (HAR, access log, GoReplay, JSON lines);
``perfsuite info`` prints what a perf run here would use; ``perfsuite mysql``
starts the throwaway MySQL of the config (schema loaded) and keeps it until
Ctrl-C, for poking at the service by hand. ``perfsuite report`` writes the
offline HTML trend report from the history; ``perfsuite history import``
adds run records and pytest-benchmark's saved runs to it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from perfsuite import __version__
from perfsuite.cliargs import add_engine_arguments, engine_options
from perfsuite.cliargs import headers as cli_headers
from perfsuite.config import PerfConfig, load_config, parse_duration, read_pyproject
from perfsuite.errors import ConfigError, Interrupted, PerfsuiteError
from perfsuite.provision import MySQLServer, choose_provider, open_mysql, probe_docker
from perfsuite.provision.ownership import owned_tempdir, remove_owned
from perfsuite.replay.command import add_replay_command, replay_command
from perfsuite.report.html import build_report
from perfsuite.secrets import redact
from perfsuite.signals import run_signals
from perfsuite.store.history import History, history_target, history_url
from perfsuite.store.ingest import import_paths

__all__ = ["main"]

_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


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
            # The passwords go to a file only this user can read, not to the terminal
            # (scrollback, CI logs) nor to an argument.
            folder = owned_tempdir("perfsuite-cli-")
            try:
                urls = folder / "mysql-url"
                fd = os.open(urls, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(server.url + "\n")
                    admin = _admin_url(server)
                    fh.write(admin + "\n")
                out(f"mysql ({server.provider}): {redact(server.url)}")
                out(f"admin: {redact(admin)}")
                out(f"the URLs with their passwords (app, then admin): {urls} (mode 0600)")
                out(f"  export PERFSUITE_MYSQL_URL=$(head -1 {urls})")
                out("serving until Ctrl-C")
                sys.stdout.flush()
                stop.wait(timeout=args.timeout)
            finally:
                remove_owned(folder)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    out("stopped and removed")
    return 0


def _admin_url(server: MySQLServer) -> str:
    user, password = quote(server.admin_user, safe=""), quote(server.admin_password, safe="")
    return f"mysql://{user}:{password}@{server.host}:{server.port}/{server.database}"


def _run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    import httpx

    from perfsuite.load import ClosedPhase, OpenPhase, Request, Scenario
    from perfsuite.load.agents import run_agents
    from perfsuite.load.parallel import run_parallel
    from perfsuite.load.progress import LiveLine

    config = _config(args)
    duration = parse_duration(args.duration, key="--duration")
    if (args.rate is None) == (args.concurrency is None):
        raise ConfigError("give exactly one of --rate (open model) or --concurrency (closed)")
    headers = cli_headers(args.header)
    try:
        request = httpx.Request(args.method, args.url, headers=headers, content=args.data)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ConfigError(f"bad URL {args.url!r}: {exc}") from exc
    phase: OpenPhase | ClosedPhase
    if args.rate is not None:
        phase = OpenPhase(name="run", duration=duration, start_rate=args.rate, end_rate=args.rate)
    else:
        phase = ClosedPhase(name="run", duration=duration, users=args.concurrency)
    options = engine_options(args, config)
    live = LiveLine(sys.stderr, enabled=not args.quiet)
    scenario = Scenario(Request(name="request", build=request))
    try:
        if args.tx:
            if args.workers != 1:
                raise ConfigError(
                    "give --workers (forked processes) or --tx (execnet agents), not both"
                )
            result = run_agents(
                args.url,
                scenario,
                [phase],
                args.tx,
                options=options,
                progress=live,
                max_clock_uncertainty=config.load.max_clock_uncertainty,
            )
        else:
            result = run_parallel(
                args.url, scenario, [phase], options=options, workers=args.workers, progress=live
            )
    except Interrupted as exc:  # Ctrl-C: what was measured until then, as k6 does
        if exc.result is None:
            raise
        result = exc.result
    finally:
        live.close()
    out(result.describe())
    if args.json:
        summary = result.measured()
        data = {
            "url": args.url,
            "model": "open" if args.rate is not None else "closed",
            "duration_s": duration,
            "requests": summary.requests,
            "answered": summary.answered,
            "ok": summary.ok,
            "errors": summary.errors,
            "errors_by_kind": dict(summary.errors_by_kind),
            "ok_rps": summary.ok_rps,
            "answered_rps": summary.answered_rps,
            "late": result.late,
            "dropped": result.dropped,
            "saturated": result.saturated,
            "interrupted": result.interrupted,
            "abandoned": result.abandoned,
            "latency_ms": summary.latency.as_dict(),
            "latency_ok_ms": summary.latency_ok.as_dict(),
            "service_time_ms": summary.service_time.as_dict(),
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if result.interrupted:
        return _INTERRUPTED
    return 1 if result.saturated else 0


def _history(args: argparse.Namespace) -> History:
    config = _config(args)
    target = history_target(args.history, config.history, config.rootdir / "reports")
    if target is None:
        raise ConfigError("history: 'none' keeps no history, so there is nothing to read")
    return History(history_url(target, config.rootdir))


def _report(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    with _history(args) as history:
        info = build_report(
            history,
            Path(args.out),
            limit=args.limit,
            profile=args.report_profile,
            window=args.window,
            p_value=args.p_value,
        )
    out(
        f"perfsuite: wrote {info.path} ({info.runs} runs, {info.charts} charts, "
        f"{info.shifts} change points)"
    )
    return 0


def _import(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    with _history(args) as history:
        added, skipped = import_paths(history, [Path(p) for p in args.paths])
        out(
            f"perfsuite: imported {added} runs into {redact(history.url)} ({skipped} already there)"
        )
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _p_value(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a p-value in (0, 1), got {text!r}")
    return value


def _add_history_commands(sub: Any) -> None:
    help_history = (
        "a SQLite path or SQLAlchemy URL (default: $PERFSUITE_HISTORY, else [tool.perfsuite] "
        "history, else reports/history.sqlite)"
    )
    report = sub.add_parser("report", help="write the offline HTML trend report")
    report.add_argument("--history", default=None, help=help_history)
    report.add_argument("--out", default="reports/index.html", help="(default %(default)s)")
    report.add_argument("--limit", type=_positive, default=200, help="newest runs to show")
    report.add_argument(
        "--report-profile", default=None, help="runs of this profile (default: the newest run's)"
    )
    report.add_argument("--window", type=_positive, default=10, help="runs in the baseline band")
    report.add_argument(
        "--p-value", type=_p_value, default=0.001, help="change points: Welch t-test threshold"
    )
    history = sub.add_parser("history", help="manage the history database")
    hsub = history.add_subparsers(dest="history_command", required=True)
    imp = hsub.add_parser(
        "import", help="add run records (reports/runs) and pytest-benchmark files (.benchmarks)"
    )
    imp.add_argument("paths", nargs="+", help="files or folders")
    imp.add_argument("--history", default=None, help=help_history)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (shared by ``main`` and the tests)."""
    parser = argparse.ArgumentParser(prog="perfsuite", description=__doc__)
    parser.add_argument("--version", action="version", version=f"perfsuite {__version__}")
    parser.add_argument("--rootdir", default=".", help="folder of pyproject.toml (default .)")
    parser.add_argument("--profile", default=None, help="profile name (default ci)")
    parser.add_argument("--mysql", default=None, help="auto, process, container or a URL")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print what a perf run here would use")
    run = sub.add_parser("run", help="an ad-hoc load run against URL (like wrk or vegeta)")
    run.add_argument("url")
    model = run.add_mutually_exclusive_group()
    model.add_argument("--rate", type=float, help="open model: requests per second")
    model.add_argument("--concurrency", type=int, help="closed model: virtual users")
    run.add_argument("--duration", default="10s", help="how long (default 10s)")
    run.add_argument("--method", default="GET")
    run.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    run.add_argument("--data", default=None, help="request body")
    add_engine_arguments(run)
    run.add_argument("--json", default=None, metavar="FILE", help="write the summary as JSON")
    mysql = sub.add_parser("mysql", help="start the configured MySQL until Ctrl-C")
    mysql.add_argument(
        "--timeout", type=float, default=24 * 3600.0, help="stop after this many seconds"
    )
    _add_history_commands(sub)
    add_replay_command(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    """Entry point of the ``perfsuite`` console script."""
    args = build_parser().parse_args(argv)
    commands = {
        "info": _info,
        "mysql": _mysql,
        "run": _run,
        "replay": lambda args, out: replay_command(args, _config(args), out),
        "report": _report,
        "history": _import,
    }
    with run_signals():
        try:
            return commands[args.command](args, out)
        except PerfsuiteError as exc:
            print(f"perfsuite: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:  # everything started is stopped by now
            print(f"perfsuite: {str(exc) or 'interrupted by SIGINT'}", file=sys.stderr)
            return _INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
