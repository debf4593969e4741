"""A seeded, repeatable data set: many users and SKUs, and some orders.

Many distinct ids keep caches from flattering the results (the seed story
pre-generates them for the same reason). The same ``seed`` gives the same data.
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass

from perfsuite import MySQLServer

__all__ = ["Dataset", "generate", "load", "seed_database"]


@dataclass(frozen=True)
class Dataset:
    """Rows to insert, as tuples in column order."""

    users: list[tuple[int, str]]
    skus: list[tuple[int, str, int, int]]
    orders: list[tuple[int, int, int]]  # id, user_id, total_cents
    items: list[tuple[int, int, int, int]]  # order_id, sku_id, quantity, price_cents


def generate(*, users: int, skus: int, orders: int, seed: int = 42) -> Dataset:
    """Users 1..users, SKUs 1..skus, orders 1..orders with 1-3 items each."""
    rng = random.Random(seed)
    user_rows = [(i, f"user-{i}") for i in range(1, users + 1)]
    sku_rows = [(i, f"sku-{i}", rng.randint(100, 50_000), 1_000_000) for i in range(1, skus + 1)]
    order_rows, item_rows = [], []
    for order_id in range(1, orders + 1):
        chosen = rng.sample(range(1, skus + 1), k=rng.randint(1, 3))
        total = 0
        for sku_id in chosen:
            qty = rng.randint(1, 4)
            price = sku_rows[sku_id - 1][2]
            total += qty * price
            item_rows.append((order_id, sku_id, qty, price))
        order_rows.append((order_id, rng.randint(1, users), total))
    return Dataset(user_rows, sku_rows, order_rows, item_rows)


def load(server: MySQLServer, data: Dataset) -> None:
    """Insert the data set (into empty tables) in a few bulk statements."""
    with server.connection(admin=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO users (id, name) VALUES (%s, %s)", data.users)
        cur.executemany(
            "INSERT INTO skus (id, name, price_cents, stock) VALUES (%s, %s, %s, %s)", data.skus
        )
        cur.executemany(
            "INSERT INTO orders (id, user_id, total_cents) VALUES (%s, %s, %s)", data.orders
        )
        cur.executemany(
            "INSERT INTO order_items (order_id, sku_id, quantity, price_cents) "
            "VALUES (%s, %s, %s, %s)",
            data.items,
        )


def seed_database(
    server: MySQLServer, *, users: int = 10_000, skus: int = 2_000, orders: int = 5_000
) -> Dataset:
    """Generate and load the default data set; usable as ``[tool.perfsuite] seed``."""
    data = generate(users=users, skus=skus, orders=orders)
    load(server, data)
    return data


def main() -> None:
    """``PERFSUITE_MYSQL_URL=URL python -m examples.order_service.seed``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mysql-url", default=os.environ.get("PERFSUITE_MYSQL_URL"))
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--orders", type=int, default=5_000)
    args = parser.parse_args()
    if not args.mysql_url:
        parser.error("PERFSUITE_MYSQL_URL (or --mysql-url) is required")
    server = MySQLServer.from_url(args.mysql_url)
    seed_database(server, users=args.users, skus=args.skus, orders=args.orders)


if __name__ == "__main__":
    main()
