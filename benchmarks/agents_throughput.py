"""Load agents on execnet against a local nginx: 1 agent, 2 agents, 2 forked workers.

For each, the closed model (``--users`` users for ``--duration`` s) and the
open model at ``--rate``: answered requests a second, the ratio to one agent,
p99, late sends, and the coordinator's own CPU (this process: it merges what
the agents stream and the results), also given per 100,000 merged requests a
second (its CPU share divided by the merged rate in units of 100,000/s).

    python benchmarks/agents_throughput.py [--duration 10] [--users 100] [--rate 20000]

Needs nginx (Debian: nginx-light). On a 2-core machine the agents and nginx
share the cores: two agents cannot double one's rate here, and the table says
what they do reach.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generator_throughput import start_nginx

from perfsuite import Request, Scenario
from perfsuite.load import ClosedPhase, EngineOptions, OpenPhase
from perfsuite.load.agents import run_agents
from perfsuite.load.parallel import run_parallel
from perfsuite.load.result import LoadResult


def _one(url: str, how: str, model: str, args: argparse.Namespace) -> dict[str, object]:
    scenario = Scenario(Request(name="hello", build=httpx.Request("GET", url + "/")))
    phase = (
        ClosedPhase(name="p", duration=args.duration, users=args.users)
        if model == "closed"
        else OpenPhase(name="p", duration=args.duration, start_rate=args.rate, end_rate=args.rate)
    )
    options = EngineOptions(max_connections=max(args.users, 1000), timeout=10.0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result: LoadResult
    if how == "2 forked workers":
        result = run_parallel(url, scenario, [phase], workers=2, options=options)
    else:
        tx = ["popen"] if how == "1 agent" else ["2*popen"]
        result = run_agents(url, scenario, [phase], tx, options=options)
    wall = time.perf_counter() - wall0
    cpu = (time.process_time() - cpu0) / wall
    m = result.measured()
    rps = m.answered / args.duration
    return {
        "how": how,
        "model": model,
        "rps": rps,
        "p99": m.latency.p99,
        "errors": m.errors,
        "late": result.late,
        "saturated": result.saturated,
        "coordinator_cpu": cpu,
        "per_100k": cpu / (rps / 100_000) if rps else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = start_nginx(Path(tmp))
        if started is None:
            print("nginx: missing (apt-get install nginx-light); nothing to measure against")
            return 1
        proc, url = started
        try:
            rows = [
                _one(url, how, model, args)
                for model in ("closed", "open")
                for how in ("1 agent", "2 agents", "2 forked workers")
            ]
        finally:
            proc.terminate()
            proc.wait()
    print(f"{os.cpu_count()} cores; nginx on CPU 1; {args.duration:g} s each; "
          f"closed: {args.users} users; open: {args.rate:,.0f} req/s\n")  # fmt: skip
    print("| model | load from | answered/s | ratio to 1 agent | p99 ms | errors | late "
          "| saturated | coordinator CPU | coordinator CPU per 100k req/s |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for model in ("closed", "open"):
        group = [r for r in rows if r["model"] == model]
        one = float(group[0]["rps"])  # type: ignore[arg-type]
        for r in group:
            rps = float(r["rps"])  # type: ignore[arg-type]
            print(
                f"| {model} | {r['how']} | {rps:,.0f} | {rps / one:.2f} | {r['p99']:.2f} "
                f"| {r['errors']} | {r['late']} | {r['saturated']} "
                f"| {float(r['coordinator_cpu']):.1%} | {float(r['per_100k']):.1%} |"  # type: ignore[arg-type]
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
