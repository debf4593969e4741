"""Journeys against a real local server: values carried from one response to the next."""

from __future__ import annotations

import functools
import json

import pytest

from perfsuite import (
    ClosedPhase,
    ConfigError,
    Journey,
    OpenPhase,
    Scenario,
    Step,
    header,
    json_field,
    regex,
    run_load,
)

from .conftest import Server

# Loads timed in this process: none runs next to another load.
pytestmark = [pytest.mark.usefixtures("quiet"), pytest.mark.exclusive]


def paid(status: int, body: bytes) -> bool:
    return json.loads(body)["paid"] is True


# The seed's flow on the test server: create an order, pay for it with its own
# id and amount (and its session cookie), then query it where Location says.
ORDER = Journey(
    "order",
    Step(
        name="create",
        build=lambda u: u.post("/create"),
        status={201},
        extract={
            "id": json_field("id"),
            "amount": regex(r'"amount": (\d+)'),
            "where": header("Location"),
        },
    ),
    Step(name="pay", build=lambda u: u.get(f"/pay/{u['id']}/{u['amount']}")),
    Step(name="query", build=lambda u: u.get(u["where"]), check=paid),
)


def constant(rate: float, duration: float) -> OpenPhase:
    return OpenPhase(name="steady", duration=duration, start_rate=rate, end_rate=rate)


def test_open_model_journeys_carry_ids_amounts_and_cookies(server: Server) -> None:
    server.reset()
    result = run_load(server.url, Scenario(ORDER), [constant(100, 2.0)])
    assert result.endpoints == ["order", "order/create", "order/pay", "order/query"]
    whole = result.measured("order")
    assert whole.requests == whole.ok == 200
    for step in ("create", "pay", "query"):
        m = result.measured(f"order/{step}")
        assert m.requests == m.ok == 200, step
    # The server paid each order only with its own amount and session cookie.
    stats = server.stats()
    assert len(stats["paid"]) == 200
    assert all(stats["paid"].values())
    # All endpoints together count requests, each once: the journey's own is left out.
    assert result.measured().requests == 600
    # A journey lasts from its intended start to its last answer: at least its steps.
    assert whole.latency.p50 >= result.measured("order/pay").latency.p50


def test_closed_model_users_loop_over_the_journey(server: Server) -> None:
    server.reset()
    result = run_load(server.url, Scenario(ORDER), [ClosedPhase(name="c", duration=1.0, users=4)])
    whole = result.measured("order")
    assert whole.requests > 20
    assert whole.ok >= whole.requests - 4  # runs cut by the phase's end at most
    assert result.measured("order/query").errors == 0
    assert all(server.stats()["paid"].values())


def test_a_value_not_found_ends_the_journey_and_names_it(server: Server) -> None:
    broken = Journey(
        "broken",
        Step(name="create", build=lambda u: u.post("/create"), extract={"x": json_field("nope")}),
        Step(name="pay", build=lambda u: u.get(f"/pay/{u['x']}/1")),
    )
    result = run_load(server.url, Scenario(broken), [constant(50, 0.5)])
    whole = result.measured("broken")
    assert whole.requests == whole.errors == whole.errors_by_kind["check"] == 25
    assert result.measured("broken/create").errors_by_kind["check"] == 25
    assert result.measured("broken/pay").requests == 0  # never reached
    (text,) = result.check_exceptions
    assert text.startswith("broken/create: x: ExtractError: no JSON field 'nope'")


def test_journeys_mix_with_plain_requests(server: Server) -> None:
    from perfsuite import Request

    ok = Request(name="ok", build=lambda ctx: ctx.get("/ok"), weight=3)
    result = run_load(server.url, Scenario(ok, ORDER.with_weight(1)), [constant(200, 1.0)])
    assert result.measured("ok").requests + result.measured("order").requests == 200
    assert result.measured("order").ok == result.measured("order").requests > 20
    assert result.measured("order/create").requests == result.measured("order").requests


def test_bad_journeys_are_refused() -> None:
    step = Step(name="a", build=lambda u: u.get("/ok"))
    with pytest.raises(ConfigError, match="needs at least one step"):
        Journey("empty")
    with pytest.raises(ConfigError, match="step names must be unique"):
        Journey("twice", step, step)
    with pytest.raises(ConfigError, match="journey name must be a plain word"):
        Journey("a/b", step)


def not_paid(status: int, body: bytes) -> bool:
    return json.loads(body)["paid"] is not True


def _peek_then_pay() -> Journey:
    """The order is queried before it is paid (a stale read, as from a replica that
    has not applied the payment), then paid and queried again (fresh)."""
    create, pay, query = ORDER.steps
    peek = Step(name="peek", build=query.build, stale=not_paid)
    return Journey(
        "order", create, peek, pay, Step(name="query", build=query.build, stale=not_paid)
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_stale_reads_are_counted_and_end_no_journey(server: Server, workers: int) -> None:
    from perfsuite.load.parallel import run_parallel

    server.reset()
    scenario = Scenario(_peek_then_pay())
    result = run_parallel(server.url, scenario, [constant(100, 2.0)], workers=workers)
    whole = result.measured("order")
    assert whole.requests == whole.ok == 200  # a stale read is a success: the journey goes on
    peek, query = result.measured("order/peek"), result.measured("order/query")
    assert (peek.stale, peek.stale_of, peek.stale_rate) == (200, 200, 1.0)
    assert (query.stale, query.stale_of, query.stale_rate) == (0, 200, 0.0)
    assert (result.measured().stale, result.measured().stale_of) == (200, 400)
    assert result.measured("order/pay").stale is None  # no predicate: nothing judged
    assert all(server.stats()["paid"].values())


def test_stale_rate_slo_and_a_predicate_that_raises(server: Server) -> None:
    from perfsuite.gate import stale_counts
    from perfsuite.load.scenario import Request
    from perfsuite.stats.slo import evaluate_stale, parse_slo

    def stale(status: int, body: bytes) -> bool:
        if body == b"odd":
            raise ValueError("cannot tell")
        return body == b"old"

    def build(ctx: object) -> object:
        return ctx.get(f"/body/{ctx.rng.choice(['old', 'new', 'new', 'odd'])}")  # type: ignore[attr-defined]

    scenario = Scenario(Request(name="read", build=build, stale=stale), seed=5)  # type: ignore[arg-type]
    result = run_load(server.url, scenario, [constant(200, 2.0)])
    m = result.measured("read")
    assert m.ok == m.stale_of == 400  # stale or not, every answer succeeded
    raised = result.check_exceptions["read: ValueError: cannot tell"]
    assert 60 < raised < 140  # a predicate that raises counts no stale read
    assert 60 < m.stale < 140, m.stale
    objectives = parse_slo({"stale_rate": "40%"}) + parse_slo({"stale_rate": "1%"})
    loose, tight = evaluate_stale(objectives, functools.partial(stale_counts, result))
    assert loose.passed
    assert not tight.passed
    assert loose.low < m.stale / 400 < loose.high
    assert "stale_rate of all endpoints, all measured phases: " in tight.describe()
    # Without a stale= predicate there is nothing to judge: said, not passed.
    plain = run_load(server.url, Scenario(Request(name="plain", build=build)), [constant(50, 0.2)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no request of the load has a stale= predicate"):
        evaluate_stale(objectives, functools.partial(stale_counts, plain))
