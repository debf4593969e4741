"""The session's summary table in the terminal (rich)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from perfsuite.report.rows import diff_rows, rows, stale_rows, worst_verdict

__all__ = [
    "render_cost_table",
    "render_diff_table",
    "render_interrupted",
    "render_stale_table",
    "render_table",
]

_STYLE = {
    "regressed": "bold red",
    "improved": "green",
    "FAIL": "bold red",
    "LEAK": "bold red",
    "?": "yellow",
}


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def render_table(entries: Sequence[dict[str, Any]], *, width: int, color: bool) -> str:
    """The table as text (with ANSI styles when ``color``)."""
    table = Table(title="perfsuite", title_justify="left", show_lines=False)
    for name, justify in [
        ("test", "left"),
        ("endpoint", "left"),
        ("phases", "left"),
        ("ok/s", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("errors", "right"),
        ("SLO", "center"),
        ("compared", "center"),
        ("pool", "center"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for entry in entries:
        for r in rows(entry):
            table.add_row(
                r.label,
                r.endpoint,
                r.phases,
                "-" if r.rps is None else f"{r.rps:,.0f}",
                _ms(r.p50),
                _ms(r.p95),
                _ms(r.p99),
                f"{r.errors}/{r.requests}",
                f"[{_STYLE.get(r.slo, '')}]{r.slo}" if r.slo in _STYLE else r.slo,
                f"[{_STYLE[r.verdict]}]{r.verdict}" if r.verdict in _STYLE else r.verdict,
                f"[{_STYLE[r.pool]}]{r.pool}" if r.pool in _STYLE else r.pool,
            )
    return _text(table, width=width, color=color)


def _text(table: Table, *, width: int, color: bool) -> str:
    out = io.StringIO()
    Console(
        file=out, width=width, force_terminal=color, color_system="standard" if color else None
    ).print(table)
    return out.getvalue()


def _per(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def render_cost_table(entries: Sequence[dict[str, Any]], *, width: int, color: bool) -> str:
    """What each load cost per answered request (database and service CPU); empty
    when no test has it."""
    table = Table(title="perfsuite: cost per request", title_justify="left")
    names = ("test", "requests", "queries", "rows examined", "db ms", "no index", "CPU ms")
    for name in (*names, "compared"):
        table.add_column(name, justify="left" if name == "test" else "right")
    for entry in entries:
        costs = entry.get("cost") or []
        if entry.get("ab") and costs:  # the candidate's rounds: their median, one line
            costs = [_median_cost([c for c in costs if c])]
        for i, cost in enumerate(costs):
            if cost is None:  # a load that went elsewhere
                continue
            per = cost["per_request"]
            name = entry["id"].rsplit("::", 1)[-1]
            one = len(entry["cost"]) == 1
            compared = (entry.get("comparisons") or {}).get(
                "cost" if one else f"load {i + 1}, cost"
            )
            verdict = worst_verdict(compared or [])
            table.add_row(
                name if len(costs) == 1 else f"{name} (load {i + 1})",
                f"{cost['requests']:,}",
                _per(per.get("queries_per_request")),
                _per(per.get("rows_examined_per_request"), 1),
                _per(per.get("db_ms_per_request"), 3),
                _per(per.get("no_index_used"), 0),
                _per(per.get("cpu_ms_per_request"), 3),
                f"[{_STYLE[verdict]}]{verdict}" if verdict in _STYLE else verdict,
            )
    return _text(table, width=width, color=color) if table.row_count else ""


def render_diff_table(entries: Sequence[dict[str, Any]], *, width: int, color: bool) -> str:
    """Each compared replay's endpoints: how many answers differ, and where; empty when
    no replay was compared."""
    table = Table(title="perfsuite: replayed answers compared", title_justify="left")
    for name in ("test", "endpoint", "differ", "compared", "rate", "fields that differ"):
        numeric = name in ("differ", "compared", "rate")
        table.add_column(name, justify="right" if numeric else "left")
    for r in diff_rows(entries):
        style = "red" if r.differing else "green"
        table.add_row(
            r.test, r.endpoint, f"[{style}]{r.differing:,}", f"{r.compared:,}", f"{r.rate:.2%}",
            r.fields,
        )  # fmt: skip
    return _text(table, width=width, color=color) if table.row_count else ""


def render_stale_table(entries: Sequence[dict[str, Any]], *, width: int, color: bool) -> str:
    """The stale reads of each endpoint with a ``stale=`` predicate (measured phases);
    empty when none has one."""
    table = Table(title="perfsuite: stale reads", title_justify="left")
    for name in ("test", "endpoint", "stale", "of successes", "rate"):
        table.add_column(name, justify="left" if name in ("test", "endpoint") else "right")
    for r in stale_rows(entries):
        style = "yellow" if r.stale else "green"
        table.add_row(r.test, r.endpoint, f"[{style}]{r.stale:,}", f"{r.ok:,}", f"{r.rate:.2%}")
    return _text(table, width=width, color=color) if table.row_count else ""


def render_interrupted(nodeid: str, described: Sequence[str]) -> str:
    """What the load of a test stopped by Ctrl-C or SIGTERM measured until then."""
    body = "\n\n".join(described)
    return f"\nperfsuite: {nodeid} was interrupted; what its load measured until then:\n{body}\n"


def _median_cost(costs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An A/B test's cost line: the median of its candidate rounds, metric by metric."""
    per: dict[str, float | None] = {}
    for name in costs[0]["per_request"]:
        values = sorted(v for c in costs if (v := c["per_request"].get(name)) is not None)
        per[name] = values[len(values) // 2] if values else None
    requests = sorted(c["requests"] for c in costs)[len(costs) // 2]
    return {"requests": requests, "per_request": per}
