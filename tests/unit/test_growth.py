"""The growth check (perfsuite.stats.growth) on simulated counts that are not drawn
from its model: counts that follow the traffic, fill once, drift, jump; and leaks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from perfsuite.stats.growth import GrowthRule, GrowthVerdict, judge_growth

Shape = Callable[[np.random.Generator, np.ndarray], np.ndarray]
STEADY = 30  # seconds, as the ci profile's steady phase


def _judge(rng: np.random.Generator, level: float, shape: Shape, after: float) -> GrowthVerdict:
    """``shape`` gives the steady samples; ``after`` is the level the count settles at."""
    t = np.arange(STEADY, dtype=float)
    before = level + rng.integers(-1, 2, 5)
    tail = after + rng.integers(-1, 2, 5)
    return judge_growth("count", before=before, steady=(t, shape(rng, t)), after=tail)


def _traffic(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    # A pool following bursty traffic: in use ~ Poisson of a rate with heavy-tailed bursts.
    rate = 20 * np.exp(rng.standard_t(3, t.size) * 0.3)
    return rng.poisson(np.clip(rate, 0, 200)).astype(float)


def _ar1_drift(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    # Serially correlated wandering (AR(1), phi 0.9): what fools a trend test alone.
    x = np.zeros(t.size)
    for i in range(1, t.size):
        x[i] = 0.9 * x[i - 1] + rng.normal(0, 3)
    return 60 + x


def _fills_during_steady(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    # A thread pool that grows to its cap of 32 during the phase and stays there.
    return np.minimum(8 + t * 2.0, 32) + rng.integers(0, 2, t.size)


@pytest.mark.parametrize(
    ("name", "level", "shape", "after"),
    [
        ("a pool that follows bursty traffic, back to 4 after", 4, _traffic, 4),
        ("AR(1) drift that ends back at its level", 60, _ar1_drift, 60),
        ("a count that steps up once at the start and stays", 10, lambda r, t: 40 + 0 * t, 40),
    ],
)
def test_counts_that_do_not_leak_are_not_called_leaks(
    name: str, level: float, shape: Shape, after: float
) -> None:
    rng = np.random.default_rng(11)
    trials = 2000
    alarms = sum(_judge(rng, level, shape, after).leaked for _ in range(trials))
    # The bound stated in the README: no false alarm. 2,000 trials each.
    assert alarms == 0, f"{name}: {alarms} of {trials}"


def test_a_pool_that_fills_and_stays_full_is_judged_by_its_rise() -> None:
    # Growth that saturates at a cap and stays is a rise with a trend: the check calls it
    # growth that stayed, as it would be after a real leak up to the pool's size. What
    # keeps this from firing in practice is the warm-up before the measured phases.
    rng = np.random.default_rng(3)
    verdict = _judge(rng, 8, _fills_during_steady, 32)
    assert verdict.leaked
    assert verdict.after == pytest.approx(32, abs=1)


@pytest.mark.parametrize("per_second", [0.5, 2.0, 50.0])
def test_a_leak_is_found_with_its_rate(per_second: float) -> None:
    rng = np.random.default_rng(5)
    found = 0
    slopes = []
    for _ in range(500):
        # Leaked tasks pile up at the leak's rate, over a count that follows traffic.
        def leaking(r: np.random.Generator, t: np.ndarray) -> np.ndarray:
            return 10 + per_second * t + r.poisson(3, t.size)

        end = 10 + per_second * STEADY
        verdict = _judge(rng, 10, leaking, end)
        found += verdict.leaked
        slopes.append(verdict.slope)
    # 0.5/s over 30 s is +15: above the 5 a leak must reach, and always found.
    assert found == 500
    assert float(np.median(slopes)) == pytest.approx(per_second, rel=0.1)


def test_a_leak_below_the_minimum_rise_is_not_called() -> None:
    rng = np.random.default_rng(9)
    verdict = _judge(rng, 10, lambda r, t: 10 + 0.1 * t, 13)  # +3 over the phase
    assert not verdict.leaked
    assert verdict.verdict == "ok"


def test_the_text_reads_as_the_seeds_diagnosis() -> None:
    t = np.arange(40, dtype=float)
    verdict = judge_growth(
        "goroutines", before=[12, 12, 13], steady=(t, 12 + 12.3 * t), after=[4130, 4130]
    )
    assert verdict.leaked
    text = verdict.text()
    assert text.startswith("goroutines grew +12.3/s during steady (Mann-Kendall p = ")
    assert text.endswith("and stayed at 4,130 after the load (before: 12)")


def test_too_few_samples_or_no_level_after_is_not_judged() -> None:
    short = judge_growth("threads", before=[4], steady=([0, 1, 2], [4, 5, 6]), after=[6])
    assert short.verdict == "not judged"
    assert "3 steady samples; 8 are needed" in short.text()
    t = np.arange(20, dtype=float)
    no_after = judge_growth("fds", before=[4], steady=(t, 4 + t), after=[])
    assert no_after.verdict == "not judged"
    assert "no samples after the load" in no_after.text()


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        GrowthRule(alpha=0)
    with pytest.raises(ValueError, match="min_samples"):
        GrowthRule(min_samples=2)
