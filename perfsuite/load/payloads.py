"""Request bytes per endpoint, built ahead of the schedule."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

import httpx

from perfsuite.load.scenario import Builder, Context, encode_request

__all__ = ["Payloads"]


class Payloads:
    """Request bytes per endpoint: one constant, or a ring built ahead of time.

    Building with httpx costs ~30 µs; the ring is refilled between sends in
    slices, so a builder's cost is not paid on the schedule's critical path.
    """

    def __init__(
        self, builds: Sequence[Builder | httpx.Request | None], ctx: Context, ahead: int
    ) -> None:
        """``builds``: per endpoint, its request or builder; None for a journey's
        endpoints (their steps are built when sent, from the user's values)."""
        self._ctx = ctx
        self._builders = list(builds)
        self._static: list[bytes | None] = []
        self._rings: list[deque[bytes]] = []
        self._ahead = ahead
        for build in self._builders:
            if build is None:
                self._static.append(b"")
                self._rings.append(deque())
            elif callable(build):
                self._static.append(None)
                self._rings.append(deque(encode_request(build(ctx)) for _ in range(ahead)))
            else:
                self._static.append(encode_request(build))
                self._rings.append(deque())

    def get(self, endpoint: int) -> bytes:
        static = self._static[endpoint]
        if static is not None:
            return static
        ring = self._rings[endpoint]
        if not ring:
            self.refill(endpoint, 1)
        return ring.popleft()

    def refill(self, endpoint: int, count: int) -> None:
        build = self._builders[endpoint]
        assert callable(build)
        ring = self._rings[endpoint]
        for _ in range(count):
            ring.append(encode_request(build(self._ctx)))

    def top_up(self, budget_ns: int = 2_000_000) -> None:
        """Refill the rings for at most ``budget_ns`` (called off the hot path).

        The budget keeps the event loop from stalling (a stall would make sends
        late); a ring that runs dry is refilled inline, one request at a time.
        """
        deadline = time.perf_counter_ns() + budget_ns
        for ep, static in enumerate(self._static):
            if static is None:
                ring = self._rings[ep]
                build = self._builders[ep]
                assert callable(build)
                while len(ring) < self._ahead and time.perf_counter_ns() < deadline:
                    ring.append(encode_request(build(self._ctx)))
