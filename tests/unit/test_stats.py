"""Pure statistics, checked against the hdrhistogram library and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from perfsuite.stats.blocks import BlockSet, bootstrap_metric
from perfsuite.stats.compare import CompareOptions, compare, stack
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


def test_prediction_interval_matches_the_textbook() -> None:
    # Five baseline runs of p95 and a new run: the one-sided p-value and the
    # change must be those of a t-based prediction interval on the logs.
    rng = np.random.default_rng(2)
    runs = simulate_runs(6, rng=rng, run_noise=0.03, blocks=10, per_block=200)
    base, current = runs[:5], runs[5]
    result = {
        c.metric: c
        for c in compare(current, base, CompareOptions(metrics=("p95",), resamples=200), rng=rng)
    }["p95"]
    logs = np.log([b.metric("p95") for b in base])
    n = len(logs)
    t = (math.log(current.metric("p95")) - logs.mean()) / (logs.std(ddof=1) * math.sqrt(1 + 1 / n))
    assert result.p_value == pytest.approx(st.t.sf(t, n - 1), rel=1e-9)
    assert result.baseline == pytest.approx(math.exp(logs.mean()))
    assert result.change == pytest.approx(current.metric("p95") / math.exp(logs.mean()) - 1)
    assert result.method == "prediction interval over 5 runs"


@pytest.mark.parametrize(
    ("shift", "expected"),
    [(0.0, "unchanged"), (0.5, "regressed"), (-0.4, "improved")],
)
def test_verdicts_with_history(shift: float, expected: str) -> None:
    rng = np.random.default_rng(3)
    base = simulate_runs(8, rng=rng, run_noise=0.005, per_block=400)
    (current,) = simulate_runs(1, rng=rng, run_noise=0.005, per_block=400, shift=shift)
    verdicts = {c.metric: c.verdict for c in compare(current, base, rng=rng)}
    assert verdicts["p50"] == expected
    assert verdicts["p95"] == expected
    assert verdicts["rps"] == "unchanged"  # throughput did not move


def test_few_runs_use_the_bootstrap_and_need_the_whole_interval_beyond_tolerance() -> None:
    rng = np.random.default_rng(5)
    (base,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400)
    (big,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400, shift=0.5)
    (small,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400, shift=0.06)
    big_v = {c.metric: c for c in compare(big, [base], rng=rng)}
    assert big_v["p50"].verdict == "regressed"
    assert big_v["p50"].method == "block bootstrap"
    small_v = {c.metric: c for c in compare(small, [base], rng=rng)}
    # +6 % against a 5 % tolerance: significant perhaps, but not wholly beyond it.
    assert small_v["p50"].verdict != "regressed"


def test_error_rate_is_compared_in_absolute_terms() -> None:
    rng = np.random.default_rng(6)
    base = simulate_runs(5, rng=rng, run_noise=0.0, per_block=400, error_rate=0.0)
    (worse,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400, error_rate=0.02)
    result = {c.metric: c for c in compare(worse, base, rng=rng)}["error_rate"]
    assert result.verdict == "regressed"
    assert result.change == pytest.approx(worse.metric("error_rate"))
    assert "pp" in result.describe()


def test_throughput_lower_is_worse() -> None:
    rng = np.random.default_rng(7)
    base = simulate_runs(5, rng=rng, run_noise=0.0, per_block=400)
    (cur,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400)
    slower = BlockSet(
        index=cur.index,
        counts=cur.counts,
        requests=cur.requests,
        errors=cur.errors,
        seconds=cur.seconds * 1.25,  # the same requests took 25 % longer: -20 % req/s
    )
    result = {c.metric: c for c in compare(slower, base, rng=rng)}["rps"]
    assert result.verdict == "regressed"
    assert result.change == pytest.approx(-0.2)


def test_no_data_is_inconclusive() -> None:
    rng = np.random.default_rng(8)
    base = simulate_runs(3, rng=rng, run_noise=0.0, per_block=50)
    empty = BlockSet(
        index=np.array([1], dtype=np.int64),
        counts=np.zeros((1, 1), dtype=np.int64),
        requests=np.array([0]),
        errors=np.array([0]),
        seconds=np.array([1.0]),
    )
    assert {c.verdict for c in compare(empty, base, rng=rng) if c.metric == "p95"} == {
        "inconclusive"
    }
