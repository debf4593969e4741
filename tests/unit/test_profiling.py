"""CPU profiles and growth checks of a real service (the example order service, its
``hot`` and ``taskleak`` faults), through the plugin as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from examples.order_service.project import PROFILED, run_session, write_project
from perfsuite.errors import ProfileError
from perfsuite.probes.profile import CommandProfiler, PySpyProfiler
from perfsuite.report.html import build_report
from perfsuite.store.history import History, history_url

TESTS = """
import pytest
from perfsuite import Request, Scenario

def order(ctx):
    return ctx.get(f"/orders/{ctx.pick('order')[0]}")

def pay(ctx):
    order_id, _, total = ctx.pick("order")
    body = {"order_id": order_id, "payment_id": f"pay-{order_id}", "amount_cents": total}
    return ctx.post("/payments/callback", json=body)

def load(perf_run, perf_phases, perf_seed, request, rate):
    scenario = Scenario(request, data={"order": list(perf_seed.orders)}, seed=1)
    perf_run(scenario, [perf_phases.warmup(rate=50, duration="1s"),
                        perf_phases.constant(rate=rate, duration="10s")])

# CPU of the service per answered request: the order query's own is ~1.4 ms here;
# the "hot" fault adds ~3.5 ms of hashing in checksum_order.
@pytest.mark.perf
@pytest.mark.slo(cpu_per_request="3ms")
def test_query(perf_run, perf_phases, perf_seed):
    load(perf_run, perf_phases, perf_seed, Request(name="order_query", build=order), 100)

@pytest.mark.perf
def test_pay(perf_run, perf_phases, perf_seed):
    load(perf_run, perf_phases, perf_seed, Request(name="payment_callback", build=pay), 50)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(
        tmp_path / "project", TESTS, toml=PROFILED, users=500, skus=200, orders=3_000
    )


def _run(
    project: Path, *args: str, fault: str = "", python: str = sys.executable, path: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    env = {"PATH": path} if path else None
    return run_session(project, "-m", "perf", *args, fault=fault, python=python, env=env)


def test_a_hot_function_is_named_by_the_flame_graph_and_the_differential(
    project: Path,
) -> None:
    baselines = project / "baselines"
    plain, _ = _run(
        project, "-k", "query", "--perf-save-baseline", f"--perf-baseline-dir={baselines}"
    )
    assert plain.returncode == 0, plain.stdout[-3000:]
    # A passing test keeps no profile by default, but a saved baseline keeps its own.
    assert not (project / "reports" / "profiles").exists()
    (saved,) = (baselines / "profiles").glob("*.collapsed")
    assert "checksum_order" not in saved.read_text()

    hot, tests = _run(project, "-k", "query", f"--perf-baseline-dir={baselines}", fault="hot")
    out = hot.stdout
    assert hot.returncode == 1, out[-3000:]
    assert "cpu_per_request" in out
    section = out[out.index("perfsuite: profile (hottest functions)") :]
    rows = section.splitlines()
    first = next(line for line in rows if "%" in line and "self" not in line)
    assert "checksum_order (examples/order_service/app.py)" in first
    assert "hotter than in the baseline's profile: checksum_order" in section

    (entry,) = tests
    (profile,) = entry["profiles"]
    assert profile["profiler"] == "py-spy"
    assert profile["hottest"][0]["name"].startswith("checksum_order")
    assert profile["hotter"][0]["name"].startswith("checksum_order")
    assert (project / "reports" / profile["file"]).is_file()

    with History(history_url(str(project / "reports" / "history.sqlite"), project)) as h:
        build_report(h, project / "index.html")
    page = (project / "index.html").read_text()
    graphs = _flame_graphs(page)
    assert set(graphs) == {"flame", "flame-diff"}
    assert any(name.startswith("checksum_order") for name, _ in graphs["flame"])
    # The differential: the reddest frame is the hot function.
    reddest = max(graphs["flame-diff"], key=lambda frame: _redness(frame[1]))
    assert reddest[0].startswith("checksum_order"), reddest
    assert '<table class="hottest">' in page


def _flame_graphs(page: str) -> dict[str, list[tuple[str, str]]]:
    """Each flame graph of the page (by kind): its frames' (name, fill). A name may
    be drawn more than once (the same function in other stacks)."""
    graphs: dict[str, list[tuple[str, str]]] = {}
    start = 0
    while (at := page.find('<svg class="flame"', start)) >= 0:
        end = page.index("</svg>", at) + len("</svg>")
        svg = ET.fromstring(page[at:end])
        frames = graphs.setdefault(svg.get("data-kind", ""), [])
        for g in svg.iter("g"):
            title, rect = g.find("title"), g.find("rect")
            if title is not None and rect is not None:
                frames.append(((title.text or "").split(":")[0], rect.get("fill", "")))
        start = end
    return graphs


def _redness(fill: str) -> int:
    r, g, _ = (int(x) for x in fill.removeprefix("rgb(").rstrip(")").split(","))
    return r - g if r == 255 else -255


def test_a_task_leak_fails_the_growth_check_and_a_healthy_service_passes(
    project: Path, tmp_path: Path
) -> None:
    leak, tests = _run(project, "-k", "pay", fault="taskleak")
    out = leak.stdout
    assert leak.returncode == 1, out[-3000:]
    assert "the service kept what the load gave it:" in out
    line = next(x for x in out.splitlines() if "order_service_asyncio_tasks" in x and "grew" in x)
    assert "/s during steady (Mann-Kendall p = " in line
    assert "and stayed at " in line
    (entry,) = tests
    counts = {c["name"].split("{")[0]: c for c in entry["counts"]}
    assert counts["order_service_asyncio_tasks"]["verdict"] == "leak"
    # ~50 callbacks a second, one task each.
    assert counts["order_service_asyncio_tasks"]["slope"] > 20
    assert counts["threads"]["verdict"] == "ok"
    # Failed: its profile is kept.
    assert entry["profiles"]

    # Without the fault, and with no py-spy to be found: the growth check passes, and
    # the missing profiler is said once, without failing the test.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    healthy, tests = _run(
        project, "-k", "pay", python=str(bindir / "python"), path=f"{bindir}:/usr/bin:/bin"
    )
    assert healthy.returncode == 0, healthy.stdout[-3000:] + healthy.stderr[-2000:]
    (entry,) = tests
    counts = {c["name"].split("{")[0]: c for c in entry["counts"]}
    assert counts["order_service_asyncio_tasks"]["verdict"] == "ok", entry["counts"]
    assert counts["tcp_close_wait"]["verdict"] == "ok", entry["counts"]
    assert "no flame graphs: py-spy is not installed: pip install 'perfsuite[profile]'" in (
        healthy.stdout
    )


