"""Go profiles: a real Go service (tests/unit/gosvc, built with Debian's Go) serves
net/http/pprof; perfsuite's reader must give the stacks ``go tool pprof`` gives, and
the plugin must profile it and see its goroutine leak."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from perfsuite.errors import ProfileError
from perfsuite.probes.pprof import read_pprof

from .conftest import free_port

pytest_plugins = ["pytester"]

SOURCE = Path(__file__).with_name("gosvc") / "main.go"


@pytest.fixture(scope="module")
def go() -> str:
    binary = shutil.which("go")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("go is not installed (.ci/run installs Debian's golang-go)")
        pytest.skip("go is not installed: apt-get install golang-go (the Go profile tests)")
    return binary


@pytest.fixture(scope="module")
def gosvc(go: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go service, built (standard library only: nothing is downloaded)."""
    folder = tmp_path_factory.mktemp("gosvc")
    env = {**os.environ, "GOCACHE": str(folder / "cache"), "GOPATH": str(folder / "gopath"),
           "GO111MODULE": "off", "GOFLAGS": ""}  # fmt: skip
    binary = folder / "gosvc"
    subprocess.run([go, "build", "-o", str(binary), str(SOURCE)], env=env, check=True, timeout=300)
    return binary


@pytest.fixture
def running(gosvc: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([str(gosvc), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/health", timeout=1.0)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _go_traces(go: str, profile: Path) -> dict[tuple[str, ...], float]:
    """``go tool pprof -traces``: each sample's value and frames (leaf first), summed
    per stack, root first; an inlined frame is marked " (inline)" there, not here."""
    out = subprocess.run(
        [go, "tool", "pprof", "-traces", str(profile)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    stacks: dict[tuple[str, ...], float] = {}
    for block in out.split("-----------+-------------------------------------------------------")[
        1:
    ]:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        value, leaf = lines[0].split(None, 1)
        frames = [f.removesuffix(" (inline)") for f in [leaf, *lines[1:]]]
        key = tuple(reversed(frames))
        stacks[key] = stacks.get(key, 0.0) + _value(value)
    return stacks


def _value(text: str) -> float:
    """'10ms', '1.20s', '50': nanoseconds for durations, else the count."""
    for unit, scale in (("ms", 1e6), ("us", 1e3), ("µs", 1e3), ("ns", 1.0), ("s", 1e9)):
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * scale
    return float(text)


def test_profiles_read_as_go_tool_pprof_reads_them(go: str, running: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=running, timeout=30) as client:
        for _ in range(50):
            client.get("/leak")
        busy = subprocess.Popen(
            [sys.executable, "-c",
             "import httpx\nwith httpx.Client() as c:\n"
             f"    for _ in range(400): c.get('{running}/burn/20000')"],
        )  # fmt: skip
        try:
            cpu = client.get("/debug/pprof/profile", params={"seconds": 2}).content
        finally:
            busy.wait(timeout=120)
        goroutines = client.get("/debug/pprof/goroutine").content
    (tmp_path / "cpu.pb.gz").write_bytes(cpu)
    (tmp_path / "goroutine.pb.gz").write_bytes(goroutines)

    profile = read_pprof(cpu, sample_type="cpu")
    assert profile.sample_type == "cpu/nanoseconds"
    assert profile.sample_types == ("samples/count", "cpu/nanoseconds")
    assert profile.stacks == _go_traces(go, tmp_path / "cpu.pb.gz")
    assert any("main.burn" in stack for stack in profile.stacks)

    leak = read_pprof(goroutines)
    assert leak.sample_type == "goroutine/count"
    assert leak.stacks == _go_traces(go, tmp_path / "goroutine.pb.gz")
    waiting = [c for s, c in leak.stacks.items() if "main.startWorker.func1" in s]
    assert waiting == [50.0]


def test_bad_profiles_are_named() -> None:
    with pytest.raises(ProfileError, match="pprof profile: cannot decode"):
        read_pprof(b"\x0a\xff\xff\xff")
    with pytest.raises(ProfileError, match="pprof profile: not gzip data"):
        read_pprof(b"\x1f\x8b\x08garbage")
    with pytest.raises(ProfileError, match="no sample types"):
        read_pprof(b"")


PROJECT = """
[tool.perfsuite]
mysql = "process"
[tool.perfsuite.service]
command = "{binary} {{port}}"
health = "/health"
[tool.perfsuite.pool]
check = false
[tool.perfsuite.profiling]
profiler = "pprof"
growth = true
growth_metrics = ["go_goroutines"]
"""

TESTS = """
import pytest
from perfsuite import Request, Scenario

@pytest.mark.perf
def test_leaks(perf_run, perf_phases):
    both = [Request(name="burn", build=lambda ctx: ctx.get("/burn/3000"), weight=3),
            Request(name="leak", build=lambda ctx: ctx.get("/leak"), weight=1)]
    perf_run(Scenario(*both), [perf_phases.warmup(50, "1s"), perf_phases.constant(200, "10s")])
"""


def test_the_plugin_profiles_a_go_service_and_finds_its_goroutine_leak(
    gosvc: Path, pytester: pytest.Pytester
) -> None:
    pytester.makepyprojecttoml(PROJECT.format(binary=gosvc))
    pytester.makepyfile(test_go=TESTS)
    result = pytester.runpytest_subprocess(
        "-m", "perf", "--perf-profile=full", "--perf-no-cost", "-rA", "-p", "no:cacheprovider"
    )
    out = result.stdout.str()
    result.assert_outcomes(failed=1)
    assert "go_goroutines" in out
    line = next(
        x for x in out.splitlines() if x.strip().startswith("go_goroutines") and "grew" in x
    )
    assert "and stayed at" in line
    # The failure report: the CPU profile's hottest functions, and the goroutines'
    # most common stacks at the end (the seed's "where is the long-lived goroutine").
    section = out[out.index("perfsuite: profile (hottest functions)") :]
    assert "pprof" in section
    assert "crypto/sha256.block" in section
    assert "goroutines at the end, most common stacks (leaf first):" in section
    assert "main.startWorker.func1" in section
    (record,) = (pytester.path / "reports" / "runs").glob("*.json")
    entry: dict[str, Any] = json.loads(record.read_text())["tests"][0]
    (profile,) = entry["profiles"]
    assert profile["unit"] == "nanoseconds"
    assert any("main.burn" in f["name"] for f in profile["hottest"]) or any(
        "sha256" in f["name"] for f in profile["hottest"]
    )
    assert "main.startWorker.func1" in profile["goroutines"][0]["stack"]
