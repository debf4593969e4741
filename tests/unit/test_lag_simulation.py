"""The lag gate's false alarms and power, by simulation of a replica's queue
(:mod:`tests.unit.lag_simulation`: not the gate's model), through the production
path from heartbeats to verdicts."""

from __future__ import annotations

import pytest

from .lag_simulation import ab_detections, ab_false_alarms, detections, false_alarms

SESSIONS = 1000  # of 4 tests each: a 1 % bound is 10 sessions, and can fail


@pytest.mark.parametrize("regime", ["neighbour", "drift"])
@pytest.mark.parametrize("work_sd", [0.5, 1.0], ids=["quiet", "busy"])
def test_a_suite_compared_with_itself_rarely_says_its_lag_regressed(
    regime: str, work_sd: float
) -> None:
    """A/A, 5 baseline runs of 40 s, run-to-run noise 15 % with a noisy neighbour or
    drift: sessions with any lag metric regressed (measured with another seed: quiet
    0 and 0, busy 0 and 1 of 1,000; each test's own spread gave 15 for busy drift).
    The bound allows the sampling error of 1,000 sessions above 1 %."""
    found = false_alarms(regime, SESSIONS, seed=2026, noise=0.15, work_sd=work_sd)
    assert found <= 15, f"{found} of {SESSIONS} sessions"


def test_a_replica_three_times_slower_is_caught() -> None:
    """A quiet replica whose apply and backlog are 3x slower: p95 (400 heartbeats a
    run) regressed in at least 90 % of 200 tests (measured 98 %)."""
    caught = detections("lognormal", 200, seed=3, noise=0.15, shift=2.0)
    assert caught["p95"] >= 180, caught
    assert caught["p99"] == 0, caught  # 400 heartbeats: too few to judge p99


AB_SESSIONS = 1000  # of 4 A/B tests of 10 pairs each


@pytest.mark.parametrize("replica", ["quiet", "behind"])
def test_an_ab_suite_of_one_build_on_both_sides_rarely_says_its_lag_regressed(
    replica: str,
) -> None:
    """A/A in A/B pairs of 10 s rounds, the replica's speed 15 % noisy from round to
    round (half of it shared by a pair), one test per noise regime: sessions with any
    lag metric regressed (benchmarks/lag_ab_power.py: 0 of 1,000 in every case). A
    replica behind by tens of ms in some rounds is above the 10 ms floor, where only
    the 25 % tolerance and the pairs' own spread hold it."""
    found = ab_false_alarms(replica, AB_SESSIONS, seed=2027, seconds=10)
    assert found <= 15, f"{found} of {AB_SESSIONS} sessions"


def test_an_ab_candidate_whose_replica_is_three_times_slower_is_caught() -> None:
    """A busy replica, three times slower in the candidate's rounds: p50 regressed in
    at least 90 % of 200 A/B tests of 10 pairs of 10 s (measured 100 %); p95 needs
    400 heartbeats a round and is not judged on 100."""
    caught = ab_detections("busy", 200, seed=4, shift=2.0, seconds=10)
    assert caught["p50"] >= 180, caught
    assert caught["p95"] == 0, caught
