"""The A/B gate on the real example service: detection and false alarms.

    python benchmarks/ab_example.py [--runs 10] [--aa-runs 20] [--pairs 10]
                                    [--levels 0.1,0.2,0.5] [--profile smoke]

Runs the example perf suite's order query test (``tests/perf``) as an A/B
session against this very commit (``--perf-ab=HEAD``), the candidate slowed
by the ``slow:<ms>`` fault (each order query sleeps that long in MariaDB),
the base not (``--perf-ab-env=ORDER_SERVICE_FAULT=``). The fault is set to
a share of the order query's median, measured first. Every run is a fresh
session: its own throwaway MariaDB, worktree and services. Prints, per level,
how often p50 was reported ``regressed``, the median "detects" (the minimum
detectable effect) and pair correlation, and the seconds per run; the A/A
row (no fault) counts sessions with any regressed metric.

Run it where nothing else loads the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _session(
    args: argparse.Namespace, reports: Path, extra: list[str], fault: str
) -> dict[str, Any]:
    env = {**os.environ, "ORDER_SERVICE_FAULT": fault, "DOCKER_HOST": "unix:///nonexistent.sock"}
    argv = [
        sys.executable, "-m", "pytest", "tests/perf", "-m", "perf", "-k", "order_query",
        f"--perf-profile={args.profile}", "-p", "no:cacheprovider",
        f"--perf-reports-dir={reports}", *extra,
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    records = sorted((reports / "runs").glob("*.json"))
    if not records:
        raise SystemExit(f"no run record:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    record: dict[str, Any] = json.loads(records[-1].read_text())
    return record["tests"][0]


def _median_ms(args: argparse.Namespace, root: Path) -> float:
    entry = _session(args, root / "plain", [], "")
    values = [c["summary"]["p50"] for c in entry["loads"][0]["cells"] if c["phase"] != "warmup"]
    return float(statistics.median(values))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--aa-runs", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--levels", default="0.1,0.2,0.5")
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfsuite-ab-bench-") as tmp:
        root = Path(tmp)
        median = _median_ms(args, root)
        print(
            f"order query p50 {median:.3f} ms; {args.pairs} pairs per run, profile {args.profile}"
        )
        print("| fault | runs | p50 regressed | any metric regressed | detects p50 (median) "
              "| pair correlation p50 (median) | s per run |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        levels = [0.0] + [float(x) for x in args.levels.split(",")]
        for level in levels:
            runs = args.aa_runs if level == 0 else args.runs
            fault = f"slow:{level * median:.4f}" if level else ""
            p50 = anything = 0
            mdes, corrs, seconds = [], [], []
            for i in range(runs):
                start = time.monotonic()
                entry = _session(
                    args,
                    root / f"{level}-{i}",
                    ["--perf-ab=HEAD", f"--perf-ab-pairs={args.pairs}",
                     "--perf-ab-env=ORDER_SERVICE_FAULT="],
                    fault,
                )  # fmt: skip
                seconds.append(time.monotonic() - start)
                comparisons = entry["comparisons"].get("order_query", [])
                by = {c["metric"]: c for c in comparisons}
                p50 += by.get("p50", {}).get("verdict") == "regressed"
                anything += any(c["verdict"] == "regressed" for c in comparisons)
                text = by.get("p50", {}).get("text", "")
                if "detects ±" in text:
                    mdes.append(float(text.split("detects ±")[1].split("%")[0]))
                if "pair correlation " in text:
                    corrs.append(float(text.split("pair correlation ")[1].rstrip(")")))
            name = "none (A/A)" if level == 0 else f"+{level:.0%} ({fault})"
            print(
                f"| {name} | {runs} | {p50} | {anything} | "
                f"{statistics.median(mdes) if mdes else float('nan'):.1f} % | "
                f"{statistics.median(corrs) if corrs else float('nan'):.2f} | "
                f"{statistics.median(seconds):.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
