"""``perfsuite report``: one self-contained, offline HTML file from the history.

The page answers three questions first: how did the latest run compare with
its baseline (verdicts with changes and intervals), which metrics shifted
over the history and since which commit (change points), and what the
latest run looked like inside (percentile curves, per-second timelines with
phase boundaries and the knee, pool and resource series). Everything is
inline SVG and CSS: no network, no script needed to read it.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perfsuite.errors import StoreError
from perfsuite.report.diffs import diffs_html
from perfsuite.report.flame import profile_html
from perfsuite.report.lag import lag_html, stale_html
from perfsuite.report.latest import test_charts
from perfsuite.report.rows import rows
from perfsuite.report.statements import statements_html
from perfsuite.report.svg import Area, Axes, Line, VLine, chart
from perfsuite.report.trends import Series, Shift, metric_info, trend_series
from perfsuite.secrets import redact
from perfsuite.store.history import History, HistoryRun

__all__ = ["ReportInfo", "build_report"]

LOAD_METRICS = (
    "p50",
    "p95",
    "p99",
    "rps",
    "error_rate",
    # The whole test's ("*"): what a request cost, which hardly jitters.
    "queries_per_request",
    "rows_examined_per_request",
    "db_ms_per_request",
    "cpu_ms_per_request",
    # Each replica's ("replica 1"): its lag behind the primary over the measured phases.
    "replica_lag_p50_ms",
    "replica_lag_p99_ms",
)
BENCH_METRICS = ("median", "ops")
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1240px;padding:16px;color:#222}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 4px}.meta{color:#666}
table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}
td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}
td.n{text-align:right}.regressed,.worse,.FAIL,.LEAK{color:#c62828;font-weight:600}.unknown{color:#8d6e00}
.improved,.better{color:#2e7d32;font-weight:600}.grid{display:flex;flex-wrap:wrap;gap:8px}
svg.chart{width:400px;height:auto;border:1px solid #eee;background:#fff}
svg.flame{width:100%;max-width:1200px;height:auto;border:1px solid #eee;background:#fff}
svg.flame text{font-family:monospace;pointer-events:none}
table.hottest td code{font-size:12px}
svg .grid{stroke:#eee}svg .axis{stroke:#999}svg .tick,svg .axis-title{font-size:10px;fill:#555}
svg .title{font-size:12px;font-weight:600}svg .legend,svg .mark{font-size:10px}
svg .series{stroke-width:1.6}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
input#filter{padding:4px;width:320px}
"""
_JS = """
document.getElementById('filter').addEventListener('input', function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll('section.test').forEach(function (s) {
    s.style.display = s.dataset.test.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
  });
});
"""


@dataclass(frozen=True, kw_only=True)
class ReportInfo:
    """What was written."""

    path: Path
    runs: int
    charts: int
    shifts: int


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _trend_chart(series: Series) -> str:
    title, unit, _, _ = metric_info(series.metric)
    xs = [float(i) for i in range(len(series.runs))]
    tips = [
        f"{r.label} ({r.created[:16]}): {_num(v)} {unit}"
        for r, v in zip(series.runs, series.values, strict=True)
    ]
    index = {r.id: i for i, r in enumerate(series.runs)}
    marks = [
        VLine(
            x=float(index[s.run.id]) - 0.5,
            label=f"{s.run.label} {s.point.change:+.0%}",
            color="#c62828" if s.worse else "#2e7d32",
            tip=_shift_text(s, series),
        )
        for s in series.shifts
    ]
    band = Area(
        name="baseline band",
        xs=xs,
        low=[b.low if b else None for b in series.bands],
        high=[b.high if b else None for b in series.bands],
    )
    return chart(
        f"{title} ({unit})",
        [Line(name=series.metric, xs=xs, ys=series.values, dots=True, tips=tips)],
        axes=Axes(
            x_title="run (commit)",
            y_title=unit,
            x_labels=[(x, r.label) for x, r in zip(xs, series.runs, strict=True)],
        ),
        areas=[band] if any(series.bands) else [],
        vlines=marks,
        kind="trend",
    )


