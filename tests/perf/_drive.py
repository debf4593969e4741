"""A minimal request driver for the example suite until the load engine lands.

Sends requests one after another with httpx and keeps the seed story's two
baseline numbers: mean latency and error rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Outcome:
    """Requests sent, errors, and mean latency in milliseconds."""

    requests: int
    errors: int
    mean_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests


def drive(
    client: httpx.Client,
    build: Callable[[int], httpx.Request],
    count: int,
    ok: Callable[[httpx.Response], bool],
) -> Outcome:
    """Send ``count`` requests built by ``build(i)``; count those not ``ok`` as errors."""
    errors, total = 0, 0.0
    for i in range(count):
        request = build(i)
        start = time.perf_counter()
        try:
            response = client.send(request)
            failed = not ok(response)
        except httpx.HTTPError:
            failed = True
        total += time.perf_counter() - start
        errors += failed
    return Outcome(requests=count, errors=errors, mean_ms=total / count * 1000.0)
