"""Many concurrent connections: a closed model of N users with a think time.

    python benchmarks/connections.py [--users 15000] [--duration 20] [--think 1s]

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


def established(port: int) -> int:
    """Established TCP connections towards ``port`` on this machine (client side)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[3] == "01":
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=15_000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--think", default="1s")
    args = parser.parse_args()
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
