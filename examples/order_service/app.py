"""The order service of the seed story: Starlette + aiomysql + prometheus_client.

Endpoints: ``POST /orders``, ``POST /payments/callback``, ``GET /orders/{id}``,
``GET /health``, ``GET /metrics`` (pool gauges: size, in use, idle, waiting, max;
requests answered and their durations, by endpoint and status; asyncio tasks
not done).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.order_service.bodies import Invalid, json_body, order_items, pos_int
from examples.order_service.db import Pool, all_items, items_one_by_one, mysql_kwargs
from examples.order_service.faults import Faults

__all__ = ["create_app"]

# Seconds: what a Micrometer or client_golang service would expose for an API.
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
Handler = Callable[[Request], Awaitable[Response]]
# The "nokey" fault's table: no primary key, so a replica finds each row by a scan.
_AUDIT_TABLE = (
    "CREATE TABLE IF NOT EXISTS order_audit "
    "(order_id BIGINT NOT NULL, event VARCHAR(16) NOT NULL, at DATETIME(6) NOT NULL)"
)
_AUDIT_ROWS = 50


def _timed(histogram: Histogram, endpoint: str, handler: Handler) -> Handler:
    """The handler, its answers' durations observed by endpoint and status."""

    async def run(request: Request) -> Response:
        start = time.perf_counter()
        response = await handler(request)
        elapsed = time.perf_counter() - start
        histogram.labels(endpoint, str(response.status_code)).observe(elapsed)
        return response

    return run


def _metrics(registry: CollectorRegistry, state: dict[str, Pool]) -> Counter:
    gauges = {
        "size": ("connections open in the pool", lambda p: p.pool.size),
        "in_use": ("connections lent to requests", lambda p: p.in_use),
        "idle": ("connections idle in the pool", lambda p: p.pool.freesize),
        "waiting": ("requests waiting for a connection", lambda p: p.waiting),
        "max": ("the pool's maximum size", lambda p: p.pool.maxsize),
    }
    for name, (doc, read) in gauges.items():
        gauge = Gauge(f"order_service_db_pool_{name}", doc, registry=registry)
        gauge.set_function(lambda read=read: float(read(state["pool"])) if "pool" in state else 0.0)
    tasks = Gauge("order_service_asyncio_tasks", "asyncio tasks not done", registry=registry)
    tasks.set_function(_task_count)
    return Counter(
        "order_service_requests", "requests answered", ["endpoint", "status"], registry=registry
    )


def _task_count() -> float:
    """Tasks of the service's event loop not done (scraped from the loop's own thread)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop (a scrape outside the service)
        return 0.0


def checksum_order(order_id: int, cpu_ms: float = 3.5) -> str:
    """The "hot" fault: needless CPU work on the order query's path (a named function,
    so that a flame graph has something to point at): hashing for ``cpu_ms`` of this
    thread's CPU time, so that it costs the same on a fast machine and a slow one."""
    digest = str(order_id).encode()
    until = time.thread_time() + cpu_ms / 1000
    while time.thread_time() < until:
        for _ in range(50):
            digest = hashlib.sha256(digest).digest()
    return digest.hex()


async def _never_written(queue: asyncio.Queue[int]) -> None:
    """The "taskleak" fault: a worker that waits on a queue nobody writes to."""
    await queue.get()


def _recording(record: Path | None) -> list[Middleware] | None:
    if record is None:
        return None
    # Imported only when asked: it writes with perfsuite's capture writer, and the
    # service's container image holds the service's own packages, not perfsuite.
    from examples.order_service.recording import Recording

    return [Middleware(Recording, path=record)]


