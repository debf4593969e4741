"""A load result as stored JSON, and back: HDR histograms, blocks, summaries.

Each cell also keeps its per-second timeline (requests, errors, p50, p99)
for the report. Blocks are kept per phase x endpoint, grouped into at most 30 stretches of
equal time per phase (the unit of the statistics), as sparse HDR bin counts
packed with zlib: a ten-minute run stays a few tens of kB per endpoint.
"""

from __future__ import annotations

import base64
import itertools
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from perfsuite.errors import StoreError
from perfsuite.load.result import LoadResult
from perfsuite.stats.blocks import Block, BlockSet, merge_blocks, metric_of_rows
from perfsuite.stats.hdr import encode

__all__ = ["StoredLoad", "decode_blocks", "decode_load", "encode_blocks", "encode_load"]

MAX_BLOCKS = 30


def _pack(values: np.ndarray[Any, Any]) -> str:
    return base64.b64encode(zlib.compress(values.astype("<i8").tobytes(), 6)).decode("ascii")


def _unpack(text: str) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<i8").astype(np.int64)


def group_by_time(blocks: Iterable[Block], start: float, duration: float) -> list[Block]:
    """Merge per-second blocks into at most ``MAX_BLOCKS`` stretches of equal time."""
    width = max(1, math.ceil(duration / MAX_BLOCKS))
    first = math.floor(start)
    keyed = [
        Block(
            t=first + (b.t - first) // width * width,
            seconds=b.seconds,
            requests=b.requests,
            errors=b.errors,
            index=b.index,
            counts=b.counts,
            fail_index=b.fail_index,
            fail_counts=b.fail_counts,
        )
        for b in blocks
    ]
    return merge_blocks(keyed, same_span=False)


