"""A small HTTP/1.1 server for the engine's tests, run as a subprocess.

Paths: /ok, /status/<code>, /sleep/<ms>, /cpu/<us> (busy for that long,
holding the only thread: capacity 1e6/us req/s), /body/<text>, /close
(answers with Connection: close), /drop (closes without answering), /hang
(never answers), /flaky/<n> (every n-th request of the server never
answers), /stall/<a>/<b> (requests that arrive between a and b ms after the
first one since the reset are all answered at b), /early (a 103 Early Hints
before the answer), /twice (the answer, then the same again unasked),
/eof/<text> (a body without length, ended by closing), /stats (requests
seen, max concurrency, first and last arrival, TLS server names asked for),
/arrivals (their times), /peers (each arrival's time and client address),
/reset; a journey: /create (an order: its id and
amount in JSON, its session in a cookie), /pay/<id>/<amount> (200 only with
that order's amount and session cookie, else 409), /order/<id>.
HEAD gets the headers of a GET (with its Content-Length) and no body.
Every 1,000th answer on a connection says Connection: close, as nginx does.
With ``--tls PEM`` (certificate chain and key) it speaks HTTPS; ``--host ADDR``
listens there instead of 127.0.0.1 (an address of a network namespace).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time

KEEPALIVE_REQUESTS = 1000


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.inflight = 0
        self.max_inflight = 0
        self.first = 0.0
        self.last = 0.0
        self.paths: dict[str, int] = {}
        self.arrivals: list[float] = []  # monotonic arrival times, the first 100,000
        self.peers: list[tuple[float, str]] = []  # the same, with the client's address
        self.sni: dict[str, int] = {}  # TLS: server names asked for, and how often
        self.orders: dict[int, int] = {}  # /create: order -> amount
        self.paid: dict[int, bool] = {}  # /pay: order -> paid with its own amount and session

    def tick(self, path: str) -> int:
        """How many times ``path`` was asked for, this one included."""
        self.paths[path] = self.paths.get(path, 0) + 1
        return self.paths[path]


STATE = State()


def _response(status: int, body: bytes, close: bool) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


class Handler(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = str((transport.get_extra_info("peername") or ("?",))[0])
        self.buf = b""
        self.served = 0

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = 0
            cookie = ""
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
                if key.strip().lower() == b"cookie":
                    cookie = value.decode().strip()
            if len(rest) < length:
                return
            self.buf = rest[length:]
            method, path = (part.decode() for part in head.split(b" ", 2)[:2])
            asyncio.get_running_loop().create_task(self.handle(path, method, cookie))

    async def handle(self, path: str, method: str = "GET", cookie: str = "") -> None:
        if path in ("/stats", "/reset", "/arrivals", "/peers"):
            if path == "/reset":
                STATE.reset()
            data = {
                k: v for k, v in vars(STATE).items() if k not in ("arrivals", "orders", "peers")
            }
            lists = {"/arrivals": STATE.arrivals, "/peers": STATE.peers}
            body = json.dumps(lists.get(path, data)).encode()
            self.transport.write(_response(200, body, False))
            return
        now = time.monotonic()
        STATE.count += 1
        STATE.first = STATE.first or now
        STATE.last = now
        if len(STATE.arrivals) < 100_000:
            STATE.arrivals.append(now)
            STATE.peers.append((now, self.peer))
        STATE.inflight += 1
        STATE.max_inflight = max(STATE.max_inflight, STATE.inflight)
        try:
            parts = path.split("/")
            kind = parts[1]
            status, body, close = 200, b"ok", False
            if kind == "status":
                status = int(parts[2])
            elif kind == "sleep":
                await asyncio.sleep(int(parts[2]) / 1000)
            elif kind == "cpu":
                until = time.perf_counter() + int(parts[2]) / 1e6
                while time.perf_counter() < until:
                    pass
            elif kind == "body":
                body = parts[2].encode()
            elif kind == "close":
                close = True
            elif kind == "drop":
                self.transport.close()
                return
            elif kind == "hang" or (kind == "flaky" and STATE.tick(path) % int(parts[2]) == 0):
                await asyncio.sleep(3600)
            elif kind == "stall":  # /stall/<from ms>/<to ms> after the first arrival
                since = (now - STATE.first) * 1000
                if int(parts[2]) <= since < int(parts[3]):
                    await asyncio.sleep((int(parts[3]) - since) / 1000)
            elif kind == "create":  # a journey's first step: an order, its amount, a session
                order = len(STATE.orders) + 1
                STATE.orders[order] = 100 + order % 7
                body = json.dumps({"id": order, "amount": STATE.orders[order]}).encode()
                self.transport.write(
                    f"HTTP/1.1 201 X\r\nContent-Length: {len(body)}\r\n"
                    f"Location: /order/{order}\r\nSet-Cookie: session=s{order}; Path=/\r\n"
                    "\r\n".encode()
                    + body
                )
                return
            elif kind == "pay":  # /pay/<id>/<amount>: right only with that order's session
                order, amount = int(parts[2]), int(parts[3])
                right = STATE.orders.get(order) == amount and cookie == f"session=s{order}"
                STATE.paid[order] = right
                status = 200 if right else 409
            elif kind == "order":  # /order/<id>: paid or not
                body = json.dumps({"id": int(parts[2]), "paid": STATE.paid.get(int(parts[2]))})
                body = body.encode()
            elif kind == "early":
                self.transport.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            elif kind == "eof":
                self.transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                self.transport.write(parts[2].encode())
                self.transport.close()
                return
            self.served += 1
            close = close or self.served % KEEPALIVE_REQUESTS == 0
            response = _response(status, body, close)
            if method == "HEAD":
                response = response[: response.index(b"\r\n\r\n") + 4]
            self.transport.write(response + response if kind == "twice" else response)
            if close:
                self.transport.close()
        finally:
            STATE.inflight -= 1


def _tls(cert: str) -> ssl.SSLContext:
    """TLS with the certificate chain and key in ``cert``; it keeps the SNI names asked for."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert)

    def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        STATE.sni[str(name)] = STATE.sni.get(str(name), 0) + 1

    context.sni_callback = sni  # type: ignore[assignment]
    return context


async def main(port: int, cert: str | None, host: str = "127.0.0.1") -> None:
    tls = _tls(cert) if cert else None
    server = await asyncio.get_running_loop().create_server(Handler, host, port, ssl=tls)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # loadserver.py [PORT] [--tls CHAIN_AND_KEY.pem] [--host ADDR]
    args = sys.argv[1:]
    pem = args[args.index("--tls") + 1] if "--tls" in args else None
    host = args[args.index("--host") + 1] if "--host" in args else "127.0.0.1"
    numbers = [a for a in args if a.isdigit()]
    asyncio.run(main(int(numbers[0]) if numbers else 0, pem, host))
