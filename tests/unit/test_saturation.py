"""The saturation judgement on the counters an engine reports (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from perfsuite.load.saturation import GeneratorStats, judge_saturation

# CI run of 3f1250f: a 5 % CPU generator whose process was not scheduled for a
# moment while the machine ran other tests: 20 of 900 sends late, a connection free.
STARVED = GeneratorStats(
    measured_sends=900,
    sends=950,
    late=44,
    late_generator=20,
    idle_rate=9090.0,
    lag_p99_ms=3.7,
    cpu=0.05,
)


def judge(stats: GeneratorStats) -> tuple[bool, str]:
    return judge_saturation(stats, share_limit=0.01, late_threshold_ms=10.0)


def test_an_idle_generator_that_was_not_run_is_not_the_bottleneck() -> None:
    assert judge(STARVED) == (False, "")


@pytest.mark.parametrize(
    ("change", "sign"),
    [
        ({"cpu": 0.88, "idle_rate": 0.0}, "although a connection was free"),  # CPU-bound
        ({"lag_p99_ms": 25.0}, "although a connection was free"),  # its loop held up
        ({"late_generator": 0, "lag_p99_ms": 80.0}, "the event loop itself was held up"),
        ({"late_generator": 0, "cpu": 0.95, "idle_rate": 3.0}, "too near its limit"),
        # Measured: open model at 60,000 req/s on one core, 42 % of sends late behind
        # connections that looked busy, none with one free; CPU 86 %.
        ({"late_generator": 0, "late": 400, "cpu": 0.86}, "too near its limit"),
    ],
)
def test_a_busy_generator_is(change: dict[str, float], sign: str) -> None:
    saturated, reason = judge(replace(STARVED, **change))  # type: ignore[arg-type]
    assert saturated
    assert sign in reason
    assert "the generator, not the service, was the bottleneck" in reason


def test_a_handful_of_late_sends_is_noise() -> None:
    assert not judge(replace(STARVED, late_generator=9, late=9, cpu=0.9, lag_p99_ms=30.0))[0]
