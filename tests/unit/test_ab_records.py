"""An A/B entry of the run record: each round's replica lag stays with its pair."""

from __future__ import annotations

import numpy as np

from perfsuite.session.ab import Pairs
from perfsuite.stats.lag import ReplicaLag, lag_by_phase
from perfsuite.store.runs import encode_pairs


def _round(lag_ms: float, seed: int) -> ReplicaLag:
    """One replica's heartbeats over a 10 s measured phase, 100 ms apart, around ``lag_ms``."""
    rng = np.random.default_rng(seed)
    start = 1_700_000_000_000_000
    written = start + np.arange(100, dtype=np.int64) * 100_000
    lag = (rng.lognormal(np.log(lag_ms * 1000), 0.3, 100)).astype(np.int64)
    phases = lag_by_phase(
        "replica 1 (127.0.0.1:40123)", written, lag, np.ones(100, bool),
        [("steady", "measure", 0.0, 10.0)], start,
    )  # fmt: skip
    return ReplicaLag(phases=tuple(phases), seconds=())


def test_a_round_without_lag_is_null_and_keeps_the_later_pairs_in_place() -> None:
    """A base build given by URL is not watched, and a round can lack a replica: its
    values are null, so that the n-th values of the two sides stay the n-th pair."""
    base = [_round(5, 1), None, _round(50, 3)]
    candidate = [None, _round(20, 5), _round(500, 6)]
    pairs = Pairs(base_label="HEAD~1", base_lag=base, candidate_lag=candidate)
    encoded = encode_pairs([pairs])
    assert encoded is not None
    (load,) = encoded["loads"]
    p50 = load["lag"]["replica 1"]["p50"]
    assert [v is None for v in p50["base"]] == [False, True, False]
    assert [v is None for v in p50["candidate"]] == [True, False, False]
    # Each value is its own round's: ordered as the rounds' lags were (5, 50; 20, 500 ms).
    assert 3 < p50["base"][0] < 8 < 30 < p50["base"][2] < 80, p50
    assert 12 < p50["candidate"][1] < 30 < 300 < p50["candidate"][2] < 800, p50
