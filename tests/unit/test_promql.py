"""The PromQL evaluator against values computed by hand from Prometheus's rules."""

from __future__ import annotations

import math

import pytest

from perfsuite.errors import PromQLError
from perfsuite.stats.promql import (
    Evaluator,
    Expectation,
    Series,
    SeriesSet,
    Vector,
    judge,
    parse,
    selected_names,
)


def _data(*series: Series) -> Evaluator:
    return Evaluator(SeriesSet(series))


def _counter(name: str, points: list[tuple[float, float]], **labels: str) -> Series:
    return Series.of({"__name__": name, **labels}, points)


def _only(value: object) -> float:
    assert isinstance(value, dict), value
    assert len(value) == 1, value
    return float(next(iter(value.values())))


def _at(ev: Evaluator, text: str, t: float) -> float | Vector:
    return ev.at(parse(text), t)


# -- rate, increase, delta: extrapolation as in Prometheus's extrapolatedRate ---------


def test_rate_extrapolates_to_both_edges_when_samples_are_near_them() -> None:
    ev = _data(_counter("c", [(10, 10), (20, 20), (30, 30), (40, 40)]))
    # Window (5, 45]: 30 counted over 30 s of samples, 5 s to each edge (< 1.1 intervals):
    # extrapolated to 40 s, so 40; per second over the 40 s range, 1.0.
    assert _only(_at(ev, "increase(c[40s])", 45)) == pytest.approx(40.0)
    assert _only(_at(ev, "rate(c[40s])", 45)) == pytest.approx(1.0)


def test_rate_extrapolates_half_an_interval_when_the_edges_are_far() -> None:
    ev = _data(_counter("c", [(20, 20), (30, 30), (40, 40)]))
    # Window (0, 60]: 20 s to each edge (> 11 s): half the 10 s interval on each side,
    # 20 * (20 + 5 + 5) / 20 = 30; the rate divides by the range, 60 s.
    assert _only(_at(ev, "increase(c[60s])", 60)) == pytest.approx(30.0)
    assert _only(_at(ev, "rate(c[60s])", 60)) == pytest.approx(0.5)


def test_a_counter_is_not_extrapolated_below_zero() -> None:
    ev = _data(_counter("c", [(10, 1), (20, 11), (30, 21)]))
    # Window (0, 30]: the start is 10 s away (< 11 s), but at 1/s the counter was 0 one
    # second before its first sample (20 s * 1/20): extrapolated by 1 s, 20 * 21 / 20.
    assert _only(_at(ev, "increase(c[30s])", 30)) == pytest.approx(21.0)
    # delta() is for gauges: no such limit, 10 s < 11 s is extrapolated in full.
    assert _only(_at(ev, "delta(c[30s])", 30)) == pytest.approx(20.0 * 30 / 20)


def test_a_counter_reset_adds_the_value_before_it() -> None:
    ev = _data(_counter("c", [(10, 5), (20, 10), (30, 2), (40, 6)]))
    # 6 - 5 + 10 (the counter restarted after 10) = 11, extrapolated from 30 s to 40 s.
    assert _only(_at(ev, "increase(c[40s])", 45)) == pytest.approx(11 * 40 / 30)
    assert _only(_at(ev, "rate(c[40s])", 45)) == pytest.approx(11 * 40 / 30 / 40)
    # irate: the last two samples; after a reset, the new value over the interval.
    assert _only(_at(ev, "irate(c[40s])", 45)) == pytest.approx(0.4)
    assert _only(_at(ev, "irate(c[40s])", 35)) == pytest.approx(0.2)
    assert _only(_at(ev, "idelta(c[40s])", 35)) == pytest.approx(-8.0)


def test_a_window_with_one_sample_has_no_rate() -> None:
    ev = _data(_counter("c", [(10, 5), (20, 10)]))
    assert _at(ev, "rate(c[5s])", 20) == {}
    assert _at(ev, "irate(c[5s])", 20) == {}
    assert _only(_at(ev, "rate(c[15s])", 20)) > 0


def test_windows_are_left_open_and_instant_selectors_look_back_five_minutes() -> None:
    ev = _data(_counter("g", [(10, 1), (20, 7), (30, 3), (40, 2)]))
    # (10, 40]: the sample at 10 is out.
    assert _only(_at(ev, "count_over_time(g[30s])", 40)) == 3
    assert _only(_at(ev, "max_over_time(g[30s])", 40)) == 7
    assert _only(_at(ev, "max_over_time(g[30s])", 50)) == 3
    assert _only(_at(ev, "g", 40 + 299)) == 2
    assert _at(ev, "g", 40 + 300) == {}
    assert _at(ev, "g", 9.9) == {}
    assert _only(_at(ev, "g offset 15s", 40)) == 7


