"""The whole generator against wrk, wrk2 and Locust, side by side, on this machine.

Every tool gets one core (CPU 0) and sends to the same local nginx on the
other core (CPU 1), for the same duration, with the same number of
connections. Tools that are missing are reported as missing, never faked.
Three tables:

- throughput: closed model against wrk (and Locust); the open model held at
  ``--open-rate`` (p99, late sends, the saturation flag);
- a quiet generator: CPU of one core at 1,000 req/s open-loop, perfsuite and
  wrk2 (-R 1000), and the event loop's longest stall per second;
- HTTPS keep-alive: the closed model against wrk over TLS (nginx with a
  certificate made here).

    python benchmarks/generator_throughput.py [--duration 10] [--connections 50]

Needs: nginx and wrk (Debian: nginx-light wrk), Locust (pip install locust),
wrk2 on PATH (not packaged: built from its source, ``make``), trustme (dev).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
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
    rps: float | None  # answered requests per second; None: missing
    note: str = ""
    cpu: float | None = None  # share of one core, where measured


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(
    workdir: Path,
    *,
    tls: bool = False,
    worker_connections: int = 4096,
    host: str = "127.0.0.1",
    wrap: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], str] | None:
    """nginx on a free port of ``host`` (``wrap``: a command it runs under, as
    ``ip netns exec NS``), pinned to the server's CPU; None when it is missing."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None
    port = free_port()
    listen, certs = f"{host}:{port} backlog=65535", ""
    if tls:
        import trustme

        ca = trustme.CA()
        pem = workdir / "server.pem"
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
        listen += " ssl"
        certs = f"ssl_certificate {pem}; ssl_certificate_key {pem};"
    conf = workdir / ("nginx-tls.conf" if tls else "nginx.conf")
    # Default keepalive_requests (1000): generators must reconnect without losing requests.
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {workdir}/nginx{"-tls" if tls else ""}.pid;
            error_log {workdir}/error.log;
            worker_rlimit_nofile {worker_connections + 100};
            events {{ worker_connections {worker_connections}; }}
            http {{
              access_log off;
              server {{
                listen {listen};
                {certs}
                location / {{ return 200 "hello"; }}
              }}
            }}
            """
        )
    )
    proc = subprocess.Popen(
        [*wrap, "taskset", "-c", str(SERVER_CPU), nginx, "-c", str(conf), "-p", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection((host, port), timeout=0.1).close()
            scheme, name = ("https", "localhost") if tls else ("http", host)
            return proc, f"{scheme}://{name}:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def _child_cpu(command: list[str]) -> tuple[str, float, float]:
    """(stdout, CPU seconds, wall seconds) of a command run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu, wall


def run_wrk(url: str, duration: int, connections: int, label: str = "wrk (1 thread)") -> Row:
    wrk = shutil.which("wrk")
    if wrk is None:
        return Row("wrk", connections, None, "missing (apt-get install wrk)")
    command = ["taskset", "-c", str(GENERATOR_CPU), wrk, "-t1", f"-c{connections}"]
    out, cpu, wall = _child_cpu([*command, f"-d{duration}s", url + "/"])
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return Row(label, connections, float(match.group(1)) if match else None, cpu=cpu / wall)


