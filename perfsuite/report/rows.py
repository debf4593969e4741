"""One summary row per test and endpoint, read from a run record's test entry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Row", "rows"]

_ORDER = {"regressed": 0, "improved": 1, "inconclusive": 2, "unchanged": 3}


@dataclass(frozen=True, kw_only=True)
class Row:
    """What the summary tables show for one endpoint of one test (measured phases)."""

    test: str
    endpoint: str
    phases: str
    rps: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    requests: int
    errors: int
    slo: str  # "pass", "FAIL" or "-"
    verdict: str  # the worst metric verdict, "-" without a comparison
    pool: str  # "idle", "LEAK" or "-"
    interrupted: bool = False  # Ctrl-C or SIGTERM stopped its load: numbers of a part of it

    @property
    def label(self) -> str:
        """The test's own name (no path), marked when it was interrupted."""
        name = self.test.rsplit("::", 1)[-1]
        return f"{name} (interrupted)" if self.interrupted else name


def _measured(load: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
    measured = {p["name"] for p in load["phases"] if p["role"] == "measure"}
    cells = [c for c in load["cells"] if c["endpoint"] == endpoint and c["phase"] in measured]
    requests = sum(c["summary"]["requests"] for c in cells)
    duration = sum(p["duration"] for p in load["phases"] if p["name"] in measured)

    def worst(key: str) -> float | None:
        values = [c["summary"][key] for c in cells if c["summary"].get(key) is not None]
        return max(values) if values else None

    return {
        "phases": ", ".join(sorted(measured)) if len(measured) <= 2 else f"{len(measured)} phases",
        "requests": requests,
        "errors": sum(c["summary"]["errors"] for c in cells),
        "rps": requests / duration if duration else None,
        # The worst phase's percentile: a ramp is as good as its worst step.
        "p50": worst("p50"),
        "p95": worst("p95"),
        "p99": worst("p99"),
    }


def rows(entry: Mapping[str, Any]) -> Iterator[Row]:
    """The rows of one test entry."""
    slo = (
        "-" if not entry["slo"] else ("pass" if all(s["passed"] for s in entry["slo"]) else "FAIL")
    )
    pool = entry.get("pool")
    pool_text = "-" if pool is None else ("idle" if pool["ok"] else "LEAK")
    comparisons = entry.get("comparisons", {})
    for load in entry["loads"]:
        endpoints = list(dict.fromkeys(c["endpoint"] for c in load["cells"]))
        for endpoint in endpoints:
            m = _measured(load, endpoint)
            verdicts = [c["verdict"] for c in comparisons.get(endpoint, [])]
            verdict = min(verdicts, key=lambda v: _ORDER[v]) if verdicts else "-"
            yield Row(
                test=entry["id"],
                endpoint=endpoint,
                phases=m["phases"],
                rps=m["rps"],
                p50=m["p50"],
                p95=m["p95"],
                p99=m["p99"],
                requests=m["requests"],
                errors=m["errors"],
                slo=slo,
                verdict=verdict,
                pool=pool_text,
                interrupted=entry.get("outcome") == "interrupted",
            )
