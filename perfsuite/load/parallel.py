"""Multi-process mode: one engine per core, histograms merged exactly.

Each worker process runs the same phases from a common start time: in an
open phase worker w sends arrivals w, w + N, w + 2N, ... of the one
schedule (so the N workers together keep its rate, interleaved rather than
firing together), in a closed phase it runs its share of the users. The
parent adds their HDR histograms, and their per-second bins, which is exact.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as EventType
from typing import Any

import numpy as np
import numpy.typing as npt

from perfsuite.errors import ConfigError, Interrupted, LoadError
from perfsuite.load.engine import EngineOptions, Progress, run_load
from perfsuite.load.phases import OpenPhase, Phase
from perfsuite.load.recorder import Second, SecondBins, SecondReport
from perfsuite.load.result import Cell, LoadResult
from perfsuite.load.scenario import Scenario
from perfsuite.signals import die_with_parent, ignore_stop_signals, stop_signals
from perfsuite.stats.blocks import merge_blocks
from perfsuite.stats.cost import merge_ended
from perfsuite.stats.hdr import BINS, decode, dense_percentiles, encode, merge

__all__ = ["merge_parts", "run_parallel", "run_share", "split_phases", "split_users", "to_wire"]


def split_phases(
    phases: Sequence[Phase], workers: int, index: int, weights: Sequence[int] = ()
) -> list[Phase]:
    """Worker ``index``'s share: open phases whole (it takes every ``workers``-th
    arrival, see ``EngineOptions.worker``), users dealt out: evenly, or one each
    and the rest in proportion to ``weights`` (each agent's cores)."""
    share: list[Phase] = []
    for phase in phases:
        if isinstance(phase, OpenPhase):
            share.append(phase)
        else:
            if phase.users < workers:
                raise ConfigError(
                    f"phase {phase.name!r}: {phase.users} users cannot be split over "
                    f"{workers} workers"
                )
            users = split_users(phase.users, list(weights) or [1] * workers)[index]
            share.append(replace(phase, users=users))
    return share


def split_users(users: int, weights: Sequence[int]) -> list[int]:
    """``users`` (at least one per weight) dealt one each, then the rest in
    proportion to ``weights`` (largest remainders first, ties to the first)."""
    n = len(weights)
    rest, total = users - n, sum(weights)
    exact = [rest * w / total for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(n), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: rest - sum(counts)]:
        counts[i] += 1
    return [1 + c for c in counts]


def to_wire(result: LoadResult) -> dict[str, Any]:
    """A worker's result as it crosses to its parent (histograms encoded)."""
    return {
        "result": replace(result, cells=(), seconds=(), second_bins=()),
        "cells": [
            {
                "phase": c.phase,
                "endpoint": c.endpoint,
                "requests": c.requests,
                "latency": encode(c.latency),
                "latency_ok": encode(c.latency_ok),
                "service_time": encode(c.service_time),
                "errors": dict(c.errors),
                "statuses": dict(c.statuses),
                "blocks": c.blocks,  # numpy arrays pickle as they are
                "journey": c.journey,
                "stale": c.stale,
            }
            for c in result.cells
        ],
        "seconds": list(result.seconds),
        "second_bins": result.second_bins,
    }


def _worker(
    conn: Connection,
    target: str,
    scenario: Scenario,
    phases: list[Phase],
    options: EngineOptions,
    start: Synchronized[int],
    go: EventType,
    progress: Callable[[Progress], None] | None,
    parent: int,
    stop_signal: Synchronized[int],
    live: bool = False,
) -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides, and
    # tells the workers through ``stop_signal``, so each sends back what it
    # measured. If the parent is killed outright, the workers go with it.
    ignore_stop_signals()
    die_with_parent(parent)

    def stop() -> str | None:
        return signal.Signals(stop_signal.value).name if stop_signal.value else None

    def second(report: SecondReport) -> None:  # to the parent's exporter, as it closes
        conn.send(("second", replace(report, worker=options.worker)))

    def ready() -> int:  # built (its requests too): the parent sets the one start
        conn.send(("prepared", None))
        go.wait()
        return int(start.value)

    try:
        conn.send(
            run_share(
                target,
                scenario,
                phases,
                options,
                ready=ready,
                stop=stop,
                on_second=second if live else None,
                progress=progress,
            )
        )
    finally:
        conn.close()


def run_share(
    target: str,
    scenario: Scenario,
    phases: Sequence[Phase],
    options: EngineOptions,
    *,
    ready: Callable[[], int],
    stop: Callable[[], str | None],
    on_second: Callable[[SecondReport], None] | None,
    progress: Callable[[Progress], None] | None,
) -> tuple[str, Any]:
    """One forked worker's or load agent's share of a load, as its message to the
    parent: ``("ok", wire form)`` (also what it measured until told to stop) or
    ``("error", why)``, which the parent raises."""
    try:
        result = run_load(
            target,
            scenario,
            phases,
            options=options,
            progress=progress,
            ready=ready,
            stop=stop,
            handle_signals=False,
            on_second=on_second,
        )
    except Interrupted as exc:  # stopped by the parent: what it measured so far
        if exc.result is None:
            return ("error", str(exc))
        result = exc.result
    except BaseException as exc:  # reported to the parent, which raises it
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("ok", to_wire(result))


def _prepared(pipes: list[Connection], errors: list[str]) -> bool:
    """Wait for every worker's word that its run is built; False (``errors`` says
    why) when one failed or died first."""
    for pipe in pipes:
        try:
            status, payload = pipe.recv()
        except EOFError:
            errors.append("a worker died before its load began")
            return False
        if status != "prepared":
            errors.append(str(payload))
            return False
    return True


def _collect(
    pipes: list[Connection],
    parts: list[dict[str, Any]],
    errors: list[str],
    on_second: Callable[[SecondReport], None] | None,
) -> None:
    """Each worker's result into ``parts`` (in the workers' order) or its error into
    ``errors``, and, as they come, their seconds to ``on_second``: read from whichever
    pipe has something, so that no worker waits on a full pipe."""
    results: dict[int, dict[str, Any]] = {}
    waiting = dict(enumerate(pipes))
    while waiting:
        ready = wait(list(waiting.values()))
        for index, pipe in list(waiting.items()):
            if pipe not in ready:
                continue
            try:
                status, payload = pipe.recv()
            except EOFError:
                errors.append("a worker died without a result")
                del waiting[index]
                continue
            if status == "second":
                if on_second is not None:
                    on_second(payload)
                continue
            del waiting[index]
            if status == "ok":
                results[index] = payload
            else:
                errors.append(str(payload))
    parts.extend(results[i] for i in sorted(results))


def merge_parts(parts: list[dict[str, Any]]) -> LoadResult:
    """The workers' results (:func:`to_wire`'s, in the workers' order) as one load."""
    first: LoadResult = parts[0]["result"]
    cells = []
    for i, row in enumerate(parts[0]["cells"]):
        rows = [p["cells"][i] for p in parts]
        errors = {k: sum(r["errors"][k] for r in rows) for k in row["errors"]}
        statuses: dict[int, int] = {}
        for r in rows:
            for code, n in r["statuses"].items():
                statuses[code] = statuses.get(code, 0) + n
        cells.append(
            Cell(
                phase=row["phase"],
                endpoint=row["endpoint"],
                requests=sum(r["requests"] for r in rows),
                latency=merge(decode(r["latency"]) for r in rows),
                latency_ok=merge(decode(r["latency_ok"]) for r in rows),
                service_time=merge(decode(r["service_time"]) for r in rows),
                errors=errors,
                statuses=statuses,
                # Workers share the clock: their blocks of one second cover one span.
                blocks=tuple(merge_blocks([b for r in rows for b in r["blocks"]], same_span=True)),
                journey=row["journey"],
                stale=None if row["stale"] is None else sum(r["stale"] for r in rows),
            )
        )
    endpoints = list(dict.fromkeys(c["endpoint"] for c in parts[0]["cells"]))
    seconds, second_bins = _merge_seconds(parts, endpoints)
    results: list[LoadResult] = [p["result"] for p in parts]
    saturated = [r for r in results if r.saturated]
    phases = tuple(
        replace(
            info,
            users=None if info.users is None else sum(r.phases[i].users or 0 for r in results),
        )
        for i, info in enumerate(first.phases)
    )
    return replace(
        first,
        phases=phases,
        cells=tuple(cells),
        seconds=tuple(seconds),
        second_bins=tuple(second_bins),
        ended=merge_ended([r.ended for r in results]),
        late=sum(r.late for r in results),
        late_generator=sum(r.late_generator for r in results),
        dropped=sum(r.dropped for r in results),
        wall_time=max(r.wall_time for r in results),
        generator_cpu=sum(r.generator_cpu for r in results),
        loop_lag_p99_ms=max(r.loop_lag_p99_ms for r in results),
        loop_stalls_ms=tuple(
            max(r.loop_stalls_ms[i] for r in results if i < len(r.loop_stalls_ms))
            for i in range(max(len(r.loop_stalls_ms) for r in results))
        ),
        connections_opened=sum(r.connections_opened for r in results),
        saturated=bool(saturated),
        saturation_reason=saturated[0].saturation_reason if saturated else "",
        interrupted=any(r.interrupted for r in results),
        abandoned=sum(r.abandoned for r in results),
        max_connections=sum(r.max_connections for r in results),
        at_limit=sum(r.at_limit for r in results),
        queue_wait_max_ms=max(r.queue_wait_max_ms for r in results),
        unsolicited=sum(r.unsolicited for r in results),
        truncated=sum(r.truncated for r in results),
        check_exceptions=_sum_counts(r.check_exceptions for r in results),
        connect_failures=_sum_counts(r.connect_failures for r in results),
    )


def _merge_seconds(
    parts: list[dict[str, Any]], endpoints: list[str]
) -> tuple[list[Second], list[SecondBins]]:
    """The workers' seconds as one: counts added, percentiles of the added bins."""
    by_key: dict[tuple[int, str], list[Second]] = {}
    for part in parts:
        for sec in part["seconds"]:
            by_key.setdefault((sec.t, sec.endpoint), []).append(sec)
    dense: dict[tuple[int, str], npt.NDArray[np.int64]] = {}
    for part in parts:
        for t, ep, index, counts in part["second_bins"]:
            key = (t, endpoints[ep])
            if key not in dense:
                dense[key] = np.zeros(BINS, dtype=np.int64)
            dense[key][index] += counts
    seconds = []
    for (t, name), secs in sorted(by_key.items()):
        bins = dense.get((t, name))
        nan = float("nan")
        p50, p95, p99 = (nan, nan, nan) if bins is None else dense_percentiles(bins, (50, 95, 99))
        seconds.append(
            Second(
                t=t,
                endpoint=name,
                requests=sum(s.requests for s in secs),
                errors=sum(s.errors for s in secs),
                ok=sum(s.ok for s in secs),
                p50=p50,
                p95=p95,
                p99=p99,
            )
        )
    merged = []
    for (t, name), bins in sorted(dense.items()):
        index = np.flatnonzero(bins)
        merged.append((t, endpoints.index(name), index, bins[index]))
    return seconds, merged


def _sum_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for key, n in c.items():
            total[key] = total.get(key, 0) + n
    return total


def run_parallel(
    target: str,
    scenario: Scenario,
    phases: Sequence[Phase],
    *,
    options: EngineOptions | None = None,
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_second: Callable[[SecondReport], None] | None = None,
) -> LoadResult:
    """:func:`run_load` over ``workers`` processes (``1``: in this process).

    ``on_start(t0)``: told when the first phase starts (``time.perf_counter_ns()``,
    one clock for every process) before it does, so that a caller knows every
    phase's boundary. ``on_second``: each second as it closes, with one worker
    only (the workers' seconds stay in their processes until the end).
    """
    options = options or EngineOptions()
    if workers == 1:
        return run_load(
            target,
            scenario,
            phases,
            options=options,
            progress=progress,
            on_start=on_start,
            on_second=on_second,
        )
    if not 1 <= workers <= 256:
        raise ConfigError(f"workers must be 1..256, got {workers}")
    per_worker = replace(options, max_connections=max(1, options.max_connections // workers))
    # fork: the scenario holds the user's functions, which need not be picklable.
    ctx = multiprocessing.get_context("fork")
    stop_signal = ctx.Value("i", 0, lock=False)
    start = ctx.Value("q", 0, lock=False)
    go = ctx.Event()
    procs, pipes = [], []
    for index in range(workers):
        parent, child = ctx.Pipe(duplex=False)
        scaled = None
        if index == 0 and progress is not None:

            def scaled(p: Progress, n: int = workers) -> None:
                progress(replace(p, rps=p.rps * n, errors=p.errors * n))

        proc = ctx.Process(
            target=_worker,
            args=(
                child,
                target,
                Scenario(*scenario.items, data=scenario.data, seed=scenario.seed + index),
                split_phases(phases, workers, index),
                replace(per_worker, worker=index, workers=workers),
                start,
                go,
                scaled,
                os.getpid(),
                stop_signal,
                on_second is not None,
            ),
            daemon=True,
        )
        proc.start()
        child.close()
        procs.append(proc)
        pipes.append(parent)

    def on_signal(name: str) -> None:
        stop_signal.value = signal.Signals[name].value

    parts: list[dict[str, Any]] = []
    errors: list[str] = []
    finished = False
    try:
        with stop_signals(on_signal):
            if _prepared(pipes, errors):
                # Every worker has built its run: one start, a moment ahead, for all.
                start.value = time.perf_counter_ns() + 50_000_000
                if on_start is not None:
                    on_start(start.value)
                go.set()
                _collect(pipes, parts, errors, on_second)
        finished = True
    finally:
        if not go.is_set():  # a worker failed to get ready: the others are let go, stopped
            stop_signal.value = signal.SIGTERM
            go.set()
        for proc in procs:
            # A worker that has sent its result exits at once; after a second
            # Ctrl-C nothing is waited for.
            proc.join(timeout=30 if finished else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if errors:
        raise LoadError(f"load worker failed: {errors[0]}")
    result = merge_parts(parts)
    if stop_signal.value:
        raise Interrupted(signal.Signals(stop_signal.value).name, result)
    return result