def test_over_time_functions() -> None:
    values = [1.0, 7.0, 3.0, 2.0]
    ev = _data(_counter("g", list(zip([10, 20, 30, 40], values, strict=True))))
    mean = sum(values) / 4
    variance = sum((v - mean) ** 2 for v in values) / 4  # population, as Prometheus
    expected = {
        "avg_over_time": mean,
        "min_over_time": 1.0,
        "max_over_time": 7.0,
        "sum_over_time": 13.0,
        "count_over_time": 4.0,
        "last_over_time": 2.0,
        "present_over_time": 1.0,
        "stdvar_over_time": variance,
        "stddev_over_time": math.sqrt(variance),
    }
    for fn, value in expected.items():
        assert _only(_at(ev, f"{fn}(g[1m])", 40)) == pytest.approx(value), fn
    # Sorted 1, 2, 3, 7: rank 0.5 * 3 = 1.5, between 2 and 3; rank 0.9 * 3 = 2.7.
    assert _only(_at(ev, "quantile_over_time(0.5, g[1m])", 40)) == pytest.approx(2.5)
    assert _only(_at(ev, "quantile_over_time(0.9, g[1m])", 40)) == pytest.approx(3 + 0.7 * 4)
    # Functions drop the name; last_over_time keeps it.
    assert list(_at(ev, "max_over_time(g[1m])", 40)) == [()]  # type: ignore[arg-type]
    assert list(_at(ev, "last_over_time(g[1m])", 40)) == [(("__name__", "g"),)]  # type: ignore[arg-type]


# -- histogram_quantile ---------------------------------------------------------------


def _buckets(counts: dict[str, float], t: float = 10, **labels: str) -> list[Series]:
    return [
        Series.of({"__name__": "h_bucket", "le": le, **labels}, [(t, count)])
        for le, count in counts.items()
    ]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.1 + (0.5 - 0.1) * (40 / 50)),  # rank 50 in (0.1, 0.5]: 40 of its 50
        (0.05, 0.1 * 5 / 10),  # in the first bucket, from 0
        (0.9, 0.5 + (1 - 0.5) * (30 / 30)),  # rank 90: the top of (0.5, 1]
        (0.95, 1.0),  # in +Inf: the highest finite bound
        (1.5, math.inf),
        (-0.1, -math.inf),
    ],
)
def test_histogram_quantile_interpolates_in_the_bucket(q: float, expected: float) -> None:
    ev = _data(*_buckets({"0.1": 10, "0.5": 60, "1": 90, "+Inf": 100}))
    assert _only(_at(ev, f"histogram_quantile({q}, h_bucket)", 10)) == pytest.approx(expected)


def test_histogram_quantile_edge_cases() -> None:
    # No +Inf bucket, or no observations: NaN.
    no_inf = _data(*_buckets({"0.1": 10, "0.5": 60}))
    assert math.isnan(_only(_at(no_inf, "histogram_quantile(0.5, h_bucket)", 10)))
    empty = _data(*_buckets({"0.1": 0, "+Inf": 0}))
    assert math.isnan(_only(_at(empty, "histogram_quantile(0.5, h_bucket)", 10)))
    # A count that goes down (a scrape that is not atomic) is raised to the one below:
    # 0.5 -> 60, so rank 50 falls in (0.1, 0.5] as before.
    dip = _data(*_buckets({"0.1": 10, "0.5": 60, "1": 55, "+Inf": 100}))
    assert _only(_at(dip, "histogram_quantile(0.5, h_bucket)", 10)) == pytest.approx(0.42)


def test_histogram_quantile_of_summed_rates_by_le() -> None:
    # Two instances whose buckets grow at constant rates: rate() is exact here, and the
    # sums per le are 10/s, 60/s, 90/s, 100/s: the same histogram as above.
    series = []
    for instance, share in (("a", 0.25), ("b", 0.75)):
        for le, per_second in {"0.1": 10, "0.5": 60, "1": 90, "+Inf": 100}.items():
            points = [(t, per_second * share * t) for t in range(0, 61)]
            series.append(_counter("h_bucket", points, le=le, instance=instance))
    ev = _data(*series)
    text = "histogram_quantile(0.5, sum by (le) (rate(h_bucket[30s])))"
    assert _only(_at(ev, text, 60)) == pytest.approx(0.42)
    by_instance = _at(ev, "histogram_quantile(0.5, rate(h_bucket[30s]))", 60)
    assert isinstance(by_instance, dict)
    assert by_instance == {
        (("instance", "a"),): pytest.approx(0.42),
        (("instance", "b"),): pytest.approx(0.42),
    }


# -- aggregations and operators ------------------------------------------------------


