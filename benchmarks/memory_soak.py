"""Memory stays flat: RSS of the generator over a long run (default 10 min at 1,000 req/s).

    python benchmarks/memory_soak.py [--minutes 10] [--rate 1000]

Sends to a local nginx (or, without nginx, to a tiny asyncio server in a
subprocess) and prints the generator's RSS every 30 s, sampled from a thread.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generator_throughput import start_nginx

from perfsuite import Request, Scenario, run_load
from perfsuite.load import OpenPhase


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfsuite-soak-") as tmp:
        started = start_nginx(Path(tmp))
        if started is None:
            print("nginx: missing (apt-get install nginx-light)")
            return 2
        proc, url = started
        me = psutil.Process()
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.wait(30.0 if samples else 1.0):
                samples.append((time.monotonic() - t0, me.memory_info().rss / 2**20))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            scenario = Scenario(Request(name="hello", build=httpx.Request("GET", url + "/")))
            phase = OpenPhase(
                name="soak", duration=args.minutes * 60, start_rate=args.rate, end_rate=args.rate
            )
            result = run_load(url, scenario, [phase])
        finally:
            stop.set()
            proc.terminate()
            proc.wait()
    m = result.measured()
    print(
        f"{m.requests:,} requests at {args.rate:g} req/s for {args.minutes:g} min, "
        f"errors {m.errors}, p99 {m.latency.p99:.2f} ms"
    )
    print("| elapsed s | RSS MiB |\n| ---: | ---: |")
    for t, rss in samples:
        print(f"| {t:.0f} | {rss:.1f} |")
    print(f"peak RSS {max(r for _, r in samples):.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
