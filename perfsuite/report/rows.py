"""One summary row per test and endpoint, read from a run record's test entry."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DiffRow", "Row", "StaleRow", "diff_rows", "rows", "stale_rows", "worst_verdict"]

_ORDER = {"regressed": 0, "improved": 1, "inconclusive": 2, "unchanged": 3}


@dataclass(frozen=True, kw_only=True)
class Row:
    """What the summary tables show for one endpoint of one test (measured phases)."""

    test: str
    endpoint: str
    phases: str
    rps: float | None  # successful requests per second
    p50: float | None
    p95: float | None
    p99: float | None
    requests: int
    errors: int
    slo: str  # "pass", "FAIL" or "-"
    verdict: str  # the worst metric verdict, "-" without a comparison
    pool: str  # "idle", "LEAK", "?" (the database side could not judge) or "-"
    interrupted: bool = False  # Ctrl-C or SIGTERM stopped its load: numbers of a part of it

    @property
    def label(self) -> str:
        """The test's own name (no path), marked when it was interrupted."""
        name = self.test.rsplit("::", 1)[-1]
        return f"{name} (interrupted)" if self.interrupted else name


@dataclass(frozen=True, kw_only=True)
class DiffRow:
    """A compared replay's endpoint: answers that differ from the reference's."""

    test: str
    endpoint: str
    differing: int
    compared: int
    fields: str  # the fields that differ, most often first (noise left out)

    @property
    def rate(self) -> float:
        """The share of compared answers that differ."""
        return self.differing / self.compared if self.compared else 0.0


@dataclass(frozen=True, kw_only=True)
class StaleRow:
    """An endpoint with a ``stale=`` predicate: its stale reads in the measured phases."""

    test: str
    endpoint: str
    stale: int
    ok: int  # its successes (stale reads are among them)

    @property
    def rate(self) -> float:
        """The share of successes that were stale."""
        return self.stale / self.ok if self.ok else 0.0


def stale_rows(entries: Iterable[Mapping[str, Any]]) -> Iterator[StaleRow]:
    """A row per load and endpoint that judged its answers' staleness."""
    for entry in entries:
        for load in entry.get("loads") or []:
            measured = {p["name"] for p in load["phases"] if p["role"] == "measure"}
            totals: dict[str, list[int]] = {}
            for cell in load["cells"]:
                if "stale" in cell and cell["phase"] in measured:
                    total = totals.setdefault(cell["endpoint"], [0, 0])
                    total[0] += cell["stale"]
                    total[1] += cell["summary"]["ok"]
            for endpoint, (stale, ok) in totals.items():
                name = entry["id"].rsplit("::", 1)[-1]
                yield StaleRow(test=name, endpoint=endpoint, stale=stale, ok=ok)


def diff_rows(entries: Iterable[Mapping[str, Any]]) -> Iterator[DiffRow]:
    """A row per endpoint of each compared replay (``diffs`` of the entries)."""
    for entry in entries:
        for diffs in entry.get("diffs") or []:
            for endpoint, d in sorted(diffs.items()):
                top = sorted(d["fields"].items(), key=lambda x: (-x[1], x[0]))[:3]
                named = [f"{name} ({n})" for name, n in top]
                yield DiffRow(
                    test=entry["id"].rsplit("::", 1)[-1],
                    endpoint=endpoint,
                    differing=d["differing"],
                    compared=d["compared"],
                    fields=", ".join(named) or "-",
                )


def _measured(load: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
    measured = {p["name"] for p in load["phases"] if p["role"] == "measure"}
    cells = [c for c in load["cells"] if c["endpoint"] == endpoint and c["phase"] in measured]
    requests = sum(c["summary"]["requests"] for c in cells)
    errors = sum(c["summary"]["errors"] for c in cells)
    # Successful requests (records before "ok" was kept: requests less errors, the same count).
    ok = sum(
        c["summary"].get("ok", c["summary"]["requests"] - c["summary"]["errors"]) for c in cells
    )
    duration = sum(p["duration"] for p in load["phases"] if p["name"] in measured)

    def worst(key: str) -> float | None:
        values = [c["summary"][key] for c in cells if c["summary"].get(key) is not None]
        return max(values) if values else None

    return {
        "phases": ", ".join(sorted(measured)) if len(measured) <= 2 else f"{len(measured)} phases",
        "requests": requests,
        "errors": errors,
        "rps": ok / duration if duration else None,
        # The worst phase's percentile: a ramp is as good as its worst step.
        "p50": worst("p50"),
        "p95": worst("p95"),
        "p99": worst("p99"),
    }


def worst_verdict(comparisons: Iterable[Mapping[str, Any]]) -> str:
    """The worst verdict of some compared metrics (regressed first), "-" for none."""
    verdicts = [c["verdict"] for c in comparisons]
    return min(verdicts, key=lambda v: _ORDER[v]) if verdicts else "-"


def pool_cell(pool: Mapping[str, Any]) -> str:
    """``idle``, ``LEAK``, or ``?`` where the database side alone could not judge
    (records before that verdict existed were all judged)."""
    if not pool["ok"]:
        return "LEAK"
    return "idle" if pool.get("judged", True) else "?"


def rows(entry: Mapping[str, Any]) -> Iterator[Row]:
    """The rows of one test entry."""
    slo = (
        "-" if not entry["slo"] else ("pass" if all(s["passed"] for s in entry["slo"]) else "FAIL")
    )
    pool = entry.get("pool")
    pool_text = "-" if pool is None else pool_cell(pool)
    comparisons = entry.get("comparisons", {})
    if entry.get("ab"):
        yield from _ab_rows(entry, slo, pool_text, comparisons)
        return
    loads = entry["loads"]
    for i, load in enumerate(loads):
        endpoints = list(dict.fromkeys(c["endpoint"] for c in load["cells"]))
        for endpoint in endpoints:
            m = _measured(load, endpoint)
            # The gate names a test's comparisons as it names its loads.
            where = endpoint if len(loads) == 1 else f"load {i + 1}, {endpoint}"
            verdict = worst_verdict(comparisons.get(where, []))
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


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    mid = len(known) // 2
    return known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2


def _ab_rows(
    entry: Mapping[str, Any], slo: str, pool: str, comparisons: Mapping[str, Any]
) -> Iterator[Row]:
    """An A/B test: one row per endpoint, the candidate's median round, the pairs' verdict."""
    rounds: dict[str, list[dict[str, Any]]] = {}
    for load in entry["loads"]:
        for endpoint in dict.fromkeys(c["endpoint"] for c in load["cells"]):
            rounds.setdefault(endpoint, []).append(_measured(load, endpoint))
    for endpoint, ms in rounds.items():
        verdicts = [
            c["verdict"]
            for where, cs in comparisons.items()
            if where == endpoint or where.endswith(f", {endpoint}")
            for c in cs
        ]
        yield Row(
            test=entry["id"],
            endpoint=endpoint,
            phases=f"{ms[0]['phases']}, {len(ms)} rounds",
            rps=_median([m["rps"] for m in ms]),
            p50=_median([m["p50"] for m in ms]),
            p95=_median([m["p95"] for m in ms]),
            p99=_median([m["p99"] for m in ms]),
            requests=sum(m["requests"] for m in ms),
            errors=sum(m["errors"] for m in ms),
            slo=slo,
            verdict=min(verdicts, key=lambda v: _ORDER[v]) if verdicts else "-",
            pool=pool,
            interrupted=entry.get("outcome") == "interrupted",
        )