def create_app(
    mysql_url: str,
    *,
    pool_size: int = 10,
    faults: Faults | None = None,
    pool_min_size: int | None = None,
    record: Path | None = None,
    replica_url: str | None = None,
) -> Starlette:
    """Build the ASGI app; the pool opens at start-up (with ``pool_min_size``
    connections, default 2) and closes at shutdown; ``record``: a capture file
    the traffic is written to (see ``recording.py``); ``replica_url``: the order
    query reads from that replica (a pool of its own), as services that scale
    their reads do."""
    faults = faults or Faults()
    state: dict[str, Pool] = {}
    leaked: set[asyncio.Task[None]] = set()  # "taskleak": held, so never collected
    registry = CollectorRegistry()
    requests = _metrics(registry, state)
    durations = Histogram(
        "order_service_request_duration_seconds",
        "time to answer a request, by endpoint and status",
        ["endpoint", "status"],
        buckets=_DURATION_BUCKETS,
        registry=registry,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await aiomysql.create_pool(
            minsize=min(2 if pool_min_size is None else pool_min_size, pool_size),
            maxsize=pool_size,
            autocommit=True,
            **mysql_kwargs(mysql_url),
        )
        state["pool"] = Pool(pool)
        pools = [pool]
        if replica_url:
            replica = await aiomysql.create_pool(
                minsize=1, maxsize=pool_size, autocommit=True, **mysql_kwargs(replica_url)
            )
            state["reads"] = Pool(replica)
            pools.append(replica)
        if faults.nokey:
            async with state["pool"].connection() as conn, conn.cursor() as cur:
                await cur.execute(_AUDIT_TABLE)
        try:
            yield
        finally:
            for each in pools:
                each.close()
                try:
                    await asyncio.wait_for(each.wait_closed(), timeout=2.0)
                except TimeoutError:  # leaked connections never come back (fault "leak")
                    each.terminate()

    def answer(endpoint: str, status: int, body: Any) -> JSONResponse:
        requests.labels(endpoint, str(status)).inc()
        return JSONResponse(body, status_code=status)

    async def create_order(request: Request) -> Response:
        try:
            body = await json_body(request)
            user_id = pos_int(body, "user_id")
            wanted = order_items(body)
        except Invalid as exc:
            return answer("create_order", 422, {"error": str(exc)})
        async with state["pool"].connection() as conn, conn.cursor() as cur:
            await conn.begin()
            try:
                if not await cur.execute("SELECT id FROM users WHERE id = %s", (user_id,)):
                    await conn.rollback()
                    return answer("create_order", 422, {"error": f"unknown user {user_id}"})
                marks = ",".join(["%s"] * len(wanted))
                await cur.execute(
                    f"SELECT id, price_cents FROM skus WHERE id IN ({marks})", tuple(wanted)
                )
                prices = dict(await cur.fetchall())
                missing = sorted(set(wanted) - set(prices))
                if missing:
                    await conn.rollback()
                    return answer("create_order", 422, {"error": f"unknown sku {missing[0]}"})
                total = sum(prices[sku] * qty for sku, qty in wanted.items())
                await cur.execute(
                    "INSERT INTO orders (user_id, total_cents) VALUES (%s, %s)", (user_id, total)
                )
                order_id = cur.lastrowid
                await cur.executemany(
                    "INSERT INTO order_items (order_id, sku_id, quantity, price_cents) "
                    "VALUES (%s, %s, %s, %s)",
                    [(order_id, sku, qty, prices[sku]) for sku, qty in wanted.items()],
                )
                if faults.nokey:  # rows a replica will have to find by scanning
                    await cur.executemany(
                        "INSERT INTO order_audit (order_id, event, at) "
                        "VALUES (%s, 'created', NOW(6))",
                        [(order_id,)] * _AUDIT_ROWS,
                    )
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
        if faults.total and len(wanted) > 3:  # the "total" fault: a cent too much
            total += 1
        return answer(
            "create_order", 201, {"id": order_id, "status": "created", "total_cents": total}
        )

    async def payment_callback(request: Request) -> Response:
        try:
            body = await json_body(request)
            order_id = pos_int(body, "order_id")
            amount = pos_int(body, "amount_cents")
            payment_id = body.get("payment_id")
            if not isinstance(payment_id, str) or not 0 < len(payment_id) <= 64:
                raise Invalid("payment_id must be a string of 1 to 64 characters")
        except Invalid as exc:
            return answer("payment_callback", 422, {"error": str(exc)})
        if faults.taskleak:  # the seed's startWorker: started per callback, never ends
            leaked.add(asyncio.get_running_loop().create_task(_never_written(asyncio.Queue())))
        pool = state["pool"]
        conn = await pool.acquire()
        release = True
        try:
            async with conn.cursor() as cur:
                await conn.begin()
                await cur.execute(
                    "SELECT status, total_cents, payment_id FROM orders WHERE id = %s FOR UPDATE",
                    (order_id,),
                )
                row = await cur.fetchone()
                if row is None:
                    await conn.rollback()
                    # The seed story's bug: this early return skips the release.
                    release = not faults.leak
                    return answer("payment_callback", 404, {"error": f"no order {order_id}"})
                status, total, paid_with = row
                if amount != total:
                    await conn.rollback()
                    return answer("payment_callback", 422, {"error": "amount does not match"})
                if status == "paid":
                    await conn.rollback()
                    if paid_with == payment_id:  # a retried callback: same answer again
                        return answer(
                            "payment_callback",
                            200,
                            {"order_id": order_id, "status": "paid", "duplicate": True},
                        )
                    return answer("payment_callback", 409, {"error": "paid by another payment"})
                await cur.execute(
                    "UPDATE orders SET status = 'paid', payment_id = %s, paid_at = NOW() "
                    "WHERE id = %s",
                    (payment_id, order_id),
                )
                if faults.nokey:
                    await cur.execute(
                        "UPDATE order_audit SET event = 'paid' WHERE order_id = %s", (order_id,)
                    )
                await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        finally:
            if release:
                pool.release(conn)
        return answer(
            "payment_callback", 200, {"order_id": order_id, "status": "paid", "duplicate": False}
        )

    async def get_order(request: Request) -> Response:
        try:
            order_id = int(request.path_params["order_id"])
        except ValueError:
            return answer("order_query", 422, {"error": "order id must be an integer"})
        reads = state.get("reads", state["pool"])
        async with reads.connection() as conn, conn.cursor() as cur:
            if faults.slow_query_ms:
                # In the database, on this connection: the query itself is slower, and
                # MySQL's SLEEP has sub-millisecond resolution (asyncio under uvloop: 1 ms).
                await cur.execute("SELECT SLEEP(%s)", (faults.slow_query_ms / 1000.0,))
                await cur.fetchall()
            # The "scan" fault: an expression of the id, which no index serves.
            where = "id + 0 = %s" if faults.scan else "id = %s"
            # The "delay" fault: the statement itself sleeps (once, for the one row).
            delay = ", SLEEP(%s)" if faults.delay_query_ms else ""
            args = (faults.delay_query_ms / 1000.0,) if delay else ()
            await cur.execute(
                "SELECT id, user_id, status, total_cents, payment_id"
                f"{delay} FROM orders WHERE {where}",
                (*args, order_id),
            )
            row = await cur.fetchone()
            if row is None:
                return answer("order_query", 404, {"error": f"no order {order_id}"})
            items = await (
                items_one_by_one(cur, order_id) if faults.nplus1 else all_items(cur, order_id)
            )
        keys = ("id", "user_id", "status", "total_cents", "payment_id")
        order = dict(zip(keys, row[: len(keys)], strict=True))
        if faults.hot:
            order["checksum"] = checksum_order(order_id)
        order["items"] = [{"sku_id": s, "quantity": q, "price_cents": p} for s, q, p in items]
        if faults.total and len(items) > 3:
            order["total_cents"] += 1
        return answer("order_query", 200, order)

    async def health(request: Request) -> Response:
        try:
            async with state["pool"].connection() as conn, conn.cursor() as cur:
                await cur.execute("SELECT 1")
        except (aiomysql.Error, OSError) as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/orders", _timed(durations, "create_order", create_order), methods=["POST"]),
            Route(
                "/orders/{order_id}",
                _timed(durations, "order_query", get_order),
                methods=["GET"],
            ),
            Route(
                "/payments/callback",
                _timed(durations, "payment_callback", payment_callback),
                methods=["POST"],
            ),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
        middleware=_recording(record),
    )
