"""The gate's statistics, one rule at a time (their error rates: test_simulation.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from perfsuite.stats.blocks import BlockSet
from perfsuite.stats.compare import CompareOptions, compare, run_metrics
from perfsuite.stats.levels import Mark, current_level
from perfsuite.stats.noise import MaxT, pool_noise

from .simulation import simulate_runs


def _by_metric(*args, **kwargs) -> dict:
    return {c.metric: c for c in compare(*args, **kwargs)}


def test_prediction_interval_matches_the_textbook() -> None:
    # Five baseline runs of p95 and a new run, one metric, no pooled noise: the
    # one-sided p-value and the change are those of a t prediction interval on the logs.
    rng = np.random.default_rng(2)
    runs = simulate_runs(6, rng=rng, run_noise=0.03, blocks=10, per_block=200)
    base, current = runs[:5], runs[5]
    result = _by_metric(current, base, CompareOptions(metrics=("p95",)), rng=rng)["p95"]
    logs = np.log([b.metric("p95") for b in base])
    n = len(logs)
    t = (math.log(current.metric("p95")) - logs.mean()) / (logs.std(ddof=1) * math.sqrt(1 + 1 / n))
    assert result.p_value == pytest.approx(st.t.sf(t, n - 1), rel=1e-9)
    assert result.baseline == pytest.approx(math.exp(logs.mean()))
    assert result.change == pytest.approx(current.metric("p95") / math.exp(logs.mean()) - 1)
    assert result.method == "prediction interval over 5 runs, own spread over 5 runs (df 4)"


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


def test_fewer_than_three_runs_give_no_verdict_without_pooled_noise() -> None:
    rng = np.random.default_rng(5)
    base = simulate_runs(2, rng=rng, run_noise=0.0, per_block=400)
    (big,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400, shift=0.5)
    for c in compare(big, base, rng=rng):
        assert c.verdict == "inconclusive"  # not regressed, and not unchanged either
        assert c.reason.startswith("2 baseline runs; 3 are needed")
        assert c.describe() == f"{c.metric} inconclusive: {c.reason}"


def test_fewer_than_three_runs_borrow_the_folders_pooled_noise() -> None:
    rng = np.random.default_rng(6)
    options = CompareOptions()
    others = [simulate_runs(5, rng=rng, run_noise=0.01, per_block=200) for _ in range(3)]
    prior = pool_noise([[run_metrics(r) for r in runs] for runs in others], options.metrics)
    assert prior.spread("p50").df == 3 * 4
    base = simulate_runs(2, rng=rng, run_noise=0.01, per_block=200)
    (same,) = simulate_runs(1, rng=rng, run_noise=0.01, per_block=200)
    (big,) = simulate_runs(1, rng=rng, run_noise=0.01, per_block=200, shift=0.5)
    assert _by_metric(big, base, prior=prior, rng=rng)["p50"].verdict == "regressed"
    p50 = _by_metric(same, base, prior=prior, rng=rng)["p50"]
    assert p50.verdict != "regressed"
    assert "spread pooled over 3 series (df 12)" in p50.method


def test_the_larger_spread_of_own_and_pooled_is_used() -> None:
    # A test much noisier than the rest of the folder is judged by its own spread.
    rng = np.random.default_rng(7)
    options = CompareOptions(metrics=("p50",))
    quiet = [simulate_runs(5, rng=rng, run_noise=0.002, per_block=200) for _ in range(3)]
    prior = pool_noise([[run_metrics(r, ("p50",)) for r in runs] for runs in quiet], ("p50",))
    noisy = simulate_runs(6, rng=rng, run_noise=0.2, per_block=200)
    result = _by_metric(noisy[-1], noisy[:-1], options, prior=prior, rng=rng)["p50"]
    assert "own spread over 5 runs" in result.method


def test_runs_too_short_to_judge() -> None:
    rng = np.random.default_rng(8)
    base = simulate_runs(5, rng=rng, run_noise=0.0, blocks=6, per_block=100)
    (big,) = simulate_runs(1, rng=rng, run_noise=0.0, blocks=6, per_block=100, shift=1.0)
    for c in compare(big, base, rng=rng):
        assert c.verdict == "inconclusive"
        assert c.reason.startswith("too short to judge (6 blocks of time; 10 are needed")
    # A lower minimum (a project's own choice) lets them be judged.
    short = CompareOptions(min_blocks=5)
    assert _by_metric(big, base, short, rng=rng)["p50"].verdict == "regressed"


def test_pooled_variance_is_the_textbook_one() -> None:
    series = [[{"p50": 10.0}, {"p50": 11.0}, {"p50": 12.0}], [{"p50": 5.0}, {"p50": 5.5}]]
    prior = pool_noise(series, ("p50",))
    logs = [np.log([10.0, 11.0, 12.0]), np.log([5.0, 5.5])]
    ss = sum(float(((x - x.mean()) ** 2).sum()) for x in logs)
    assert prior.spread("p50").df == 3
    assert prior.spread("p50").variance == pytest.approx(ss / 3)


def test_max_t_lies_between_one_test_and_bonferroni() -> None:
    alpha = 0.0025
    independent = MaxT(np.eye(4)).critical(alpha)
    sidak = st.norm.isf(1 - (1 - alpha) ** (1 / 4))
    assert independent == pytest.approx(sidak, abs=0.03)
    same = MaxT(np.ones((4, 4))).critical(alpha)  # four copies of one statistic
    assert same == pytest.approx(st.norm.isf(alpha), abs=0.03)
    corr = np.full((4, 4), 0.8) + 0.2 * np.eye(4)
    between = MaxT(corr).critical(alpha)
    assert same < between < independent <= st.norm.isf(alpha / 4)
    # Its p-value is the probability of the max beyond z: alpha at the critical value.
    assert MaxT(corr).p_value(between) == pytest.approx(alpha, rel=0.15)


def test_error_rate_is_judged_in_absolute_terms() -> None:
    rng = np.random.default_rng(6)
    base = simulate_runs(5, rng=rng, run_noise=0.0, per_block=400, error_rate=0.0)
    (worse,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400, error_rate=0.02)
    result = _by_metric(worse, base, rng=rng)["error_rate"]
    assert result.verdict == "regressed"
    assert result.change == pytest.approx(worse.metric("error_rate"))
    assert "pp" in result.describe()
    # A few errors more than none, well under the 0.1 pp tolerance, are no regression.
    (few,) = simulate_runs(1, rng=rng, run_noise=0.0, per_block=400, error_rate=0.0003)
    assert _by_metric(few, base, rng=rng)["error_rate"].verdict != "regressed"


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
    result = _by_metric(slower, base, rng=rng)["rps"]
    assert result.verdict == "regressed"
    assert result.change == pytest.approx(-0.2)


def test_no_data_is_inconclusive() -> None:
    rng = np.random.default_rng(8)
    base = simulate_runs(3, rng=rng, run_noise=0.0, per_block=50)
    blocks = 12
    empty = BlockSet(
        index=np.array([1], dtype=np.int64),
        counts=np.zeros((blocks, 1), dtype=np.int64),
        requests=np.zeros(blocks, dtype=np.int64),
        errors=np.zeros(blocks, dtype=np.int64),
        seconds=np.ones(blocks),
    )
    p95 = _by_metric(empty, base, rng=rng)["p95"]
    assert p95.verdict == "inconclusive"
    assert p95.reason == "no data"


S, R, B = Mark("same"), Mark("regressed"), Mark("improved")  # B: better


@pytest.mark.parametrize(
    ("marks", "level"),
    [
        ([S, S, S, S], [0, 1, 2, 3]),
        # One slow run is kept in the store but not mixed into the level it left.
        ([S, S, S, R], [0, 1, 2]),
        ([S, S, S, R, S, S], [0, 1, 2, 4, 5]),
        # Two in a row, or one confirmed by its rerun: a new level starts there.
        ([S, S, S, R, R], [3, 4]),
        ([S, S, S, Mark("regressed", True)], [3]),
        ([S, S, S, R, R, S, B, S], [3, 4, 5, 7]),
        # Runs saved before the gate marked them (schema 1) are a level of their own.
        ([Mark(), Mark(), Mark()], [0, 1, 2]),
    ],
)
def test_the_current_level(marks: list[Mark], level: list[int]) -> None:
    assert current_level(marks) == level


def test_the_level_restarts_at_a_change_point() -> None:
    # A step of 2x the gate did not flag (say, judged inconclusive each time).
    p50 = [1.0, 1.01, 0.99, 1.0, 2.0, 2.02, 1.98, 2.01]
    assert current_level([S] * 8, [p50]) == [4, 5, 6, 7]
    # A flat series has none.
    assert current_level([S] * 8, [[1.0, 1.01, 0.99, 1.0, 1.0, 1.02, 0.98, 1.01]]) == list(range(8))


def test_an_slo_interval_needs_ten_blocks() -> None:
    from perfsuite.stats.slo import evaluate, parse_slo

    rng = np.random.default_rng(9)
    (short,) = simulate_runs(1, rng=rng, run_noise=0.0, blocks=6, per_block=100)
    (long,) = simulate_runs(1, rng=rng, run_noise=0.0, blocks=12, per_block=100)
    objectives = parse_slo({"p95": "1s"})
    (a,) = evaluate(objectives, lambda endpoint, phase: short)
    (b,) = evaluate(objectives, lambda endpoint, phase: long)
    assert a.passed
    assert "(too short for an interval: 6 blocks)" in a.describe()
    assert "(95 % CI " in b.describe()
