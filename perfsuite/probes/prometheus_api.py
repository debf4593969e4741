"""A Prometheus server's HTTP API: range queries, for expectations judged there.

With ``[tool.perfsuite.metrics] prometheus_url``, an expectation's two sides
are sent to ``/api/v1/query_range`` over the test's window (one step a
second) and judged on what the server answers, so that its own scrapes and
its full PromQL count. The answer is turned into the same per-step values
the local evaluator gives.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from perfsuite.errors import PromQLError
from perfsuite.stats.promql import Value, Vector, labels_of

__all__ = ["PrometheusAPI"]


class PrometheusAPI:
    """Queries one Prometheus server (its base URL)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, trust_env=False)

    def _get(self, path: str, **params: Any) -> Any:
        where = f"{self.url}/api/v1/{path}"
        try:
            response = self._client.get(where, params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PromQLError(f"cannot query Prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise PromQLError(
                f"Prometheus at {self.url} refused {params.get('query', path)!r}: "
                f"{body.get('errorType', '')}: {body.get('error', response.text[:300])}"
            )
        return body["data"]

    def range(self, text: str, times: list[float]) -> list[Value]:
        """``text``'s value at each of ``times`` (evenly spaced, a second apart)."""
        if not times:
            return []
        step = times[1] - times[0] if len(times) > 1 else 1.0
        data = self._get("query_range", query=text, start=times[0], end=times[-1], step=step)
        by_step: list[Vector] = [{} for _ in times]
        for series in data["result"]:
            labels = labels_of(series["metric"])
            for t, v in series["values"]:
                i = round((float(t) - times[0]) / step)
                if 0 <= i < len(times):
                    by_step[i][labels] = float(v)
        return list(by_step)

    def numbers(self, text: str, times: list[float]) -> list[float]:
        """A scalar expression's value at each of ``times`` (NaN where it has none)."""
        out = []
        for value in self.range(text, times):
            if isinstance(value, float):
                out.append(value)
            else:
                out.append(next(iter(value.values())) if len(value) == 1 else math.nan)
        return out

    def names(self) -> list[str]:
        """Every metric name the server has (for a message when one is missing)."""
        names: list[str] = self._get("label/__name__/values")
        return sorted(names)

    def close(self) -> None:
        """Close the client."""
        self._client.close()
