"""``perf_replay`` in a user's perf test, and ``perfsuite replay`` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfsuite.replay import CaptureWriter, RecordedResponse
from perfsuite.report.html import build_report
from perfsuite.store.history import History, history_url

from .conftest import Server

pytestmark = pytest.mark.usefixtures("target_env")

TESTS = """
import os
import pytest
from perfsuite import ConfigError
from perfsuite.replay.normalise import Rules


@pytest.mark.perf
@pytest.mark.slo(p99="2s", error_rate="0%")
def test_replayed(perf_replay):
    result = perf_replay("traffic.jsonl", speed=4, target=os.environ["TARGET"])
    assert result.measured().requests == 40
    assert sorted(result.endpoints) == ["get_body_id", "get_ok"]


@pytest.mark.perf
@pytest.mark.slo(diff_rate="10%", endpoint="get_body_id")
def test_answers_differ(perf_replay):
    # The recording says "recorded" where the server answers the path's last part.
    perf_replay("traffic.jsonl", target=os.environ["TARGET"], compare="recorded")


@pytest.mark.perf
def test_writes_need_their_target_named(perf_replay):
    target = os.environ["TARGET"]
    with pytest.raises(ConfigError, match="is not named in allow_writes_to"):
        perf_replay("traffic.jsonl", rules=Rules(allow_writes=True), target=target)
    result = perf_replay(
        "traffic.jsonl", rules=Rules(allow_writes=True), target=target, allow_writes_to=target
    )
    assert result.measured().requests == 50  # the POSTs too
"""


def _capture(path: Path) -> None:
    writer = CaptureWriter(path)
    for i in range(50):
        method, target = ("POST", "/ok") if i % 5 == 4 else ("GET", ["/ok", f"/body/{i}"][i % 2])
        writer.write(
            time=1000 + i * 0.02,
            method=method,
            target=target,
            headers=(),
            body=b"{}" if method == "POST" else b"",
            response=RecordedResponse(status=200, body=b"ok" if target == "/ok" else b"recorded"),
        )
    writer.close()


def test_perf_replay_is_a_load_like_any_other(pytester: pytest.Pytester) -> None:
    _capture(pytester.path / "traffic.jsonl")
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess(
        "-m", "perf", "--perf-profile=smoke", "--perf-markdown=summary.md"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "replay * get_ok * 20 * 20 * 0 *",
            "*diff_rate of the answers of get_body_id compared: 100.000% (95 % CI 83.* to "
            "100.000%) exceeds SLO at most 10.000%*",
            # The failed test's report section, then the session's table.
            "*perfsuite: replayed answers compared*",
            "answers compared with recorded:",
            "  get_body_id: 20 of 20 differ (100.0%)",
            "    body: 20 (e.g. /body/1: b'recorded' -> b'1')",
            "  get_ok: 0 of 20 differ (0.0%)",
            "perfsuite: replayed answers compared*",
            "*test_answers_differ*get_body_id*20*20*100.00%*body (20)*",
        ]
    )
    summary = (pytester.path / "summary.md").read_text()
    assert "| `test_answers_differ` | get_body_id | 20 | 20 | 100.00% | body (20) |" in summary
    record = json.loads(sorted((pytester.path / "reports" / "runs").glob("*.json"))[-1].read_text())
    (test,) = [t for t in record["tests"] if t["id"].endswith("test_answers_differ")]
    (diffs,) = test["diffs"]
    assert diffs["get_body_id"]["fields"] == {"body": 20}
    assert diffs["get_ok"]["differing"] == 0

    # The HTML report's latest run shows them, with the examples.
    url = history_url(str(pytester.path / "reports" / "history.sqlite"), pytester.path)
    with History(url) as history:
        build_report(history, pytester.path / "index.html")
    page = (pytester.path / "index.html").read_text()
    assert "<h3>Replayed answers compared</h3>" in page
    assert '<tr class="regressed"><td>get_body_id</td><td>20</td><td>20</td>' in page
    assert "<b>body</b> (20) /body/1: b&#x27;recorded&#x27; &rarr; b&#x27;1&#x27;" in page


def test_the_replay_command(server: Server, tmp_path: Path) -> None:
    _capture(tmp_path / "traffic.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "perfsuite.cli", "replay", str(tmp_path / "traffic.jsonl"),
         server.url, "--speed", "2", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "replay of traffic.jsonl (jsonl) at speed 2: 40 requests" in done.stdout
    assert "not replayed: 10 a write (POST): allow_writes is off" in done.stdout
    missing = str(tmp_path / "missing.har")
    bad = subprocess.run(
        [sys.executable, "-m", "perfsuite.cli", "replay", missing, server.url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "CaptureError:" in bad.stderr
    assert "missing.har: no such capture file" in bad.stderr
