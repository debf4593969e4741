"""Many concurrent connections: a closed model of N users with a think time.

    python benchmarks/connections.py [--users 15000] [--duration 20] [--think 1s]
    python benchmarks/connections.py --users 30000 --agents 2   # root: namespaces

With ``--agents N``, the load comes from N execnet agents, each in a network
namespace of its own (another "host": its own address, ephemeral ports and
descriptor limit), and nginx runs in one more; made and removed here (root
and iproute2 needed). The users are split between the agents.

Each virtual user holds its own keep-alive connection, so N users are N
concurrent connections; the count of established connections is read from
/proc/net/tcp in the middle of the run. The users are limited by
RLIMIT_NOFILE (perfsuite raises the soft limit to the hard one, and says so
when that is not enough) and by the ephemeral ports towards one address.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generator_throughput import start_nginx

from perfsuite import Request, Scenario, run_load
from perfsuite.config import parse_duration
from perfsuite.load import ClosedPhase, EngineOptions


def established(port: int, table: str | None = None) -> int:
    """Established TCP connections towards ``port`` on this machine (client side), or,
    given ``table`` (the server's namespace's /proc/net/tcp), from its side."""
    count = 0
    lines = (table or Path("/proc/net/tcp").read_text()).splitlines()[1:]
    for line in lines:
        fields = line.split()
        side = 1 if table else 2  # local address (server side) or remote (client side)
        if int(fields[side].split(":")[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def from_agents(args: argparse.Namespace, phase: ClosedPhase) -> int:
    """The load from ``args.agents`` namespaces, nginx in another (see the docstring)."""
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from perfsuite.load.agents import run_agents
    from tests.unit.netns import Namespaces

    names = [f"a{i}" for i in range(args.agents)]
    net = Namespaces([*names, "s"])
    try:
        # A namespace starts with the kernel's defaults: an accept queue of 4,096 and
        # a SYN queue of 1,024 drop most of 30,000 connects that arrive at once.
        for key in ("net.core.somaxconn=65535", "net.ipv4.tcp_max_syn_backlog=65535"):
            subprocess.run(["ip", "netns", "exec", net.ns["s"], "sysctl", "-qw", key], check=True)
        with tempfile.TemporaryDirectory(prefix="perfsuite-conns-") as tmp:
            started = start_nginx(
                Path(tmp),
                worker_connections=min(args.users + 4000, 65000),
                host=net.addr["s"],
                wrap=("ip", "netns", "exec", net.ns["s"]),
            )
            if started is None:
                print("nginx: missing (apt-get install nginx-light)")
                return 2
            proc, url = started
            port = int(url.rsplit(":", 1)[1])
            peak = [0]

            def watch() -> None:
                time.sleep(args.duration / 2 + 2)  # the agents' start-up, then mid-run
                table = subprocess.run(
                    ["ip", "netns", "exec", net.ns["s"], "cat", "/proc/net/tcp"],
                    capture_output=True,
                    text=True,
                ).stdout
                peak[0] = established(port, table)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            scenario = Scenario(Request(name="hello", build=httpx.Request("GET", url + "/")))
            options = EngineOptions(
                max_connections=args.users, timeout=30.0, allowed_hosts=(net.addr["s"],)
            )
            tx = [f"popen//python=ip netns exec {net.ns[n]} {sys.executable}" for n in names]
            result = run_agents(url, scenario, [phase], tx, options=options)
            proc.terminate()
            proc.wait()
            watcher.join()
    finally:
        net.close()
    m = result.measured()
    print(
        "| agents | users | established mid-run (nginx's side) | requests | errors | ok/s "
        "| p99 ms |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.agents} | {args.users:,} | {peak[0]:,} | {m.requests:,} | {m.errors} | "
        f"{m.ok_rps:,.0f} | {m.service_time.p99:.1f} |"
    )
    print(f"errors by kind: {dict(m.errors_by_kind)}")
    print(f"connections opened: {result.connections_opened}")
    print(f"connect failures: {dict(result.connect_failures)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=15_000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--think", default="1s")
    parser.add_argument("--agents", type=int, default=0, help="agents in namespaces (root)")
    args = parser.parse_args()
    if args.agents:
        phase = ClosedPhase(
            name="users",
            duration=args.duration,
            users=args.users,
            think_time=parse_duration(args.think, key="--think"),
        )
        return from_agents(args, phase)
    with tempfile.TemporaryDirectory(prefix="perfsuite-conns-") as tmp:
        started = start_nginx(Path(tmp), worker_connections=min(args.users + 4000, 60000))
        if started is None:
            print("nginx: missing (apt-get install nginx-light)")
            return 2
        proc, url = started
        port = int(url.rsplit(":", 1)[1])
        peak = [0]

        def watch() -> None:
            time.sleep(args.duration / 2)
            peak[0] = established(port)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            scenario = Scenario(Request(name="hello", build=httpx.Request("GET", url + "/")))
            phase = ClosedPhase(
                name="users",
                duration=args.duration,
                users=args.users,
                think_time=parse_duration(args.think, key="--think"),
            )
            options = EngineOptions(max_connections=args.users, timeout=30.0)
            result = run_load(url, scenario, [phase], options=options)
        finally:
            proc.terminate()
            proc.wait()
        watcher.join()
    m = result.measured()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print("| users | established mid-run | requests | errors | ok/s | p99 ms | NOFILE soft/hard |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(
        f"| {args.users:,} | {peak[0]:,} | {m.requests:,} | {m.errors} | "
        f"{m.ok_rps:,.0f} | {m.service_time.p99:.1f} | {soft}/{hard} |"
    )
    print(f"errors by kind: {dict(m.errors_by_kind)}")
    print(f"connections opened: {result.connections_opened}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
