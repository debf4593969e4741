"""The A/B gate on the real example service: detection and false alarms.

    python benchmarks/ab_example.py [--runs 10] [--aa-runs 20] [--pairs 10]
                                    [--levels 0.1,0.2,0.5] [--profile smoke]
                                    [--log benchmarks/results/ab_example.jsonl]
                                    [--stop-after MINUTES]

Runs the example perf suite's order query test (``tests/perf``) as an A/B
session against this very commit (``--perf-ab=HEAD``), the candidate slowed
by the ``delay:<ms>`` fault (the order query's own statement sleeps in
MariaDB), the base not (``--perf-ab-env=ORDER_SERVICE_FAULT=``).

The slowdown is calibrated: the order query's median is measured first (a
plain session), then, on a throwaway MariaDB of our own, the ``SLEEP``
argument whose *added* time is the level's share of that median (a sleep
wakes ~0.13 ms late here, 6 % of the median). The ``slow:<ms>`` fault is
not used: its extra statement adds a round trip (~0.2 ms) on top, so "+10 %"
measured +16 to +25 %. The table
also prints the shift each level actually produced (the median of the runs'
paired estimates), so that a reader sees what was caught, not what was meant.

Every run is a fresh session: its own throwaway MariaDB, worktree and
services. Prints, per level, how often p50 was reported ``regressed``, the
median "detects" (the minimum detectable effect) and pair correlation, and the
seconds per run; the A/A row (no fault) counts sessions with any regressed
metric.

The whole set takes hours, so each finished run is appended to ``--log`` (a
JSON line) and a later call goes on from there: the levels are interleaved
(A/A, +10 %, A/A, +20 %, +50 %, ...) so that a set stopped early is still
balanced. ``--stop-after`` ends it cleanly after that many minutes.

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


def _added_ms(cur: Any, sleep_ms: float, rounds: int = 1000) -> float:
    """The median time ``SLEEP`` in a select list adds to a statement, in ms.

    The plain and the sleeping statement alternate: timed apart, the plain
    one's median drifted by ±0.1 ms between calls (CPU idle states).
    """
    plain: list[int] = []
    slept: list[int] = []
    for _ in range(rounds):
        for sql, args, into in (
            ("SELECT 1", (), plain),
            ("SELECT 1, SLEEP(%s)", (sleep_ms / 1000.0,), slept),
        ):
            start = time.perf_counter_ns()
            cur.execute(sql, args)
            cur.fetchall()
            into.append(time.perf_counter_ns() - start)
    return (statistics.median(slept) - statistics.median(plain)) / 1e6


def _calibrate(targets_ms: list[float]) -> dict[str, dict[str, float]]:
    """For each target, the sleep (ms) that adds that much, found on a MariaDB of our own."""
    from perfsuite.config import MySQLConfig
    from perfsuite.provision.mysql_process import mysql_process

    found: dict[str, dict[str, float]] = {}
    with (
        mysql_process(MySQLConfig(cost=False)) as server,
        server.connection() as conn,
        conn.cursor() as cur,
    ):
        for target in targets_ms:
            # Bisection: any sleep wakes ~0.13 ms late here, but SLEEP(0) adds
            # only 0.03 ms, so the added time is not the sleep plus a constant.
            low, high = 0.0, target
            for _ in range(8):
                sleep = (low + high) / 2
                low, high = (sleep, high) if _added_ms(cur, sleep) < target else (low, sleep)
            sleep = (low + high) / 2
            found[f"{target:.4f}"] = {"sleep_ms": sleep, "added_ms": _added_ms(cur, sleep)}
    return found


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _schedule(levels: list[float], runs: int, aa_runs: int) -> list[float]:
    """Every level's runs, interleaved: an A/A run between levels as long as A/A runs remain."""
    left = {level: runs for level in levels}
    aa = aa_runs
    order: list[float] = []
    while aa or any(left.values()):
        for level in levels:
            if aa:
                order.append(0.0)
                aa -= 1
            if left[level]:
                order.append(level)
                left[level] -= 1
    return order


