"""The example service's database side: its pool (with the gauges' counts), the
connection URL, and the order items' queries (one query, or one per item)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql

__all__ = ["Pool", "all_items", "items_one_by_one", "mysql_kwargs"]


class Pool:
    """The aiomysql pool plus what its gauges need (waiting acquirers)."""

    def __init__(self, pool: aiomysql.Pool) -> None:
        self.pool = pool
        self.waiting = 0

    async def acquire(self) -> aiomysql.Connection:
        self.waiting += 1
        try:
            return await self.pool.acquire()
        finally:
            self.waiting -= 1

    def release(self, conn: aiomysql.Connection) -> None:
        self.pool.release(conn)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiomysql.Connection]:
        conn = await self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    @property
    def in_use(self) -> int:
        return int(self.pool.size - self.pool.freesize)


def mysql_kwargs(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/"),
    }


async def all_items(cur: aiomysql.Cursor, order_id: int) -> list[tuple[Any, ...]]:
    await cur.execute(
        "SELECT sku_id, quantity, price_cents FROM order_items WHERE order_id = %s ORDER BY sku_id",
        (order_id,),
    )
    return list(await cur.fetchall())


async def items_one_by_one(cur: aiomysql.Cursor, order_id: int) -> list[tuple[Any, ...]]:
    """The "nplus1" fault: the ids, then one query per item (an ORM's lazy loading)."""
    await cur.execute(
        "SELECT sku_id FROM order_items WHERE order_id = %s ORDER BY sku_id", (order_id,)
    )
    items = []
    for (sku_id,) in await cur.fetchall():
        await cur.execute(
            "SELECT sku_id, quantity, price_cents FROM order_items "
            "WHERE order_id = %s AND sku_id = %s",
            (order_id, sku_id),
        )
        items.append(await cur.fetchone())
    return items
