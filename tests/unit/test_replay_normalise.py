"""Recorded requests made fit to replay: filters, headers, ids, secrets."""

from __future__ import annotations

import json

import pytest

from perfsuite.errors import ConfigError
from perfsuite.replay import Recorded, RecordedResponse
from perfsuite.replay.normalise import (
    IdMap,
    Learn,
    Outgoing,
    Rules,
    mask_headers,
    mask_json,
    mask_target,
    prepare,
)


def _get(target: str, *headers: tuple[str, str]) -> Recorded:
    return Recorded(offset=0.0, method="GET", target=target, headers=headers)


def test_writes_are_refused_unless_allowed_and_their_body_is_known() -> None:
    post = Recorded(offset=0.0, method="POST", target="/orders", body=b"{}")
    logged = Recorded(offset=0.0, method="POST", target="/orders", body=None)
    assert prepare(post, Rules(), IdMap()) == "a write (POST): allow_writes is off"
    allowed = Rules(allow_writes=True)
    assert isinstance(prepare(post, allowed, IdMap()), Outgoing)
    assert prepare(logged, allowed, IdMap()) == (
        "a write (POST) whose body the capture did not keep"
    )
    head = Recorded(offset=0.0, method="HEAD", target="/health", body=None)
    assert isinstance(prepare(head, Rules(), IdMap()), Outgoing)


def test_filters_by_method_and_target() -> None:
    rules = Rules(methods=frozenset({"GET"}), include=(r"^/orders/",), exclude=(r"/admin",))
    assert isinstance(prepare(_get("/orders/1"), rules, IdMap()), Outgoing)
    assert prepare(_get("/health"), rules, IdMap()) == "target not included"
    assert prepare(_get("/orders/admin"), rules, IdMap()) == "target excluded"
    head = Recorded(offset=0.0, method="HEAD", target="/orders/1")
    assert prepare(head, rules, IdMap()) == "method HEAD not selected"
    with pytest.raises(ConfigError, match="replay filter '\\(' is not a regex"):
        Rules(include=("(",))


def test_headers_lose_hop_by_hop_and_volatile_ones_and_get_this_environments() -> None:
    item = _get(
        "/orders/1",
        ("Host", "shop.example"),
        ("Connection", "keep-alive"),
        ("If-None-Match", '"abc"'),
        ("Authorization", "Bearer production-token"),
        ("Accept", "application/json"),
        ("X-Trace", "1"),
    )
    rules = Rules(drop_headers=frozenset({"x-trace"}), set_headers={"Authorization": "Bearer test"})
    out = prepare(item, rules, IdMap())
    assert isinstance(out, Outgoing)
    assert out.headers == (("Accept", "application/json"), ("Authorization", "Bearer test"))


def test_ids_from_a_table_in_paths_queries_and_json_bodies() -> None:
    ids = IdMap(table={"17": "3", "u-9": "u-1"})
    assert ids.target("/orders/17/items?user=u-9&n=17x") == "/orders/3/items?user=u-1&n=17x"
    assert ids.target("/orders/170") == "/orders/170"  # whole segments only
    assert ids.target("/s?q=a+b&id=17&flag") == "/s?q=a+b&id=3&flag"  # the rest as it was
    body = json.dumps({"order_id": 17, "note": "17", "items": [{"id": 170}], "ok": True})
    mapped = json.loads(ids.body(body.encode(), "application/json"))
    assert mapped == {"order_id": 3, "note": "3", "items": [{"id": 170}], "ok": True}
    assert ids.body(b"order_id=17", "application/x-www-form-urlencoded") == b"order_id=17"


def test_an_id_created_by_a_replayed_post_replaces_the_recorded_one() -> None:
    rules = Rules(allow_writes=True, learn=(Learn(method="POST", path=r"^/orders$", field="id"),))
    ids = IdMap(table=dict(rules.ids))
    create = Recorded(
        offset=0.0,
        method="POST",
        target="/orders",
        headers=(("Content-Type", "application/json"),),
        body=b'{"user_id": 1}',
        response=RecordedResponse(status=201, body=b'{"id": 17, "total_cents": 500}'),
    )
    assert isinstance(prepare(create, rules, ids), Outgoing)
    ids.learn(rules.learn, create, 201, b'{"id": 3, "total_cents": 500}')
    pay = Recorded(
        offset=0.5,
        method="POST",
        target="/payments/callback",
        headers=(("Content-Type", "application/json"),),
        body=b'{"order_id": 17, "payment_id": "p-17", "amount_cents": 500}',
    )
    out = prepare(pay, rules, ids)
    assert isinstance(out, Outgoing)
    assert json.loads(out.body) == {"order_id": 3, "payment_id": "p-17", "amount_cents": 500}
    query = prepare(_get("/orders/17"), rules, ids)
    assert isinstance(query, Outgoing)
    assert query.target == "/orders/3"
    assert ids.learned == 1
    # A failed answer, or one without the field, teaches nothing.
    ids.learn(rules.learn, create, 422, b'{"id": 99}')
    ids.learn(rules.learn, create, 201, b'{"error": "x"}')
    assert ids.table == {"17": "3"}
    with pytest.raises(ConfigError, match="not a dotted field path"):
        Learn(method="POST", path="/orders", field="order..id")


def test_secrets_are_masked_in_what_reports_show() -> None:
    headers = (
        ("Authorization", "Bearer abc"),
        ("Cookie", "sid=1"),
        ("X-Api-Key", "k"),
        ("Accept", "*/*"),
    )
    assert mask_headers(headers) == (
        ("Authorization", "***"),
        ("Cookie", "***"),
        ("X-Api-Key", "***"),
        ("Accept", "*/*"),
    )
    assert mask_target("/login?user=ann&password=hunter2&access_token=t") == (
        "/login?user=ann&password=***&access_token=***"
    )
    assert mask_json({"user": {"name": "ann", "session_id": "s", "tokens": [1]}}) == {
        "user": {"name": "ann", "session_id": "***", "tokens": "***"}
    }
