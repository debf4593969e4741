"""Change points, the baseline band and the knee: pure statistics on planted series."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats as st

from perfsuite.stats.changepoint import change_points, energy_split
from perfsuite.stats.knee import find_knee
from perfsuite.stats.trend import prediction_band


def _noisy(rng: np.random.Generator, level: float, n: int, noise: float) -> list[float]:
    return list(level * np.exp(rng.normal(0.0, noise, n)))


def test_a_planted_step_is_found_at_its_run() -> None:
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(200):
        series = _noisy(rng, 10.0, 15, 0.05) + _noisy(rng, 12.0, 10, 0.05)  # +20 % at run 15
        cps = change_points(series)
        found += any(abs(c.index - 15) <= 1 for c in cps)
    # The step is 3.6 noise sd: found nearly always, at its run or a neighbour.
    assert found >= 190


def test_noise_alone_rarely_gives_a_change_point() -> None:
    rng = np.random.default_rng(11)
    alarms = sum(bool(change_points(_noisy(rng, 10.0, 30, 0.06))) for _ in range(300))
    # p < 0.001 per split, but the split is chosen to fit the noise (as in
    # Otava): about 4 % of noise-only histories of 30 runs show one.
    assert alarms <= 18


def test_two_changes_report_neighbouring_levels() -> None:
    rng = np.random.default_rng(3)
    series = _noisy(rng, 1.0, 20, 0.03) + _noisy(rng, 2.0, 15, 0.03) + _noisy(rng, 1.2, 15, 0.03)
    first, second = change_points(series)
    assert (first.index, second.index) == (20, 35)
    assert first.before == pytest.approx(1.0, rel=0.03)
    assert first.after == pytest.approx(2.0, rel=0.03)
    assert second.after == pytest.approx(1.2, rel=0.03)
    assert first.change == pytest.approx(1.0, rel=0.06)


def test_absolute_scale_for_error_rates_with_zeros() -> None:
    series = [0.0] * 8 + [0.02, 0.021, 0.019, 0.02, 0.022, 0.02]
    (cp,) = change_points(series, log=False)
    assert (cp.index, cp.before) == (8, 0.0)
    with pytest.raises(ValueError, match="positive"):
        change_points(series, log=True)


def test_energy_split_maximises_the_energy_distance() -> None:
    # Brute force over every split, straight from the definition.
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 1, 12), rng.normal(2, 1, 9)])

    def q(tau: int) -> float:
        a, b = x[:tau], x[tau:]
        cross = np.abs(a[:, None] - b[None, :]).mean()
        wa = np.abs(a[:, None] - a[None, :]).sum() / (a.size * (a.size - 1))
        wb = np.abs(b[:, None] - b[None, :]).sum() / (b.size * (b.size - 1))
        return a.size * b.size / x.size * (2 * cross - wa - wb)

    assert energy_split(x) == max(range(3, x.size - 2), key=q)
    assert energy_split([1.0, 2.0, 3.0]) is None


def test_prediction_band_covers_the_next_run_at_its_level() -> None:
    rng = np.random.default_rng(2)
    inside = 0
    for _ in range(2000):
        runs = _noisy(rng, 5.0, 11, 0.1)
        band = prediction_band(runs[:10])
        assert band is not None
        inside += band.low <= runs[10] <= band.high
    assert 0.965 <= inside / 2000 <= 0.995  # level 0.98
    assert prediction_band([1.0, 2.0]) is None
    # The band is the gate's t-based prediction interval.
    runs = [1.0, 1.1, 0.9, 1.05]
    logs = np.log(runs)
    half = st.t.ppf(0.99, 3) * logs.std(ddof=1) * np.sqrt(1 + 1 / 4)
    band = prediction_band(runs)
    assert band is not None
    assert band.high == pytest.approx(np.exp(logs.mean() + half))


def test_knee_is_found_where_latency_starts_to_climb() -> None:
    rng = np.random.default_rng(0)
    rates = np.linspace(100, 1000, 90)
    latency = np.where(rates < 600, 2.0, 2.0 * np.exp((rates - 600) / 150))
    knee = find_knee(rates, latency * np.exp(rng.normal(0, 0.1, rates.size)))
    assert knee is not None
    assert 540 <= knee.rate <= 660
    assert knee.flat == pytest.approx(2.0, rel=0.1)


def test_no_knee_when_latency_stays_flat_or_the_rate_does_not_move() -> None:
    rng = np.random.default_rng(1)
    rates = np.linspace(100, 1000, 60)
    assert find_knee(rates, 2.0 * np.exp(rng.normal(0, 0.1, 60))) is None
    assert find_knee([500.0] * 20, np.linspace(1, 20, 20)) is None
    assert find_knee([1.0, 2.0, 3.0], [1.0, 1.0, 9.0]) is None


def test_identical_values_are_judged_without_a_warning() -> None:
    # A metric that does not move (an error rate of 0, a capped rate) is normal:
    # no "catastrophic cancellation" warning, and the right answer.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert change_points([2.0] * 12) == []
        (step,) = change_points([2.0] * 10 + [3.0] * 10)
        assert (step.index, step.p_value) == (10, 0.0)
        assert step.before == pytest.approx(2.0)
        assert step.after == pytest.approx(3.0)
        # One side flat, the other not: Welch's test with a zero variance on one side.
        (mixed,) = change_points([2.0] * 10 + [2.9, 3.0, 3.1] * 4)
        assert mixed.index == 10
        assert mixed.p_value < 1e-6
        assert change_points([0.0] * 8 + [0.0, 0.001] * 4, log=False) == []
