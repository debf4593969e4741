"""The costliest statements of a load, in the manner of pt-query-digest.

Read from a run record's ``cost`` (:func:`perfsuite.store.runs.encode_cost`):
per digest its calls, calls per request, total and slowest time, rows
examined per call and the calls that used no index, most total time first.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["cost_line", "statements_html", "statements_text", "status_line"]

_WIDTH = 90  # of the statement's text in the terminal


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _rows(cost: Mapping[str, Any], top: int) -> list[dict[str, Any]]:
    requests = cost["requests"] or 0
    out = []
    for rank, s in enumerate(cost["statements"][:top], 1):
        calls = s["calls"]
        out.append(
            {
                "rank": rank,
                "calls": calls,
                "per_request": calls / requests if requests else None,
                "total_ms": s["total_ms"],
                "max_ms": s["max_ms"],
                "rows_per_call": s["rows_examined"] / calls if calls else 0.0,
                "no_index": s["no_index_used"],
                "text": " ".join(str(s["text"]).split()),
            }
        )
    return out


def _num(value: float | None, spec: str) -> str:
    """A number, or "-" where there is none (no request answered: nothing per request)."""
    return "-" if value is None else format(value, spec)


def cost_line(cost: Mapping[str, Any]) -> str:
    """``2.00 queries, 3.0 rows examined, 0.25 ms in the database ... per request``."""
    per = cost["per_request"]
    parts = [
        f"{_num(per.get('queries_per_request'), '.2f')} queries",
        f"{_num(per.get('rows_examined_per_request'), ',.1f')} rows examined",
        f"{_num(per.get('db_ms_per_request'), '.3f')} ms in the database",
    ]
    if per.get("cpu_ms_per_request") is not None:
        parts.append(f"{per['cpu_ms_per_request']:.3f} ms of service CPU")
    scans = int(per.get("no_index_used") or 0)
    tail = f"; {scans:,} statements without an index" if scans else ""
    return f"per request ({cost['requests']:,} answered): {', '.join(parts)}{tail}"


def status_line(cost: Mapping[str, Any]) -> str:
    """The server's counters' growth during the load, those that moved (or none)."""
    moved = [f"{name} +{value:,}" for name, value in (cost.get("status") or {}).items() if value]
    return "server counters: " + (", ".join(moved) if moved else "none moved")


def _phase_rows(cost: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str, str]]:
    rows = []
    for p in cost.get("phases") or []:
        per = p["per_request"]
        rows.append(
            (
                p["phase"],
                p["role"],
                f"{p['requests']:,}",
                _num(per.get("queries_per_request"), ".2f"),
                _num(per.get("rows_examined_per_request"), ",.1f"),
                _num(per.get("db_ms_per_request"), ".3f"),
                f"{int(per.get('no_index_used') or 0):,}",
            )
        )
    return rows


def statements_text(cost: Mapping[str, Any], *, top: int = 10) -> str:
    """A fixed-width table of the costliest statements, for the terminal."""
    lines = [cost_line(cost), status_line(cost)]
    phases = _phase_rows(cost)
    if phases:
        lines.append(
            f"{'phase':<16} {'role':<8} {'requests':>9} {'queries':>8} {'rows ex':>9} "
            f"{'db ms':>7} {'no idx':>6}   (per request)"
        )
        lines += [
            f"{n:<16} {r:<8} {q:>9} {a:>8} {b:>9} {c:>7} {d:>6}" for n, r, q, a, b, c, d in phases
        ]
    lines += [
        f"{'rank':>4} {'calls':>8} {'per req':>8} {'total ms':>10} {'max ms':>8} "
        f"{'rows/call':>9} {'no idx':>6}  statement",
    ]
    for r in _rows(cost, top):
        per = "-" if r["per_request"] is None else f"{r['per_request']:.2f}"
        text = r["text"] if len(r["text"]) <= _WIDTH else r["text"][: _WIDTH - 1] + "…"
        lines.append(
            f"{r['rank']:>4} {r['calls']:>8,} {per:>8} {_ms(r['total_ms']):>10} "
            f"{_ms(r['max_ms']):>8} {r['rows_per_call']:>9,.1f} {r['no_index']:>6,}  {text}"
        )
    return "\n".join(lines)


def statements_html(cost: Mapping[str, Any], *, top: int = 20) -> str:
    """The same as an HTML table (the statement's full text)."""
    head = (
        "<tr><th>rank</th><th>calls</th><th>per request</th><th>total ms</th><th>max ms</th>"
        "<th>rows examined / call</th><th>no index</th><th>statement</th></tr>"
    )
    body = []
    for r in _rows(cost, top):
        per = "-" if r["per_request"] is None else f"{r['per_request']:.2f}"
        css = ' class="FAIL"' if r["no_index"] else ""
        body.append(
            f"<tr{css}><td class=n>{r['rank']}</td><td class=n>{r['calls']:,}</td>"
            f"<td class=n>{per}</td><td class=n>{_ms(r['total_ms'])}</td>"
            f"<td class=n>{_ms(r['max_ms'])}</td><td class=n>{r['rows_per_call']:,.1f}</td>"
            f"<td class=n>{r['no_index']:,}</td><td><code>{html.escape(r['text'])}</code></td></tr>"
        )
    phases = "".join(
        "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>"
        for row in _phase_rows(cost)
    )
    phase_table = (
        "<table><tr><th>phase</th><th>role</th><th>requests</th><th>queries / request</th>"
        "<th>rows examined / request</th><th>db ms / request</th><th>no index</th></tr>"
        f"{phases}</table>"
        if phases
        else ""
    )
    return (
        f"<p>{html.escape(cost_line(cost))}<br>{html.escape(status_line(cost))}</p>"
        f"{phase_table}<table class=statements>{head}{''.join(body)}</table>"
    )
