"""Whole-generator throughput: perfsuite against wrk and Locust, side by side.

Every tool gets one core (CPU 0) and sends to the same local nginx on the
other core (CPU 1), for the same duration, with the same number of
connections. Tools that are missing are reported as missing, never faked.

    python benchmarks/generator_throughput.py [--duration 10] [--connections 50]

Needs: nginx and wrk (Debian: nginx-light wrk), Locust (pip install locust).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

GENERATOR_CPU, SERVER_CPU = 0, 1


@dataclass
class Row:
    tool: str
    connections: int
    rps: float | None  # None: missing
    note: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(
    workdir: Path, worker_connections: int = 4096
) -> tuple[subprocess.Popen[bytes], str] | None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None
    port = free_port()
    conf = workdir / "nginx.conf"
    # Default keepalive_requests (1000): generators must reconnect without losing requests.
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {workdir}/nginx.pid;
            error_log {workdir}/error.log;
            worker_rlimit_nofile {worker_connections + 100};
            events {{ worker_connections {worker_connections}; }}
            http {{
              access_log off;
              server {{
                listen 127.0.0.1:{port} backlog=65535;
                location / {{ return 200 "hello"; }}
              }}
            }}
            """
        )
    )
    proc = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CPU), nginx, "-c", str(conf), "-p", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def run_wrk(url: str, duration: int, connections: int) -> Row:
    wrk = shutil.which("wrk")
    if wrk is None:
        return Row("wrk", connections, None, "missing (apt-get install wrk)")
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(GENERATOR_CPU),
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            url + "/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return Row("wrk (1 thread)", connections, float(match.group(1)) if match else None)


LOCUSTFILE = """
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

class Hello(FastHttpUser):
    wait_time = constant(0)

    @task
    def hello(self):
        self.client.get("/")
"""


def run_locust(url: str, duration: int, connections: int, workdir: Path) -> Row:
    locust = shutil.which("locust")
    if locust is None:
        return Row("Locust FastHttpUser", connections, None, "missing (pip install locust)")
    locustfile = workdir / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = workdir / "locust"
    subprocess.run(
        [
            "taskset",
            "-c",
            str(GENERATOR_CPU),
            locust,
            "-f",
            str(locustfile),
            "--headless",
            "-u",
            str(connections),
            "-r",
            str(connections),
            "-t",
            f"{duration}s",
            "--host",
            url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "ERROR",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        return Row("Locust FastHttpUser", connections, None, "failed to run")
    with stats.open() as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                return Row("Locust FastHttpUser (1 process)", connections, float(row["Requests/s"]))
    return Row("Locust FastHttpUser", connections, None, "no summary")


PERFSUITE = """
import json, os, sys
os.sched_setaffinity(0, {cpu})
import httpx
from perfsuite import Request, Scenario, run_load
from perfsuite.load import ClosedPhase, EngineOptions, OpenPhase
url, mode = sys.argv[1], sys.argv[2]
value, duration, conns = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
scenario = Scenario(Request(name="hello", build=httpx.Request("GET", url + "/")))
if mode == "closed":
    phase = ClosedPhase(name="run", duration=duration, users=int(value))
else:
    phase = OpenPhase(name="run", duration=duration, start_rate=value, end_rate=value)
r = run_load(url, scenario, [phase], options=EngineOptions(max_connections=conns))
m = r.measured()
print(json.dumps({{"rps": m.latency.count / r.wall_time if mode == "closed" else m.achieved_rps,
    "answered": m.latency.count, "errors": m.errors, "p99": m.latency.p99, "late": r.late,
    "saturated": r.saturated}}))
"""


def run_perfsuite(url: str, mode: str, value: float, duration: int, connections: int) -> Row:
    import json

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PERFSUITE.format(cpu=f"{{{GENERATOR_CPU}}}"),
            url,
            mode,
            str(value),
            str(duration),
            str(connections),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    if mode == "closed":
        name = "perfsuite, closed model"
        rps = data["rps"]
    else:
        name = f"perfsuite, open model at {value:,.0f} req/s"
        rps = data["answered"] / duration
    note = f"p99 {data['p99']:.2f} ms, errors {data['errors']}, late {data['late']}"
    if data["saturated"]:
        note += ", SATURATED"
    return Row(name, connections, rps, note)


def table(rows: list[Row]) -> str:
    wrk = next((r.rps for r in rows if r.tool.startswith("wrk") and r.rps), None)
    lines = [
        "| tool | connections | req/s | ratio to wrk | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        rps = f"{r.rps:,.0f}" if r.rps is not None else "missing"
        ratio = f"{r.rps / wrk:.2f}" if (r.rps and wrk) else "-"
        lines.append(f"| {r.tool} | {r.connections} | {rps} | {ratio} | {r.note} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--open-rate", type=float, default=60_000)
    args = parser.parse_args()
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        print("needs 2 cores: one for the generator, one for nginx")
        return 2
    with tempfile.TemporaryDirectory(prefix="perfsuite-bench-") as tmp:
        started = start_nginx(Path(tmp))
        if started is None:
            print("nginx: missing (apt-get install nginx-light); nothing to measure against")
            return 2
        proc, url = started
        try:
            rows = [
                run_wrk(url, args.duration, args.connections),
                run_perfsuite(url, "closed", args.connections, args.duration, args.connections),
                run_perfsuite(url, "open", args.open_rate, args.duration, args.connections * 4),
                run_locust(url, args.duration, args.connections, Path(tmp)),
            ]
        finally:
            proc.terminate()
            proc.wait()
    print(f"nginx on CPU {SERVER_CPU}, each generator on CPU {GENERATOR_CPU}, ", end="")
    print(f"{args.duration} s each\n")
    print(table(rows))
    ours = rows[1].rps or 0.0
    wrk, locust = rows[0].rps, rows[3].rps
    print()
    verdict = "met" if ours >= 50_000 else "NOT met"
    print(f"target >= 50,000 req/s on one core: {verdict} ({ours:,.0f})")
    if wrk:
        print(
            f"target >= 0.30 x wrk: {'met' if ours >= 0.3 * wrk else 'NOT met'} ({ours / wrk:.2f})"
        )
    if locust:
        verdict = "met" if ours >= 3.5 * locust else "NOT met"
        print(f"target >= 3.5 x Locust: {verdict} ({ours / locust:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
