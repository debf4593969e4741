"""Request bodies of the example service, checked: a malformed one is answered 422."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

__all__ = ["MAX_ITEMS", "Invalid", "json_body", "order_items", "pos_int"]

MAX_ITEMS = 20


class Invalid(Exception):
    """A malformed request body: answered with 422."""


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise Invalid("body is not JSON") from exc
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    return body


def pos_int(body: dict[str, Any], key: str, hi: int = 2**62) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= hi:
        raise Invalid(f"{key} must be a positive integer")
    return value


def order_items(body: dict[str, Any]) -> dict[int, int]:
    items = body.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ITEMS:
        raise Invalid(f"items must be a list of 1 to {MAX_ITEMS} items")
    wanted: dict[int, int] = {}
    for item in items:
        if not isinstance(item, dict):
            raise Invalid("each item must be an object")
        sku = pos_int(item, "sku_id")
        if sku in wanted:
            raise Invalid(f"sku {sku} appears twice")
        wanted[sku] = pos_int(item, "quantity", 100)
    return wanted