def _one_run(
    args: argparse.Namespace, root: Path, level: float, header: dict[str, Any]
) -> dict[str, Any]:
    target = f"{level * header['median_ms']:.4f}"
    fault = f"delay:{header['calibration'][target]['sleep_ms']:.4f}" if level else ""
    start = time.monotonic()
    entry = _session(
        args,
        root / f"{level}-{time.time_ns()}",
        ["--perf-ab=HEAD", f"--perf-ab-pairs={args.pairs}", "--perf-ab-env=ORDER_SERVICE_FAULT="],
        fault,
    )
    comparisons = entry["comparisons"].get("order_query", [])
    if not comparisons:  # stopped, or failed before its verdict: not a run of the set
        raise SystemExit(f"no A/B verdict ({fault or 'A/A'}): {json.dumps(entry)[:2000]}")
    by = {c["metric"]: c for c in comparisons}
    text = by.get("p50", {}).get("text", "")
    return {
        "level": level,
        "fault": fault,
        "commit": _commit(),
        "seconds": round(time.monotonic() - start, 1),
        "p50": by.get("p50", {}).get("verdict"),
        "verdicts": {c["metric"]: c["verdict"] for c in comparisons},
        "detects": float(text.split("detects ±")[1].split("%")[0]) if "detects ±" in text else None,
        "correlation": (
            float(text.split("pair correlation ")[1].rstrip(")"))
            if "pair correlation " in text
            else None
        ),
        "shift": _shift(text) if " ms, " in text else None,
        "text": text,
    }


def _shift(text: str) -> float:
    return float(text.split(" ms, ")[1].split("%")[0])


def _table(header: dict[str, Any], rows: list[dict[str, Any]], levels: list[float]) -> None:
    print(
        f"order query p50 {header['median_ms']:.3f} ms; {header['pairs']} pairs per run, "
        f"profile {header['profile']}"
    )
    print("| fault | runs | measured p50 shift (median) | p50 regressed "
          "| any metric regressed | detects p50 (median) "
          "| pair correlation p50 (median) | s per run |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for level in [0.0, *levels]:
        mine = [r for r in rows if r["level"] == level]
        if not mine:
            continue
        mdes = [r["detects"] for r in mine if r["detects"] is not None]
        # Rows logged before "shift" was kept carry it in their text: "..., +2.4% [...".
        shifts = [
            r["shift"] if r.get("shift") is not None else _shift(r["text"])
            for r in mine
            if r.get("shift") is not None or " ms, " in r["text"]
        ]
        corrs = [r["correlation"] for r in mine if r["correlation"] is not None]
        p50 = sum(r["p50"] == "regressed" for r in mine)
        anything = sum("regressed" in r["verdicts"].values() for r in mine)
        name = "none (A/A)" if level == 0 else f"+{level:.0%} ({mine[0]['fault']})"
        print(
            f"| {name} | {len(mine)} | "
            f"{statistics.median(shifts) if shifts else float('nan'):+.1f} % | "
            f"{p50} | {anything} | "
            f"{statistics.median(mdes) if mdes else float('nan'):.1f} % | "
            f"{statistics.median(corrs) if corrs else float('nan'):.2f} | "
            f"{statistics.median(r['seconds'] for r in mine):.0f} |",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--aa-runs", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--levels", default="0.1,0.2,0.5")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--log", type=Path, default=REPO / "benchmarks/results/ab_example.jsonl")
    parser.add_argument("--stop-after", type=float, default=0.0, help="minutes; 0: no limit")
    args = parser.parse_args()
    levels = [float(x) for x in args.levels.split(",")]
    deadline = time.monotonic() + args.stop_after * 60 if args.stop_after else float("inf")
    lines = args.log.read_text().splitlines() if args.log.exists() else []
    header: dict[str, Any] = json.loads(lines[0]) if lines else {}
    rows = [json.loads(line) for line in lines[1:]]
    if header and (header["pairs"], header["profile"]) != (args.pairs, args.profile):
        raise SystemExit(f"{args.log} holds runs of another setting: {header}")
    if header and "calibration" not in header:
        raise SystemExit(f"{args.log} is from before the calibrated delay fault: move it away")
    with tempfile.TemporaryDirectory(prefix="perfsuite-ab-bench-") as tmp:
        root = Path(tmp)
        if not header:
            median = _median_ms(args, root)
            header = {
                "median_ms": median,
                "calibration": _calibrate([round(level * median, 4) for level in levels]),
                "pairs": args.pairs,
                "profile": args.profile,
                "commit": _commit(),
            }
            args.log.parent.mkdir(parents=True, exist_ok=True)
            args.log.write_text(json.dumps(header) + "\n")
        todo = _schedule(levels, args.runs, args.aa_runs)
        for row in rows:  # what earlier calls did is struck from the schedule
            if row["level"] in todo:
                todo.remove(row["level"])
        for level in todo:
            if time.monotonic() > deadline:
                print(f"stopped after {args.stop_after:g} minutes; run again to go on")
                break
            row = _one_run(args, root, level, header)
            rows.append(row)
            with args.log.open("a") as log:
                log.write(json.dumps(row) + "\n")
            print(f"{level:+.0%}: p50 {row['p50']} in {row['seconds']:.0f} s", flush=True)
    _table(header, rows, levels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
