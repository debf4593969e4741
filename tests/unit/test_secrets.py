"""Passwords out of sight: masked in what perfsuite prints and writes, absent from argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfsuite.secrets import redact, register

from .conftest import ORDER_PROJECT

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mysql://app:pw@h:3306/db", "mysql://app:***@h:3306/db"),
        ("mysql+pymysql://:pw@h/db", "mysql+pymysql://:***@h/db"),  # no user
        ("postgresql://u@h/db?password=pw&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("x://h/db?user=u;pwd=pw", "x://h/db?user=u;pwd=***"),
        ("no secret here: mysql://u@h/db", "no secret here: mysql://u@h/db"),
    ],
)  # fmt: skip
def test_url_shapes_are_masked(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_registered_passwords_are_masked_anywhere() -> None:
    register("correct-horse-battery")
    register("abc")  # too short to mask as a plain string: it would mask every "abc"
    text = "Access denied (password correct-horse-battery) for abc"
    assert redact(text) == "Access denied (password ***) for abc"


# A service that prints its database URL, password and all, to its log; a test that
# fails (so the log's last lines are shown) and one that looks at every process's argv.
TESTS = """
import os, pathlib
import psutil
import pytest
from perfsuite import Request, Scenario

HEALTH = Scenario(Request(name="health", build=lambda ctx: ctx.get("/health")))

@pytest.mark.perf
def test_load(perf_run, perf_phases, perf_mysql):
    pathlib.Path(os.environ["SECRETS"]).write_text(
        perf_mysql.password + "\\n" + perf_mysql.admin_password + "\\n")
    perf_run(HEALTH, perf_phases.constant(rate=50, duration="1s"))
    for proc in psutil.process_iter(["cmdline"]):
        argv = " ".join(proc.info["cmdline"] or [])
        assert perf_mysql.password not in argv, argv
        assert perf_mysql.admin_password not in argv, argv

@pytest.mark.perf
def test_fails(perf_run, perf_phases):
    perf_run(HEALTH, perf_phases.constant(rate=50, duration="1s"))
    assert False, "fails, to show the service's log"
"""


def test_no_password_in_any_argv_output_or_file_of_a_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = ORDER_PROJECT.replace(
        'command = "{python} -m examples.order_service --port {port}"',
        'command = ["sh", "-c", "echo connecting to $PERFSUITE_MYSQL_URL; '
        'exec {python} -m examples.order_service --port {port}"]',
    )
    pytester.makepyprojecttoml(project)
    pytester.makepyfile(test_inner=TESTS)
    secrets = tmp_path / "secrets"
    monkeypatch.setenv("SECRETS", str(secrets))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    result = pytester.runpytest_subprocess(
        "-m", "perf", "--perf-profile=smoke", "-rA", "--junitxml=junit.xml",
        "--perf-markdown=summary.md", "--perf-save-baseline",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "connecting to mysql://perfsuite:***@127.0.0.1:" in output  # the log, masked
    passwords = secrets.read_text().split()
    assert len(passwords) == 2
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files)  # the history is among them
    for password in passwords:
        assert password not in output
        for path in files:
            assert password.encode() not in path.read_bytes(), path