def run_wrk2(url: str, rate: float, duration: int, connections: int) -> Row:
    """wrk2 at a constant rate: what its CPU is beside ours (it has no package)."""
    wrk2 = shutil.which("wrk2")
    if wrk2 is None:
        return Row("wrk2", connections, None, "missing (build it from source: make)")
    command = ["taskset", "-c", str(GENERATOR_CPU), wrk2, "-t1", f"-c{connections}"]
    out, cpu, wall = _child_cpu([*command, f"-d{duration}s", f"-R{rate:.0f}", "--latency", url])
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99\.000%\s+([\d.]+)(us|ms|s)", out)
    note = f"p99 {p99.group(1)} {p99.group(2)}" if p99 else ""
    rps = float(match.group(1)) if match else None
    return Row(f"wrk2 -R {rate:,.0f} (1 thread)", connections, rps, note, cpu=cpu / wall)


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
options = EngineOptions(max_connections=conns, verify=False)
r = run_load(url, scenario, [phase], options=options)
m = r.measured()
stalls = sorted(r.loop_stalls_ms)
print(json.dumps({{"answered": m.answered, "ok": m.ok, "errors": m.errors,
    "p99": m.latency.p99, "late": r.late, "saturated": r.saturated, "cpu": r.generator_cpu,
    "wall": r.wall_time, "stall_max": max(stalls, default=0.0),
    "stall_p50": stalls[len(stalls) // 2] if stalls else 0.0}}))
"""


def perfsuite_run(url: str, mode: str, value: float, duration: int, conns: int) -> dict[str, float]:
    command = [sys.executable, "-c", PERFSUITE.format(cpu=f"{{{GENERATOR_CPU}}}"), url, mode]
    out = subprocess.run(
        [*command, str(value), str(duration), str(conns)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def run_perfsuite(url: str, mode: str, value: float, duration: int, connections: int) -> Row:
    data = perfsuite_run(url, mode, value, duration, connections)
    if mode == "closed":
        name = "perfsuite, closed model"
        rps = data["answered"] / data["wall"]
    else:
        name = f"perfsuite, open model at {value:,.0f} req/s"
        rps = data["answered"] / duration
    note = (
        f"p99 {data['p99']:.2f} ms, errors {data['errors']:.0f}, late {data['late']:.0f}, "
        f"loop stall max {data['stall_max']:.1f} ms"
    )
    if data["saturated"]:
        note += ", SATURATED"
    return Row(name, connections, rps, note, cpu=data["cpu"])


def table(rows: list[Row], against: str = "wrk") -> str:
    base = next((r.rps for r in rows if r.tool.startswith(against) and r.rps), None)
    lines = [
        f"| tool | connections | req/s | ratio to {against} | CPU (one core) | note |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        rps = f"{r.rps:,.0f}" if r.rps is not None else "missing"
        ratio = f"{r.rps / base:.2f}" if (r.rps and base) else "-"
        cpu = f"{r.cpu:.1%}" if r.cpu is not None else "-"
        lines.append(f"| {r.tool} | {r.connections} | {rps} | {ratio} | {cpu} | {r.note} |")
    return "\n".join(lines)


def _targets(rows: list[Row], quiet: list[Row], tls: list[Row], open_rate: float) -> list[str]:
    wrk, ours_closed, ours_open = rows[0].rps, rows[1].rps or 0.0, rows[2]
    out = []
    open_ok = (ours_open.rps or 0.0) >= 0.99 * open_rate and "SATURATED" not in ours_open.note
    out.append(
        f"open model at {open_rate:,.0f} req/s, no saturation flag: "
        f"{'met' if open_ok else 'NOT met'} ({ours_open.note})"
    )
    if wrk:
        ratio = ours_closed / wrk
        out.append(
            f"closed model >= 0.8 x wrk: {'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.2f})"
        )
    cpu = quiet[0].cpu or 0.0
    out.append(
        f"generator CPU at 1,000 req/s <= 5 % of a core: "
        f"{'met' if cpu <= 0.05 else 'NOT met'} ({cpu:.1%})"
    )
    if tls[0].rps and tls[1].rps:
        out.append(f"HTTPS keep-alive, closed model / wrk: {tls[1].rps / tls[0].rps:.2f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--open-rate", type=float, default=100_000)
    args = parser.parse_args()
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        print("needs 2 cores: one for the generator, one for nginx")
        return 2
    d, c = args.duration, args.connections
    with tempfile.TemporaryDirectory(prefix="perfsuite-bench-") as tmp:
        started = start_nginx(Path(tmp))
        started_tls = start_nginx(Path(tmp), tls=True)
        if started is None or started_tls is None:
            print("nginx: missing (apt-get install nginx-light); nothing to measure against")
            return 2
        (proc, url), (proc_tls, url_tls) = started, started_tls
        try:
            rows = [
                run_wrk(url, d, c),
                run_perfsuite(url, "closed", c, d, c),
                run_perfsuite(url, "open", args.open_rate, d, c * 4),
                run_locust(url, d, c, Path(tmp)),
            ]
            quiet = [run_perfsuite(url, "open", 1000, d, c), run_wrk2(url, 1000, d, c)]
            tls = [
                run_wrk(url_tls, d, c, "wrk over TLS"),
                run_perfsuite(url_tls, "closed", c, d, c),
            ]
        finally:
            for p in (proc, proc_tls):
                p.terminate()
                p.wait()
    print(f"nginx on CPU {SERVER_CPU}, each generator on CPU {GENERATOR_CPU}, {d} s each\n")
    print("throughput\n")
    print(table(rows))
    print("\na quiet generator: 1,000 req/s open-loop\n")
    print(table(quiet, against="perfsuite"))
    print("\nHTTPS keep-alive\n")
    print(table(tls))
    print()
    for line in _targets(rows, quiet, tls, args.open_rate):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
