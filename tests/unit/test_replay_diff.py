"""Diffy's trio: what two references disagree on is noise, the rest is a difference."""

from __future__ import annotations

import json

from perfsuite.replay.diff import Answer, Differences, fields_that_differ


def _order(order_id: int, total: int, at: str, items: int = 2, token: str = "t") -> Answer:
    body = {
        "id": order_id,
        "total_cents": total,
        "created_at": at,
        "items": [{"sku_id": i, "quantity": 1} for i in range(items)],
        "session_token": token,
    }
    return Answer(200, json.dumps(body).encode())


def test_fields_are_compared_structurally() -> None:
    a = _order(1, 500, "10:00:00")
    assert fields_that_differ(a, a) == set()
    assert fields_that_differ(a, _order(1, 501, "10:00:00")) == {"total_cents"}
    assert fields_that_differ(a, _order(1, 500, "10:00:00", items=3)) == {
        "items#len",
        "items[].sku_id",
        "items[].quantity",
    }
    assert fields_that_differ(a, Answer(404, b'{"error": "no"}')) >= {"status", "id", "error"}
    # Bodies that are not JSON: byte for byte; unknown bodies: the status only.
    assert fields_that_differ(Answer(200, b"<p>a"), Answer(200, b"<p>b")) == {"body"}
    assert fields_that_differ(Answer(200, None), Answer(200, b"x")) == set()
    assert fields_that_differ(Answer(200, None), Answer(500, b"x")) == {"status"}


def test_a_timestamp_is_noise_and_a_real_change_is_flagged_at_its_rate() -> None:
    diffs = Differences()
    for i in range(100):
        items = 4 if i % 10 == 0 else 2  # 10 % of orders have more than three items
        total = 500 * items
        reference = _order(i, total, f"10:00:{i % 60:02d}.1", items)
        second = _order(i, total, f"10:00:{i % 60:02d}.2", items)  # the same, a moment later
        # The candidate's bug: orders of more than three items are totalled wrong.
        candidate = _order(i, total + (1 if items > 3 else 0), f"10:00:{i % 60:02d}.3", items)
        diffs.add(
            "order_query", f"/orders/{i}?session_token=s", reference, candidate, (reference, second)
        )
    diff = diffs.endpoints["order_query"]
    assert diff.compared == 100
    assert diff.noise_fields() == {"created_at"}
    assert diff.rate == 0.10
    assert diff.fields() == [("total_cents", 10)]
    (example, *_) = diff.examples["total_cents"]
    assert (example.reference, example.candidate) == ("2000", "2001")
    assert example.target == "/orders/0?session_token=***"  # credentials never shown
    assert diffs.rates() == {"order_query": 0.10}


def test_without_a_second_reference_every_difference_counts_and_secrets_stay_masked() -> None:
    diffs = Differences(examples=1)
    diffs.add("q", "/orders/1", _order(1, 5, "a", token="old"), _order(1, 5, "b", token="new"))
    diff = diffs.endpoints["q"]
    assert diff.rate == 1.0
    assert dict(diff.fields()) == {"created_at": 1, "session_token": 1}
    shown = diff.examples["session_token"][0]
    assert (shown.reference, shown.candidate) == ("***", "***")
    diffs.add("q", "/orders/1", Answer(200, b"{}"), Answer(500, b"{}"))
    assert diff.statuses == {(200, 500): 1}
