"""perfsuite's default objective (error_rate at most 1 %), overridden and removed."""

from __future__ import annotations

import pytest

from perfsuite import ConfigError
from perfsuite.gate import objectives_for


def _limits(defaults: dict[str, object], *marks: dict[str, object]) -> dict[tuple, float]:
    return {(o.metric, o.endpoint, o.phase): o.limit for o in objectives_for(defaults, marks)}


def test_every_perf_test_has_an_error_rate_objective_by_default() -> None:
    assert _limits({}) == {("error_rate", None, None): 0.01}


def test_the_config_and_a_marker_override_it() -> None:
    assert _limits({"error_rate": "0.1%"}) == {("error_rate", None, None): 0.001}
    assert _limits({"error_rate": "0.1%"}, {"error_rate": "5%"}) == {
        ("error_rate", None, None): 0.05
    }


@pytest.mark.parametrize("off", ["off", "OFF", None, False])
def test_it_is_removed_on_purpose(off: object) -> None:
    assert _limits({"error_rate": off}) == {}
    assert _limits({}, {"error_rate": off, "p95": "200ms"}) == {("p95", None, None): 200.0}


def test_a_removal_is_per_selection() -> None:
    # Removing it for one endpoint leaves the objective over all endpoints.
    limits = _limits({"error_rate": "2%"}, {"error_rate": "off", "endpoint": "pay"})
    assert limits == {("error_rate", None, None): 0.02}


def test_a_typo_is_refused_even_when_removed() -> None:
    with pytest.raises(ConfigError, match="unknown objective 'eror_rate'"):
        objectives_for({"eror_rate": "off"}, [])
    with pytest.raises(ConfigError, match="no objective given"):
        objectives_for({}, [{"endpoint": "pay"}])
