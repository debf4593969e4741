"""A TCP relay that delays one direction of its connections (this kernel has no
``tc netem``): a slow link one way, made by the test."""

from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time
from typing import Literal

__all__ = ["SlowRelay"]


class SlowRelay:
    """A TCP relay on loopback to ``upstream``: what the client sends reaches the
    upstream ``delay`` seconds later; the way back is not delayed (an asymmetric
    link, the case a clock estimate cannot see into). ``slow="down"``: the other
    way, what the upstream sends reaches the client late."""

    def __init__(
        self, upstream: tuple[str, int], delay: float, slow: Literal["up", "down"] = "up"
    ) -> None:
        self.upstream, self.delay, self.slow = upstream, delay, slow
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets += [client, server]
            up, down = (client, server), (server, client)
            slow, fast = (up, down) if self.slow == "up" else (down, up)
            threading.Thread(target=self._delayed, args=slow, daemon=True).start()
            threading.Thread(target=self._pipe, args=fast, daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _delayed(self, src: socket.socket, dst: socket.socket) -> None:
        pending: list[tuple[float, int, bytes]] = []
        cond = threading.Condition()
        done = [False]

        def sender() -> None:
            while True:
                with cond:
                    while not pending and not done[0]:
                        cond.wait()
                    if not pending:
                        break
                    due, _, data = pending[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        cond.wait(wait)
                        continue
                    heapq.heappop(pending)
                with contextlib.suppress(OSError):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=sender, daemon=True).start()
        n = 0
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                with cond:
                    n += 1
                    heapq.heappush(pending, (time.monotonic() + self.delay, n, data))
                    cond.notify()
        with cond:
            done[0] = True
            cond.notify()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
