"""Pure statistics, checked against the hdrhistogram library and scipy."""

from __future__ import annotations

import numpy as np
import pytest

from perfsuite.stats.blocks import BlockSet, bootstrap_metric
from perfsuite.stats.compare import stack
from perfsuite.stats.hdr import hdr_indices, new_histogram, record_many

from .simulation import simulate_runs


def one_block(values: np.ndarray) -> BlockSet:
    index, counts = np.unique(hdr_indices(values), return_counts=True)
    return BlockSet(
        index=index,
        counts=counts[None, :].astype(np.int64),
        requests=np.array([values.size]),
        errors=np.array([0]),
        seconds=np.array([1.0]),
    )


def test_block_metrics_match_the_hdr_library() -> None:
    values = (np.random.default_rng(4).lognormal(9, 1.2, 20_000)).astype(np.int64) + 1
    hist = new_histogram()
    record_many(hist, values)
    blocks = one_block(values)
    for name, q in [("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p999", 99.9)]:
        assert blocks.metric(name) == hist.get_value_at_percentile(q) / 1000.0
    assert blocks.metric("mean") == pytest.approx(hist.get_mean_value() / 1000.0, rel=1e-12)
    assert blocks.metric("max") == hist.get_max_value() / 1000.0 or blocks.metric(
        "max"
    ) == pytest.approx(hist.get_highest_equivalent_value(hist.get_max_value()) / 1000.0)


def test_stack_and_regroup_keep_every_count() -> None:
    runs = simulate_runs(3, rng=np.random.default_rng(1), run_noise=0.0, blocks=20, per_block=50)
    pooled = stack(runs)
    assert pooled.n == 60
    assert pooled.counts.sum() == 3 * 20 * 50
    small = pooled.regrouped(7)
    assert small.n == 7
    assert small.counts.sum() == pooled.counts.sum()
    assert small.metric("p95") == pooled.metric("p95")


def test_bootstrap_interval_covers_the_truth() -> None:
    # i.i.d. blocks of a known distribution: the 95 % interval of the median
    # must cover the true median about 95 % of the time.
    rng = np.random.default_rng(11)
    true_median_ms = 20.0
    covered = 0
    trials = 200
    for _ in range(trials):
        (run,) = simulate_runs(1, rng=rng, run_noise=0.0, phi=0.0, blocks=30, per_block=60)
        boot = bootstrap_metric(run, "p50", resamples=400, rng=rng)
        low, high = np.quantile(boot, [0.025, 0.975])
        covered += low <= true_median_ms * 1.001 and true_median_ms * 0.999 <= high
    assert 0.88 <= covered / trials <= 0.99