def _requests() -> Evaluator:
    def one(code: str, job: str, value: float) -> Series:
        return Series.of({"__name__": "req", "code": code, "job": job}, [(10, value)])

    totals = [
        Series.of({"__name__": "total", "job": job}, [(10, value)])
        for job, value in (("api", 100.0), ("web", 50.0))
    ]
    return _data(one("200", "api", 90), one("500", "api", 10), one("200", "web", 50), *totals)


def test_aggregations_by_and_without() -> None:
    ev = _requests()
    assert _at(ev, "sum(req)", 10) == {(): 150.0}
    assert _at(ev, "sum by (job) (req)", 10) == {(("job", "api"),): 100.0, (("job", "web"),): 50.0}
    assert _at(ev, "max without (code) (req)", 10) == {
        (("job", "api"),): 90.0,
        (("job", "web"),): 50.0,
    }
    assert _at(ev, "avg(req)", 10) == {(): 50.0}
    assert _at(ev, "count by (code) (req)", 10) == {(("code", "200"),): 2, (("code", "500"),): 1}
    assert _at(ev, "min(req)", 10) == {(): 10.0}


def test_operators_with_scalars_and_between_vectors() -> None:
    ev = _requests()
    # A comparison filters and keeps the series (name included) and its value.
    assert _at(ev, 'req{code=~"5.."} > 5', 10) == {
        (("__name__", "req"), ("code", "500"), ("job", "api")): 10.0
    }
    assert _at(ev, 'req{code=~"5.."} > 50', 10) == {}
    # ... whichever side the scalar is on; `bool` gives 0 or 1 without the name.
    assert _only(_at(ev, 'req{code!~"2.."} < 11', 10)) == 10.0
    assert _only(_at(ev, '5 < req{code="500"}', 10)) == 10.0
    assert _at(ev, 'req{code="500"} > bool 50', 10) == {(("code", "500"), ("job", "api")): 0.0}
    # Arithmetic drops the name; vectors match on every other label, or on() some.
    errors = 'sum by (job) (req{code=~"5.."})'
    assert _at(ev, f"{errors} / sum by (job) (req)", 10) == {(("job", "api"),): 0.1}
    assert _at(ev, f"{errors} / on(job) total", 10) == {(("job", "api"),): 0.1}
    assert _at(ev, 'req{code="200"} / ignoring(code) total', 10) == {
        (("job", "api"),): 0.9,
        (("job", "web"),): 1.0,
    }
    assert _at(ev, "2 ^ 3 + 1", 10) == 9.0
    assert _at(ev, "-7 % 3", 10) == -1.0  # Go's math.Mod: the sign of the dividend
    assert _only(_at(ev, "sum(req) / 0", 10)) == math.inf
    assert _only(_at(ev, "-sum(req)", 10)) == -150.0


def test_functions_on_instant_vectors() -> None:
    ev = _requests()
    assert _at(ev, "clamp_max(req, 60)", 10) == {
        (("code", "200"), ("job", "api")): 60.0,
        (("code", "500"), ("job", "api")): 10.0,
        (("code", "200"), ("job", "web")): 50.0,
    }
    assert _at(ev, "clamp(sum(req), 0, 100)", 10) == {(): 100.0}
    assert _at(ev, 'scalar(req{code="500"})', 10) == 10.0
    assert math.isnan(float(_at(ev, "scalar(req)", 10)))  # type: ignore[arg-type]
    assert _at(ev, "vector(3) + 1", 10) == {(): 4.0}
    assert _at(ev, "time()", 10) == 10.0
    assert _at(ev, "abs(-sum(req))", 10) == {(): 150.0}


def test_set_operators_keep_series_by_their_match_group() -> None:
    ev = _requests()
    api = 'req{job="api"}'
    assert set(_at(ev, 'req and on(job) total{job="api"}', 10)) == set(_at(ev, api, 10))  # type: ignore[arg-type]
    assert set(_at(ev, f"req unless {api}", 10)) == {  # type: ignore[arg-type]
        (("__name__", "req"), ("code", "200"), ("job", "web"))
    }
    # The usual way to read an absent series as zero.
    assert _at(ev, 'sum(req{code="404"}) or vector(0)', 10) == {(): 0.0}
    assert _at(ev, 'sum(req{code="500"}) or vector(0)', 10) == {(): 10.0}


def test_two_series_in_one_match_group_is_an_error() -> None:
    with pytest.raises(PromQLError, match="many-to-many matching is not allowed"):
        _at(_requests(), "req / on(job) total", 10)


def test_a_range_query_steps_through_the_window() -> None:
    ev = _data(_counter("g", [(t, t * 2.0) for t in range(0, 11)]))
    values = ev.steps(parse("g"), 2, 5, 1)
    assert [_only(v) for v in values] == [4.0, 6.0, 8.0, 10.0]