def _concat(arrays: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    return np.concatenate(arrays) if arrays else np.zeros(0)


def encode_blocks(blocks: list[Block]) -> dict[str, Any]:
    """Blocks as JSON-ready data (bins packed)."""
    data = {
        "t": [b.t for b in blocks],
        "seconds": [round(b.seconds, 6) for b in blocks],
        "requests": [b.requests for b in blocks],
        "errors": [b.errors for b in blocks],
        "sizes": [int(b.index.size) for b in blocks],
        "index": _pack(_concat([b.index for b in blocks])),
        "counts": _pack(_concat([b.counts for b in blocks])),
    }
    if any(b.fail_index.size for b in blocks):
        # The failed requests' bins (timeouts, errors): absent when none failed,
        # and in records written before failed requests had latencies.
        data["fail_sizes"] = [int(b.fail_index.size) for b in blocks]
        data["fail_index"] = _pack(_concat([b.fail_index for b in blocks]))
        data["fail_counts"] = _pack(_concat([b.fail_counts for b in blocks]))
    return data


def _split(data: Mapping[str, Any], prefix: str) -> list[tuple[np.ndarray[Any, Any], ...]]:
    sizes = data[f"{prefix}sizes"]
    index, counts = _unpack(data[f"{prefix}index"]), _unpack(data[f"{prefix}counts"])
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return [(index[a:b], counts[a:b]) for a, b in itertools.pairwise(edges)]


def decode_blocks(data: Mapping[str, Any]) -> list[Block]:
    """The inverse of :func:`encode_blocks`."""
    bins = _split(data, "")
    empty = np.zeros(0, dtype=np.int64)
    fails = _split(data, "fail_") if "fail_sizes" in data else [(empty, empty)] * len(bins)
    return [
        Block(
            t=int(t),
            seconds=float(sec),
            requests=int(req),
            errors=int(err),
            index=bins[i][0],
            counts=bins[i][1],
            fail_index=fails[i][0],
            fail_counts=fails[i][1],
        )
        for i, (t, sec, req, err) in enumerate(
            zip(data["t"], data["seconds"], data["requests"], data["errors"], strict=True)
        )
    ]


def _series(blocks: list[Block]) -> dict[str, list[Any]]:
    """Per-second timeline of one cell: requests, errors, p50 and p99 (ms)."""
    if not blocks:
        return {"t": [], "requests": [], "errors": [], "p50": [], "p99": []}
    # One row per second: the block set's own metrics, all seconds at once.
    rows = BlockSet.from_blocks(blocks, max_blocks=len(blocks))

    def metric(name: str) -> list[float | None]:
        values = metric_of_rows(
            name, rows.counts, rows.requests, rows.errors, rows.seconds, rows.index
        )
        return [None if math.isnan(v) else round(float(v), 4) for v in values]

    return {
        "t": sorted(b.t for b in blocks),
        "requests": rows.requests.tolist(),
        "errors": rows.errors.tolist(),
        "p50": metric("p50"),
        "p99": metric("p99"),
    }


def _summary(result: LoadResult, endpoint: str, phase: str) -> dict[str, float | None]:
    s = result.summary(endpoint=endpoint, phase=phase)

    def num(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 6)

    return {
        "requests": s.requests,
        "answered": s.answered,
        "ok": s.ok,
        "errors": s.errors,
        "error_rate": num(s.error_rate),
        "rps": num(s.ok_rps),
        "answered_rps": num(s.answered_rps),
        **{k: num(v) for k, v in s.latency.as_dict().items()},
        **{f"{k}_ok": num(v) for k, v in s.latency_ok.as_dict().items()},
    }


def encode_load(result: LoadResult) -> dict[str, Any]:
    """A load result as JSON-ready data."""
    spans = {p.name: (p.start, p.duration) for p in result.phases}
    return {
        "target": result.target,
        "phases": [
            {
                "name": p.name,
                "role": p.role,
                "model": p.model,
                "description": p.description,
                "start": p.start,
                "duration": p.duration,
                "target_rate": p.target_rate,
                "users": p.users,
            }
            for p in result.phases
        ],
        "cells": [
            {
                "phase": c.phase,
                "endpoint": c.endpoint,
                "requests": c.requests,
                "errors": dict(c.errors),
                "statuses": {str(k): v for k, v in c.statuses.items()},
                "latency": encode(c.latency),
                "service_time": encode(c.service_time),
                "blocks": encode_blocks(group_by_time(c.blocks, *spans[c.phase])),
                "summary": _summary(result, c.endpoint, c.phase),
                "journey": c.journey,
                "series": _series(list(c.blocks)),
                # Only with a stale= predicate: its stale reads among the successes.
                **({"stale": c.stale} if c.stale is not None else {}),
            }
            for c in result.cells
        ],
        "generator": {
            "late": result.late,
            "dropped": result.dropped,
            "cpu": round(result.generator_cpu, 4),
            "loop_lag_p99_ms": round(result.loop_lag_p99_ms, 4),
            "loop_stall_max_ms": round(max(result.loop_stalls_ms, default=0.0), 4),
            "wall_time": round(result.wall_time, 4),
            "stop_reason": result.stop_reason,
            "abandoned": result.abandoned,
            "max_connections": result.max_connections,
            "at_limit": result.at_limit,
            "queue_wait_max_ms": round(result.queue_wait_max_ms, 3),
            "unsolicited": result.unsolicited,
            "truncated": result.truncated,
            "check_exceptions": dict(result.check_exceptions),
            "connect_failures": dict(result.connect_failures),
        },
    }


@dataclass(frozen=True)
class StoredLoad:
    """A stored load, enough to compare with: its phases, cells and blocks."""

    phases: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    blocks: dict[tuple[str, str], list[Block]]

    @property
    def endpoints(self) -> list[str]:
        """Endpoint names, in stored order."""
        return list(dict.fromkeys(c["endpoint"] for c in self.cells))

    def blockset(
        self, endpoint: str | None = None, roles: Iterable[str] = ("measure",)
    ) -> BlockSet:
        """The blocks of an endpoint (or all) over the phases of ``roles``."""
        roles = set(roles)
        chosen = [p["name"] for p in self.phases if p["role"] in roles]
        journeys = {c["endpoint"] for c in self.cells if c.get("journey")}
        blocks: list[Block] = []
        for phase in chosen:
            cells = [
                b
                for (ph, ep), bl in self.blocks.items()
                if ph == phase and (ep == endpoint if endpoint is not None else ep not in journeys)
                for b in bl
            ]
            blocks.extend(merge_blocks(cells, same_span=True))
        return BlockSet.from_blocks(merge_blocks(blocks, same_span=False), max_blocks=MAX_BLOCKS)


def decode_load(data: Mapping[str, Any]) -> StoredLoad:
    """Inverse of :func:`encode_load` (the parts the comparison needs)."""
    try:
        blocks = {(c["phase"], c["endpoint"]): decode_blocks(c["blocks"]) for c in data["cells"]}
        return StoredLoad(phases=list(data["phases"]), cells=list(data["cells"]), blocks=blocks)
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise StoreError(f"a stored load is malformed: {type(exc).__name__}: {exc}") from exc