def test_py_spy_denied_says_what_to_do(tmp_path: Path) -> None:
    # A real denial: py-spy in a user namespace of its own may not ptrace a process
    # outside it, as a user who is not root may not read another's.
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        profiler = PySpyProfiler(target.pid)
        wrapper = tmp_path / "py-spy"
        wrapper.write_text(f'#!/bin/sh\nexec unshare -U -r {profiler.exe} "$@"\n')
        wrapper.chmod(0o755)
        profiler.exe = str(wrapper)
        profiler.begin(1.0)
        with pytest.raises(ProfileError) as excinfo:
            profiler.end()
        text = str(excinfo.value)
        # With --subprocesses, py-spy reports a denial as finding no Python process.
        assert (
            f"py-spy could read no Python process in the service's process {target.pid} "
            "or its children: if it is a Python service, ptrace is denied: run as root" in text
        )
        assert "kernel.yama.ptrace_scope" in text
    finally:
        target.send_signal(signal.SIGKILL)
        target.wait()


BUSY = """
import hashlib, time
def spin_in_named_function(until):
    while time.monotonic() < until:
        hashlib.sha256(b"x" * 1000).digest()
spin_in_named_function(time.monotonic() + 30)
"""


def test_a_command_profiler_writes_collapsed_stacks() -> None:
    # Any program that writes collapsed stacks to {output} (async-profiler's asprof for a
    # JVM); here py-spy itself, run as a command.
    exe = PySpyProfiler(os.getpid()).exe
    target = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        template = f"{exe} record --pid {{pid}} --duration {{seconds}} --format raw -o {{output}}"
        profiler = CommandProfiler(template, target.pid)
        assert profiler.name == exe
        profiler.begin(1.0)
        stacks, unit, _ = profiler.end()
        assert unit == "samples"
        assert any(frame.startswith("spin_in_named_function") for s in stacks for frame in s)
        # A command that writes nothing and fails is named with what it said.
        broken = CommandProfiler(f"{exe} record --pid 0 -o {{output}}", target.pid)
        broken.begin(1.0)
        with pytest.raises(ProfileError, match=r"py-spy exited with \d+: "):
            broken.end()
    finally:
        target.send_signal(signal.SIGKILL)
        target.wait()
