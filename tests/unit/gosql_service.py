"""A second, minimal service for the pool check: Go-style ``go_sql_*`` metrics.

It mimics what Go's database/sql collector exposes and leaks on a path of
its own: ``GET /items/<id>`` with ``LEAKY=1`` never releases its connection
when the item is missing *and* the id is odd (an error path the example
service does not have). Run: ``PERFSUITE_MYSQL_URL=mysql://... python gosql_service.py PORT``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from urllib.parse import unquote, urlsplit

import aiomysql
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

LEAKY = os.environ.get("LEAKY") == "1"
STATE: dict[str, object] = {"waits": 0}


async def pool() -> aiomysql.Pool:
    if "pool" not in STATE:
        url = urlsplit(os.environ["PERFSUITE_MYSQL_URL"])
        STATE["pool"] = await aiomysql.create_pool(
            host=url.hostname,
            port=url.port or 3306,
            user=unquote(url.username or ""),
            password=unquote(url.password or ""),
            db=url.path.lstrip("/"),
            minsize=1,
            maxsize=8,
            autocommit=True,
        )
    return STATE["pool"]  # type: ignore[return-value]


async def item(request: Request) -> Response:
    p = await pool()
    if p.freesize == 0 and p.size >= p.maxsize:
        STATE["waits"] = int(STATE["waits"]) + 1  # type: ignore[call-overload]
    conn = await p.acquire()
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1 FROM DUAL WHERE %s < 1000", (int(request.path_params["id"]),))
        found = await cur.fetchone()
    if found is None:
        if LEAKY and int(request.path_params["id"]) % 2:
            return JSONResponse({"error": "missing"}, status_code=404)  # the leak
        p.release(conn)
        return JSONResponse({"error": "missing"}, status_code=404)
    p.release(conn)
    return JSONResponse({"id": request.path_params["id"]})


async def metrics(request: Request) -> Response:
    p = await pool()
    in_use = p.size - p.freesize
    text = (
        "# TYPE go_sql_in_use_connections gauge\n"
        f'go_sql_in_use_connections{{db_name="perf"}} {in_use}\n'
        "# TYPE go_sql_idle_connections gauge\n"
        f'go_sql_idle_connections{{db_name="perf"}} {p.freesize}\n'
        "# TYPE go_sql_wait_count_total counter\n"
        f'go_sql_wait_count_total{{db_name="perf"}} {STATE["waits"]}\n'
        "# TYPE go_sql_max_open_connections gauge\n"
        f'go_sql_max_open_connections{{db_name="perf"}} {p.maxsize}\n'
    )
    return PlainTextResponse(text)


async def health(request: Request) -> Response:
    await pool()
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[Route("/items/{id:int}", item), Route("/metrics", metrics), Route("/health", health)]
)

if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
