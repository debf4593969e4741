"""Replay from a 1,000,000-request access log: the reader's speed and memory, and the
replay's throughput as a ratio to the engine's synthetic open model at the same rates.

    python benchmarks/replay_throughput.py [--requests 1000000] [--replayed 200000]
                                           [--rates 5000,10000,20000]

1. Writes an nginx ``combined`` log of ``--requests`` GETs (orders by id, a few
   routes), 20,000 a second of recorded time.
2. Reads it through ``read_capture`` and prints lines per second and the
   process's resident memory after 10 %, 50 % and 100 % of it (flat: the reader
   holds a bounded window, not the file).
3. Against a local nginx on CPU 1, the generator on CPU 0 (as
   ``generator_throughput.py``), at each of ``--rates``: the first ``--replayed``
   requests of a log of the same kind replayed at that rate (evenly spaced, their
   own routes and bytes per request), and the synthetic open model at the same
   rate for as many requests; achieved answers per second, p99, late sends,
   dropped ones, generator CPU, saturation.

Needs nginx (Debian: nginx-light).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

# Run as a script, its folder is on the path: the nginx and the pinning are those of
# the generator benchmark.
from generator_throughput import GENERATOR_CPU, start_nginx

ROUTES = ("/orders/{n}", "/orders/{n}?fields=all", "/users/{n}/cart", "/health")

CHILD = r"""
import json, os, resource, sys, time
os.sched_setaffinity(0, {cpu})
from perfsuite.load import EngineOptions, OpenPhase, Request, Scenario
from perfsuite.load.engine import run_load
from perfsuite.replay import read_capture
from perfsuite.replay.schedule import Pace, plan_replay, replay_phase
url, mode, log = sys.argv[1:4]
rate, requests = float(sys.argv[4]), int(sys.argv[5])
options = EngineOptions(max_connections=200, max_requests=requests + 10)
if mode == "replay":
    plan = plan_replay(read_capture(log), pace=Pace(rate=rate))
    scenario, phase = replay_phase(plan, url)
else:
    import httpx
    scenario = Scenario(Request(name="get", build=httpx.Request("GET", url + "/orders/1")))
    phase = OpenPhase(name="run", duration=requests / rate, start_rate=rate, end_rate=rate)
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
result = run_load(url, scenario, [phase], options=options, handle_signals=False)
wall = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
m = result.measured()
print(json.dumps({{"answered": m.answered, "errors": m.errors, "p99": m.latency.p99,
    "late": result.late, "dropped": result.dropped, "saturated": result.saturated, "wall": wall,
    "duration": sum(p.duration for p in result.phases),
    "cpu": (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall}}))
"""


def write_log(path: Path, requests: int, per_second: int = 20_000) -> None:
    start = 1_764_324_000
    with path.open("w") as f:
        for i in range(requests):
            second = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(start + i // per_second))
            target = ROUTES[i % len(ROUTES)].format(n=1 + (i * 7919) % 100_000)
            f.write(
                f'10.0.{i % 250}.{i % 7} - - [{second}] "GET {target} HTTP/1.1" 200 52 '
                f'"-" "bench/1"\n'
            )


def read_all(path: Path) -> tuple[float, list[tuple[int, float]]]:
    """Lines per second, and resident MiB after 10 %, 50 %, 100 % of the requests."""
    from perfsuite.replay import read_capture

    lines = sum(1 for _ in path.open())
    marks = {lines // 10, lines // 2, lines}
    rss: list[tuple[int, float]] = [(0, psutil.Process().memory_info().rss / 2**20)]
    started = time.perf_counter()
    for n, _ in enumerate(read_capture(path), 1):
        if n in marks:
            rss.append((n, psutil.Process().memory_info().rss / 2**20))
    return lines / (time.perf_counter() - started), rss


def child(url: str, mode: str, log: Path, rate: float, requests: int) -> dict[str, float]:
    code = CHILD.format(cpu=f"{{{GENERATOR_CPU}}}")
    out = subprocess.run(
        [sys.executable, "-c", code, url, mode, str(log), str(rate), str(requests)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    ).stdout  # fmt: skip
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--replayed", type=int, default=200_000)
    parser.add_argument("--rates", default="5000,10000,20000")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="perfsuite-replay-bench-") as tmp:
        folder = Path(tmp)
        log = folder / "access.log"
        write_log(log, args.requests)
        speed, rss = read_all(log)
        print(f"reader: {args.requests:,} lines, {speed:,.0f} lines/s")
        print("| requests read | resident MiB |\n| ---: | ---: |")
        for n, mib in rss:
            print(f"| {n:,} | {mib:.1f} |")
        replayed = folder / "replayed.log"
        write_log(replayed, args.replayed)
        started = start_nginx(folder)
        if started is None:
            print("nginx: missing (apt-get install nginx-light); no throughput table")
            return 0
        proc, url = started
        rows = []
        try:
            for rate in rates:
                for mode in ("open", "replay"):
                    rows.append((rate, mode, child(url, mode, replayed, rate, args.replayed)))
        finally:
            proc.terminate()
            proc.wait()
    print(f"\n{args.replayed:,} requests a row, nginx on another core")
    print(
        "| rate | load | answered/s | ratio to the open model | p99 ms | late | dropped "
        "| generator CPU | saturated |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    base = 1.0
    for rate, mode, r in rows:
        rps = r["answered"] / r["duration"]
        if mode == "open":
            base = rps
        print(
            f"| {rate:,.0f} | {'synthetic open model' if mode == 'open' else 'replay of the log'} "
            f"| {rps:,.0f} | {rps / base:.2f} | {r['p99']:.2f} | {r['late']:.0f} "
            f"| {r['dropped']:.0f} | {r['cpu']:.1%} | {bool(r['saturated'])} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
