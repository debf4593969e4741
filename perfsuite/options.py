"""perfsuite's command-line options and ini keys (a plugin loaded with ``perfsuite.plugin``).

Each value is parsed by a small ``type=`` function that raises
``ArgumentTypeError``, so that pytest names the option and the value.
"""

from __future__ import annotations

import argparse

import pytest

from perfsuite.config import parse_mysql_choice
from perfsuite.errors import ConfigError
from perfsuite.gate import FAIL_ON

__all__ = ["pytest_addoption"]


def _mysql_arg(value: str) -> str:
    try:
        parse_mysql_choice(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _fail_on_arg(value: str) -> frozenset[str]:
    chosen = frozenset(v.strip() for v in value.split(",") if v.strip())
    if value.strip() == "none":
        return frozenset({"none"})
    if not chosen or not chosen <= set(FAIL_ON):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {', '.join(FAIL_ON)} (or none), got {value!r}"
        )
    return chosen


def _env_arg(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name.strip(), rest


def _pairs_arg(value: str) -> int:
    try:
        pairs = int(value)
    except ValueError:
        pairs = 0
    if pairs < 3:
        raise argparse.ArgumentTypeError(f"expected a whole number of pairs >= 3, got {value!r}")
    return pairs


def _port_arg(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port (0: any free one), got {value!r}")
    return port


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfsuite", "performance tests (perfsuite)")
    group.addoption(
        "--perf-profile",
        dest="perf_profile",
        metavar="NAME",
        help="scale of the load phases: smoke, ci (default) or full, or a profile of "
        "[tool.perfsuite.profiles]",
    )
    group.addoption(
        "--perf-mysql",
        dest="perf_mysql",
        metavar="PROVIDER",
        type=_mysql_arg,
        help="MySQL for the tests: auto (default: a container if Docker answers, else a "
        "local process), process, container, or mysql://user:pass@host:port/db",
    )
    group.addoption(
        "--perf-mysql-image",
        dest="perf_mysql_image",
        metavar="IMAGE",
        help="image of the container provider (default mysql:8.4)",
    )
    group.addoption(
        "--perf-save-baseline",
        dest="perf_save_baseline",
        action="store_true",
        help="store each perf test's run as its newest baseline run",
    )
    group.addoption(
        "--perf-compare",
        dest="perf_compare",
        action="store_true",
        help="compare each perf test with its stored baseline runs",
    )
    group.addoption(
        "--perf-baseline-dir",
        dest="perf_baseline_dir",
        metavar="DIR",
        help="where baselines are stored (default baselines/, or [tool.perfsuite.baseline] dir)",
    )
    group.addoption(
        "--perf-fail-on",
        dest="perf_fail_on",
        metavar="LIST",
        type=_fail_on_arg,
        help="what fails a perf test: slo,regression (default both), one of them, or none",
    )
    group.addoption(
        "--perf-confirm",
        dest="perf_confirm",
        action="store_true",
        default=True,
        help="rerun a test that regressed once; keep the regression only if the rerun agrees "
        "(the default with --perf-compare)",
    )
    group.addoption(
        "--perf-no-confirm",
        dest="perf_confirm",
        action="store_false",
        help="keep a regression without a rerun (one slow run of a noisy machine fails the test)",
    )
    group.addoption(
        "--perf-no-cost",
        dest="perf_no_cost",
        action="store_true",
        default=False,
        help="no cost per request: servers perfsuite starts run without performance_schema, "
        "and no statement digests are read",
    )
    group.addoption(
        "--perf-ab",
        dest="perf_ab",
        metavar="REF",
        help="A/B: run each perf test in pairs of rounds against the base build REF (a git "
        "ref of this project, checked out into a temporary worktree), and judge the pairs",
    )
    group.addoption(
        "--perf-ab-url",
        dest="perf_ab_url",
        metavar="URL",
        help="A/B against a base service that already runs at URL",
    )
    group.addoption(
        "--perf-ab-pairs",
        dest="perf_ab_pairs",
        metavar="N",
        type=_pairs_arg,
        default=10,
        help="A/B: pairs of rounds per perf test (default 10)",
    )
    group.addoption(
        "--perf-ab-env",
        dest="perf_ab_env",
        metavar="NAME=VALUE",
        type=_env_arg,
        action="append",
        default=[],
        help="A/B: an environment variable set for the base build's service only (repeatable)",
    )
    group.addoption(
        "--perf-flamegraph",
        dest="perf_flamegraph",
        choices=("failed", "always", "never"),
        default=None,
        help="keep the CPU profile of the service taken during each perf test (a flame "
        "graph in the report): when the test fails (default), always, or never (not taken); "
        "not --perf-profile, which sizes the load",
    )
    group.addoption(
        "--perf-prometheus-port",
        dest="perf_prometheus_port",
        metavar="PORT",
        type=_port_arg,
        help="serve perfsuite's own numbers for Prometheus on 127.0.0.1:PORT while tests "
        "run (0: a free port, printed in the header; xdist worker N: PORT + N)",
    )
    group.addoption(
        "--perf-markdown",
        dest="perf_markdown",
        metavar="FILE",
        help="write a Markdown summary for pull requests (also appended to $GITHUB_STEP_SUMMARY)",
    )
    group.addoption(
        "--perf-reports-dir",
        dest="perf_reports_dir",
        metavar="DIR",
        help="where run records go (default reports/; records in DIR/runs/)",
    )
    group.addoption(
        "--perf-history",
        dest="perf_history",
        metavar="URL_OR_PATH",
        help="the history database: a SQLite path or a SQLAlchemy URL, 'none' to keep no "
        "history (default: $PERFSUITE_HISTORY, else [tool.perfsuite] history, else "
        "reports/history.sqlite)",
    )
    group.addoption(
        "--perf-tx",
        dest="perf_tx",
        metavar="SPEC",
        action="append",
        help="send the load from execnet agents, in pytest-xdist's --tx spelling (2*popen, "
        "ssh=user@host//python=PATH, socket=host:port); may be repeated",
    )
    parser.addini("perf_profile", "default of --perf-profile", default=None)
    parser.addini("perf_tx", "default of --perf-tx (one spec a line)", type="linelist")
    parser.addini("perf_mysql", "default of --perf-mysql", default=None)
