"""The pull-request summary in Markdown: regressions and improvements expanded,
the rest one line each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perfsuite.report.lag import lag_ms
from perfsuite.report.rows import diff_rows, rows, stale_rows

__all__ = ["render_markdown"]


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def render_markdown(entries: Sequence[dict[str, Any]], *, commit: str | None, profile: str) -> str:
    """The Markdown text of a run."""
    all_rows = [r for e in entries for r in rows(e)]
    regressed: list[object] = [
        r for r in all_rows if r.verdict == "regressed" or r.slo == "FAIL" or r.pool == "LEAK"
    ]
    regressed += [  # a cost regression has no row of its own above
        c
        for e in entries
        for where, cs in e.get("comparisons", {}).items()
        if where.endswith("cost")
        for c in cs
        if c["verdict"] == "regressed"
    ]
    lines = [
        "## perfsuite",
        "",
        f"{len(entries)} perf test(s), profile `{profile}`"
        + (f", commit `{commit[:12]}`" if commit else "")
        + (f": **{len(regressed)} problem(s)**" if regressed else ": no regression"),
        "",
    ]
    for entry in entries:
        changed = {
            where: [c for c in cs if c["verdict"] in ("regressed", "improved")]
            for where, cs in entry.get("comparisons", {}).items()
        }
        failed_slo = [s for s in entry["slo"] if not s["passed"]]
        pool = entry.get("pool")
        unjudged = bool(pool and not pool.get("judged", True))
        if any(changed.values()) or failed_slo or (pool and not pool["ok"]) or unjudged:
            lines.append(f"### `{entry['id']}`")
            lines.append("")
            if entry.get("ab"):
                ab = entry["ab"]
                lines += [f"A/B against `{ab['base']}`, {ab['pairs']} pairs of rounds.", ""]
            for where, cs in changed.items():
                for c in cs:
                    icon = "🔴" if c["verdict"] == "regressed" else "🟢"
                    lines.append(f"- {icon} **{where}** {c['text']}")
            for s in failed_slo:
                lines.append(f"- 🔴 SLO violated: {s['text']}")
            if pool and not pool["ok"]:
                lines.append("- 🔴 the connection pool did not return to idle:")
                lines.append("")
                lines.append("```")
                lines.append(pool["report"])
                lines.append("```")
            elif pool and not pool.get("judged", True):
                lines.append("- ⚠️ the connection pool: cannot judge from the database side:")
                lines.append("")
                lines.append("```")
                lines.append(pool["report"])
                lines.append("```")
            for w in entry.get("warnings", []):
                lines.append(f"- ⚠️ {w}")
            lines.append("")
    header = ["test", "endpoint", "ok/s", "p50 ms", "p95 ms", "p99 ms", "errors", "SLO"]
    header += ["compared", "pool"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | :---: | :---: | :---: |")
    for r in all_rows:
        rps = "-" if r.rps is None else f"{r.rps:,.0f}"
        lines.append(
            f"| `{r.label}` | {r.endpoint} | {rps} | {_ms(r.p50)} | "
            f"{_ms(r.p95)} | {_ms(r.p99)} | {r.errors}/{r.requests} | {r.slo} | {r.verdict} | "
            f"{r.pool} |"
        )
    lines += _cost_table(entries)
    lines += _lag_table(entries)
    lines += _stale_table(entries)
    lines += _diff_table(entries)
    return "\n".join(lines) + "\n"


def _diff_table(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Each compared replay's endpoints: answers that differ from the reference's."""
    out = [
        f"| `{r.test}` | {r.endpoint} | {r.differing:,} | {r.compared:,} | {r.rate:.2%} | "
        f"{r.fields} |"
        for r in diff_rows(entries)
    ]
    if not out:
        return []
    return [
        "",
        "Replayed answers compared",
        "",
        "| test | endpoint | differ | compared | rate | fields that differ |",
        "| --- | --- | ---: | ---: | ---: | --- |",
        *out,
    ]


def _cost_table(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Cost per request, a line per load that has it (see the README's metric table)."""
    out = []
    for e in entries:
        costs = e.get("cost") or []
        for i, cost in enumerate(costs):
            if cost is None:
                continue
            per = cost["per_request"]
            name = e["id"].rsplit("::", 1)[-1] + (f" (load {i + 1})" if len(costs) > 1 else "")
            cells = [
                _num(per.get(key), spec)
                for key, spec in (
                    ("queries_per_request", ".2f"),
                    ("rows_examined_per_request", ",.1f"),
                    ("db_ms_per_request", ".3f"),
                    ("no_index_used", ",.0f"),
                    ("cpu_ms_per_request", ".3f"),
                )
            ]
            out.append(f"| `{name}` | {cost['requests']:,} | " + " | ".join(cells) + " |")
    if not out:
        return []
    return [
        "",
        "Cost per request",
        "",
        "| test | requests | queries | rows examined | db ms | no index | CPU ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *out,
    ]


def _lag_table(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Each replica's lag over each measured phase, and the replicas that stopped."""
    out, stopped = [], []
    for e in entries:
        name = e["id"].rsplit("::", 1)[-1]
        for lag in e.get("replica_lag") or []:
            if lag is None:
                continue
            for row in lag["phases"]:
                if row["role"] != "measure" or not row["heartbeats"]:
                    continue
                cells = [lag_ms(row[k]) for k in ("p50", "p95", "p99", "max")]
                out.append(
                    f"| `{name}` | {row['replica']} | {row['phase']} | {row['heartbeats']:,} | "
                    + " | ".join(cells)
                    + f" | {row['pending']:,} |"
                )
            stopped += [f"- 🔴 `{name}`: {error}" for error in lag.get("errors", [])]
    if not out and not stopped:
        return []
    return [
        "",
        "Replica lag (from a heartbeat's write on the primary to its apply on the replica)",
        "",
        "| test | replica | phase | heartbeats | p50 | p95 | p99 | max | not applied |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *out,
        *(["", *stopped] if stopped else []),
    ]


def _stale_table(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Endpoints with a ``stale=`` predicate: successes that missed their own write."""
    out = [
        f"| `{r.test}` | {r.endpoint} | {r.stale:,} | {r.ok:,} | {r.rate:.2%} |"
        for r in stale_rows(entries)
    ]
    if not out:
        return []
    return [
        "",
        "Stale reads (measured phases: answers that did not hold the write before them)",
        "",
        "| test | endpoint | stale | of successes | rate |",
        "| --- | --- | ---: | ---: | ---: |",
        *out,
    ]
