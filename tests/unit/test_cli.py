"""The ``perfsuite`` console script, run as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import pytest

from perfsuite.store.history import History, history_url

from .conftest import REPO


def _perfsuite() -> str:
    path = shutil.which("perfsuite")
    assert path, "the console script is installed by pip install -e ."
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock", "TMPDIR": str(tmp_path)}


def test_version() -> None:
    result = subprocess.run([_perfsuite(), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "perfsuite 0.1.0"


def test_info_reads_the_project_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [_perfsuite(), "--rootdir", str(REPO), "--profile", "smoke", "info"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(tmp_path),
    )
    assert "profile:  smoke (durations x0.01, rates x0.1)" in result.stdout
    assert "mysql:    process (auto: no Docker engine" in result.stdout
    assert "service:  command" in result.stdout


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.perfsuite]\nmysql = "oracle"\n')
    result = subprocess.run(
        [_perfsuite(), "--rootdir", str(tmp_path), "info"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("perfsuite: ConfigError: mysql: expected auto, process")
    assert "Traceback" not in result.stderr


def test_mysql_serves_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [_perfsuite(), "--rootdir", str(REPO), "mysql", "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        first, admin, where = (proc.stdout.readline() for _ in range(3))
        # The passwords are masked on the terminal, and in a file only this user reads.
        assert first.startswith("mysql (process): mysql://perfsuite:***@127.0.0.1:"), first
        assert admin.startswith("admin: mysql://perfsuite_admin:***@127.0.0.1:"), admin
        urls = Path(where.split(": ", 1)[1].split(" (mode")[0])
        assert urls.stat().st_mode & 0o777 == 0o600
        app_url = urlsplit(urls.read_text().splitlines()[0])
        assert app_url.password
        assert app_url.password not in first + admin + where
        conn = pymysql.connect(
            host="127.0.0.1", port=app_url.port, user="perfsuite", password=app_url.password
        )
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders.users")  # the schema was loaded
            assert cur.fetchone() == (0,)
        conn.close()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stopped and removed" in rest
    assert list(tmp_path.glob("perfsuite-*")) == []
    assert not urls.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["launch"], "invalid choice: 'launch'"),
        (["report", "--limit", "0"], "expected a positive integer, got '0'"),
        (["report", "--p-value", "2"], "expected a p-value in (0, 1), got '2'"),
        (["history"], "the following arguments are required: history_command"),
        (["history", "import"], "the following arguments are required: paths"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    result = subprocess.run([_perfsuite(), *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: perfsuite" in result.stderr
    assert message in result.stderr


def test_report_and_import_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.perfsuite]\n")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_perfsuite(), *argv], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    empty = run("report")
    assert empty.returncode == 2
    assert empty.stderr.startswith("perfsuite: StoreError: history sqlite:///")
    assert "holds no runs yet: nothing to report" in empty.stderr
    assert not (tmp_path / "reports" / "index.html").exists()
    (tmp_path / "notes.json").write_text("[1, 2]")
    foreign = run("history", "import", "notes.json")
    assert foreign.returncode == 2
    assert "neither a perfsuite run record nor a pytest-benchmark file" in foreign.stderr
    off = run("report", "--history", "none")
    assert "'none' keeps no history" in off.stderr


def test_report_of_identical_values_prints_no_warning(tmp_path: Path) -> None:
    # Ten runs whose numbers never moved (a capped rate, no errors): a normal
    # history, not a numerical accident to warn about.
    (tmp_path / "pyproject.toml").write_text("[tool.perfsuite]\n")
    with History(history_url(str(tmp_path / "reports" / "history.sqlite"), tmp_path)) as h:
        for run in range(10):
            latency = 2.0 if run < 6 else 2.5
            points = [
                ("test_x.py::test_flat", "query", metric, value)
                for metric, value in (
                    ("p50", latency),
                    ("p95", latency * 2),
                    ("p99", 9.0),
                    ("mean", latency),
                    ("rps", 100.0),
                    ("error_rate", 0.0),
                )
            ]
            h.append(
                uid=f"run:{run}",
                source="perfsuite",
                created=f"2026-01-01T00:00:{run:02d}Z",
                commit=f"{run:040x}",
                profile="ci",
                points=points,
            )
    result = subprocess.run(
        [_perfsuite(), "report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "always"},
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert "(10 runs, 5 charts, 2 change points)" in result.stdout  # p50 and mean moved at run 6