# -- the subset and its errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rate(x[1m]", "cannot parse the PromQL expression"),
        ("nosuch(x)", "unknown function with name 'nosuch'"),
        ("predict_linear(x[1m], 60)", "predict_linear() is not supported; supported: abs"),
        ("topk(3, x)", "the aggregation topk() is not supported"),
        ("x atan2 y", "the operator 'atan2' is not supported"),
        ("max_over_time(rate(x[1m])[5m:1m])", "subqueries"),
        ("x @ 100", "the @ modifier is not supported"),
        ("x / on(a) group_left y", "group_left/group_right"),
    ],
)
def test_what_is_outside_the_subset_is_named(text: str, message: str) -> None:
    with pytest.raises(PromQLError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_a_range_vector_cannot_be_judged_alone() -> None:
    with pytest.raises(PromQLError, match="wrap it in a function such as max_over_time"):
        _at(_requests(), "req[1m]", 10)


def test_the_names_an_expression_selects() -> None:
    expr = parse('histogram_quantile(0.9, sum by (le) (rate(a_bucket[1m]))) / b{x="1"} + a_bucket')
    assert selected_names(expr) == ["a_bucket", "b"]


# -- expectations: a comparison judged at every step of a window ------------------------


def _pool(waiting: dict[int, float]) -> Evaluator:
    points = [(float(t), waiting.get(t, 0.0)) for t in range(0, 31)]
    other = Series.of({"__name__": "up"}, [(float(t), 1.0) for t in range(0, 31)])
    return _data(Series.of({"__name__": "pool_waiting", "pool": "main"}, points), other)


def test_an_expectation_holds_when_every_step_holds() -> None:
    verdict = judge(Expectation(text="max_over_time(pool_waiting[5s]) == 0"), _pool({}), 10, 20)
    assert verdict.ok
    assert (verdict.judged, verdict.broken, len(verdict.times)) == (11, 0, 11)
    assert verdict.report().endswith("held at all 11 steps judged")


def test_a_broken_expectation_says_where_and_how_far() -> None:
    e = Expectation(text="max_over_time(pool_waiting[5s]) == 0", phase="steady")
    verdict = judge(e, _pool({14: 3.0, 15: 1.0}), 10, 20)
    assert not verdict.ok
    # Windows (t-5, t] that hold t=14 or t=15: t = 14..19, six steps.
    assert (verdict.judged, verdict.broken) == (11, 6)
    assert verdict.worst == (4.0, (("pool", "main"),), 3.0)
    assert verdict.report() == (
        "expect max_over_time(pool_waiting[5s]) == 0 in phase steady: broken at 6 of 11 "
        'steps judged; furthest: 3 at +4 s, {pool="main"}\n'
        "  that series from +0 s, a step a second: 0, 0, 0, 0, 3, 3, 3, 3, 3, 1, 0 "
        "(expected == 0)"
    )
    # The number may be on the left: the series is then expected on the other side of it.
    swapped = judge(Expectation(text="1 > max_over_time(pool_waiting[5s])"), _pool({14: 3}), 10, 20)
    assert swapped.report().endswith("(expected < 1)")
    assert not judge(
        Expectation(text="1 > max_over_time(pool_waiting[5s])"), _pool({14: 3}), 10, 20
    ).ok
    assert judge(Expectation(text="4 > max_over_time(pool_waiting[5s])"), _pool({14: 3}), 10, 20).ok


def test_steps_without_a_value_are_not_judged_and_no_value_at_all_fails() -> None:
    # rate() needs two samples in its window: at 0.5 s, (-1.5, 0.5] holds one.
    verdict = judge(Expectation(text="rate(pool_waiting[2s]) < 1"), _pool({}), 0.5, 3.5)
    assert (verdict.judged, len(verdict.times)) == (3, 4)
    assert verdict.ok
    missing = judge(Expectation(text="max_over_time(pool_wait[5s]) == 0"), _pool({}), 10, 20)
    assert not missing.ok
    assert missing.judged == 0
    assert missing.report() == (
        "expect max_over_time(pool_wait[5s]) == 0 in the measured phases: no value in 11 "
        "steps; it selects pool_wait; metric names seen: pool_waiting, up"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_over_time(pool_waiting[5s])", "an expectation is a comparison with a number"),
        ("pool_waiting + 1", "an expectation is a comparison with a number"),
        ("pool_waiting > bool 1", "leave out 'bool'"),
        ("pool_waiting > up", "one side of > must be a number"),
        ("1 < 2", "comparisons between scalars must use BOOL"),
    ],
)
def test_an_expectation_must_compare_a_metric_with_a_number(text: str, message: str) -> None:
    with pytest.raises(PromQLError, match=message):
        Expectation(text=text)