def _shift_text(shift: Shift, series: Series) -> str:
    title, unit, _, _ = metric_info(series.metric)
    p = shift.point
    return (
        f"{title} of {series.endpoint}: {_num(p.before)} -> {_num(p.after)} {unit} "
        f"({p.change:+.1%}) since {shift.run.label}"
    )


def _latest_table(record: Mapping[str, Any]) -> str:
    head = (
        "<tr><th>test</th><th>endpoint</th><th>ok/s</th><th>p50 ms</th><th>p95 ms</th>"
        "<th>p99 ms</th><th>errors</th><th>SLO</th><th>compared</th><th>pool</th></tr>"
    )
    body, details = [], []
    for entry in record["tests"]:
        for r in rows(entry):
            body.append(
                f"<tr><td>{html.escape(r.test)}{' (interrupted)' if r.interrupted else ''}</td>"
                f"<td>{html.escape(r.endpoint)}</td>"
                f'<td class="n">{_num(r.rps)}</td><td class="n">{_num(r.p50)}</td>'
                f'<td class="n">{_num(r.p95)}</td><td class="n">{_num(r.p99)}</td>'
                f'<td class="n">{r.errors}/{r.requests}</td><td class="{r.slo}">{r.slo}</td>'
                f'<td class="{r.verdict}">{r.verdict}</td><td class="{r.pool}">{r.pool}</td></tr>'
            )
        for where, comps in entry.get("comparisons", {}).items():
            for c in comps:
                if c["verdict"] != "unchanged":
                    details.append(
                        f'<li class="{c["verdict"]}">{html.escape(entry["id"])} / '
                        f"{html.escape(where)}: {html.escape(c['text'])}</li>"
                    )
    listing = f"<ul>{''.join(details)}</ul>" if details else ""
    return f"<table>{head}{''.join(body)}</table>{listing}"


