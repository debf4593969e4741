"""Synthetic runs for the statistics' proofs: log-normal latencies with AR(1)
autocorrelation inside a run and a log-normal scale between runs."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.hdr import hdr_indices


def simulate_runs(
    runs: int,
    *,
    rng: np.random.Generator,
    run_noise: float,
    shift: float = 0.0,
    blocks: int = 30,
    per_block: int = 100,
    median_ms: float = 20.0,
    sigma: float = 0.5,
    phi: float = 0.7,
    error_rate: float = 0.0,
) -> list[BlockSet]:
    """``runs`` runs; each run's latencies are scaled by exp(N(0, run_noise)) * (1 + shift)."""
    n = blocks * per_block
    shocks = rng.standard_normal((runs, n)) * sigma * np.sqrt(1 - phi**2)
    ar = lfilter([1.0], [1.0, -phi], shocks, axis=1)  # stationary sd = sigma
    scale = rng.normal(0.0, run_noise, size=(runs, 1)) + np.log1p(shift)
    micros = np.exp(np.log(median_ms * 1000.0) + scale + ar).astype(np.int64)
    index = hdr_indices(micros).reshape(runs, blocks, per_block)
    out = []
    for r in range(runs):
        union = np.unique(index[r])
        counts = np.zeros((blocks, union.size), dtype=np.int64)
        for b in range(blocks):
            u, c = np.unique(index[r, b], return_counts=True)
            counts[b, np.searchsorted(union, u)] = c
        errors = rng.binomial(per_block, error_rate, size=blocks).astype(np.int64)
        out.append(
            BlockSet(
                index=union,
                counts=counts,
                requests=np.full(blocks, per_block, dtype=np.int64),
                errors=errors,
                seconds=np.ones(blocks),
            )
        )
    return out