def _shift_table(all_series: Sequence[Series]) -> str:
    found = [(s, sh) for s in all_series for sh in s.shifts]
    if not found:
        return "<p>No change points in this history.</p>"
    # Regressions first, newest first: "since when has it been slower?"
    found.sort(key=lambda x: x[1].run.created, reverse=True)
    found.sort(key=lambda x: not x[1].worse)
    head = (
        "<tr><th>test</th><th>endpoint</th><th>metric</th><th>since commit</th><th>run date</th>"
        "<th>before</th><th>after</th><th>change</th><th>p</th></tr>"
    )
    body = []
    for s, sh in found:
        _, unit, _, _ = metric_info(s.metric)
        css = "worse" if sh.worse else "better"
        body.append(
            f'<tr class="shift"><td>{html.escape(s.test)}</td><td>{html.escape(s.endpoint)}</td>'
            f"<td>{s.metric}</td><td><code>{html.escape(sh.run.commit or '-')[:12]}</code></td>"
            f"<td>{sh.run.created[:16]}</td><td class=n>{_num(sh.point.before)} {unit}</td>"
            f"<td class=n>{_num(sh.point.after)} {unit}</td>"
            f'<td class="n {css}">{sh.point.change:+.1%}</td>'
            f"<td class=n>{sh.point.p_value:.1g}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _test_section(
    test: str, trends: Mapping[tuple[str, str], list[Series]], entry: Mapping[str, Any] | None
) -> tuple[str, int]:
    parts = [f'<section class="test" id="{_slug(test)}" data-test="{html.escape(test)}">']
    parts.append(f"<h2>{html.escape(test)}</h2>")
    charts = 0
    for (t, endpoint), series in trends.items():
        if t != test:
            continue
        label = "the whole test" if endpoint in ("*", "-") else endpoint
        parts.append(f"<h3>Across runs: {html.escape(label)}</h3><div class=grid>")
        for s in series:
            parts.append(_trend_chart(s))
            charts += 1
        parts.append("</div>")
    if entry is not None:
        svgs, notes = test_charts(entry)
        parts.append("<h3>Latest run</h3>")
        parts += [f"<p>{html.escape(n)}</p>" for n in notes]
        for s in entry.get("slo", []):
            css = "" if s["passed"] else "FAIL"
            parts.append(f'<p class="{css}">{html.escape(s["text"])}</p>')
        parts.append(f"<div class=grid>{''.join(svgs)}</div>")
        charts += len(svgs)
        pool = entry.get("pool")
        if pool is not None and not (pool["ok"] and pool.get("judged", True)):
            css = "LEAK" if not pool["ok"] else "unknown"
            parts.append(f'<pre class="{css}">{html.escape(pool["report"])}</pre>')
        costs = [c for c in entry.get("cost") or [] if c]
        for i, cost in enumerate(costs):
            which = f", load {i + 1}" if len(costs) > 1 else ""
            parts.append(f"<h3>Cost per request and top statements{which}</h3>")
            parts.append(statements_html(cost))
        parts.append(diffs_html(entry))
        parts.append(lag_html(entry))
        parts.append(stale_html(entry))
        parts.append(profile_html(entry))
    parts.append("</section>")
    return "".join(parts), charts


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_report(
    history: History,
    out: Path,
    *,
    limit: int = 200,
    profile: str | None = None,
    window: int = 10,
    p_value: float = 0.001,
) -> ReportInfo:
    """Write the HTML report of the newest ``limit`` runs (of one profile) to ``out``."""
    runs = history.runs(source="perfsuite", limit=limit * 4)
    benches = history.runs(source="pytest-benchmark", limit=limit)
    if not runs and not benches:
        raise StoreError(f"history {redact(history.url)} holds no runs yet: nothing to report")
    profile = profile or (runs[-1].profile if runs else None)
    runs = [r for r in runs if r.profile == profile][-limit:]
    trends, bench_trends = (
        trend_series(
            chosen,
            history.points([r.id for r in chosen]),
            metrics=metrics,
            window=window,
            p_value=p_value,
        )
        for chosen, metrics in ((runs, LOAD_METRICS), (benches, BENCH_METRICS))
    )
    latest: dict[str, Any] = (history.record(runs[-1].id) or {}) if runs else {}
    entries = {e["id"]: e for e in latest.get("tests", [])}
    all_series = [s for group in [*trends.values(), *bench_trends.values()] for s in group]
    body, charts = [], 0
    for test in dict.fromkeys([*(t for t, _ in trends), *entries]):
        section, n = _test_section(test, trends, entries.get(test))
        body.append(section)
        charts += n
    if bench_trends:
        body.append("<h2>pytest-benchmark</h2>")
        for test in dict.fromkeys(t for t, _ in bench_trends):
            section, n = _test_section(test, bench_trends, None)
            body.append(section)
            charts += n
    page = _page(
        history=history,
        runs=runs,
        benches=benches,
        profile=profile,
        latest=latest,
        shifts=_shift_table(all_series),
        body="".join(body),
        window=window,
        p_value=p_value,
    )
    _write_atomic(out, page)
    return ReportInfo(
        path=out,
        runs=len(runs) + len(benches),
        charts=charts,
        shifts=sum(len(s.shifts) for s in all_series),
    )


def _page(
    *,
    history: History,
    runs: Sequence[HistoryRun],
    benches: Sequence[HistoryRun],
    profile: str | None,
    latest: Mapping[str, Any],
    shifts: str,
    body: str,
    window: int,
    p_value: float,
) -> str:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    esc = html.escape
    head = runs[-1] if runs else None
    summary = (
        f"<h2>Latest run: <code>{esc(head.label)}</code> ({esc(head.created)}"
        f"{', branch ' + esc(head.branch) if head.branch else ''})</h2>{_latest_table(latest)}"
        if head is not None and latest
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>perfsuite report</title><style>{_CSS}</style></head>
<body>
<h1>perfsuite report</h1>
<p class="meta">{len(runs)} load runs (profile {esc(str(profile))}), {len(benches)} pytest-benchmark
runs, from {esc(redact(history.url))}; written {now}.
<input id="filter" placeholder="filter tests"></p>
{summary}
<h2>Change points</h2>
<p class="meta">Where a metric moved to a new level across runs, and the commit of the first run
at that level (E-divisive split, kept when a Welch t-test gives p &lt; {p_value:g}; latency and
throughput on a log scale).</p>
{shifts}
{body}
<p class="meta">Baseline band: where the next run was expected, the 98 % prediction interval of
the {window} runs before it (the baseline gate's model). Percentile curves and timelines are the
latest run's.</p>
<script>{_JS}</script>
</body></html>
"""
