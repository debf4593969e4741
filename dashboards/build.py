"""Builds ``dashboards/perfsuite.json``, the Grafana dashboard of perfsuite's live metrics.

    python dashboards/build.py        # writes dashboards/perfsuite.json

Written with Grafana's own foundation SDK (its builders and models are
generated from Grafana's schemas), so that the JSON has the shape Grafana
reads; ``tests/unit/test_dashboard.py`` checks that the file is what this
builds, that it loads back into the SDK's models, and that every query
returns data from a real run.

The queries use only sound aggregations: percentiles across series come
from the summed buckets (``histogram_quantile(q, sum by (le) (rate(...)))``);
the exact HDR percentiles are drawn per series, never averaged. The service
row shows the example order service's own metrics, scraped by the same
Prometheus: replace its queries with your service's.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).with_name("perfsuite.json")
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECT = 'test=~"$test", endpoint=~"$endpoint"'
WINDOW = "[$__rate_interval]"

# (title, unit, [(legend, query)]): one panel each, in rows.
LOAD_PANELS = [
    (
        "Requests per second, by outcome",
        "reqps",
        [
            (
                "{{outcome}}",
                f"sum by (outcome) (rate(perfsuite_requests_total{{{SELECT}}}[$__rate_interval]))",
            )
        ],
    ),
    (
        "Failed share of requests that ended",
        "percentunit",
        [
            (
                "failed",
                f'sum(rate(perfsuite_requests_total{{{SELECT}, outcome="failed"}}{WINDOW}))'
                f" / sum(rate(perfsuite_requests_total{{{SELECT}}}{WINDOW}))",
            )
        ],
    ),
    (
        "Latency percentiles (from the summed buckets)",
        "s",
        [
            (
                f"p{q}",
                f"histogram_quantile(0.{q}, sum by (le) "
                f"(rate(perfsuite_request_duration_seconds_bucket{{{SELECT}}}[$__rate_interval])))",
            )
            for q in ("5", "95", "99")
        ],
    ),
    (
        "Exact p99 of each phase so far (HDR, per series)",
        "s",
        [
            (
                "{{test}} {{endpoint}} {{phase}}",
                f'perfsuite_request_duration_quantile_seconds{{{SELECT}, quantile="0.99"}}',
            )
        ],
    ),
    (
        "Sends late or dropped, per second",
        "short",
        [
            (
                "{{what}}",
                'sum by (what) (rate(perfsuite_schedule_total{test=~"$test"}[$__rate_interval]))',
            )
        ],
    ),
    (
        "Generator CPU (cores)",
        "short",
        [("generator", "rate(perfsuite_generator_cpu_seconds_total[$__rate_interval])")],
    ),
]
SERVICE_PANELS = [
    (
        "Service: pool connections in use and waiting",
        "short",
        [
            ("in use", "sum(order_service_db_pool_in_use)"),
            ("waiting", "sum(order_service_db_pool_waiting)"),
        ],
    ),
    (
        "Service: p99 by endpoint (its own histogram)",
        "s",
        [
            (
                "{{endpoint}}",
                "histogram_quantile(0.99, sum by (le, endpoint) "
                "(rate(order_service_request_duration_seconds_bucket[$__rate_interval])))",
            )
        ],
    ),
]


def _panel(title: str, unit: str, queries: list[tuple[str, str]]) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(12)
    for i, (legend, expr) in enumerate(queries):
        panel = panel.with_target(
            prometheus.Dataquery()
            .expr(expr)
            .legend_format(legend)
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
        )
    return panel


def build() -> dict[str, object]:
    """The dashboard, as Grafana's JSON model."""
    board = (
        dashboard.Dashboard("perfsuite")
        .uid("perfsuite-live")
        .tags(["perfsuite", "load test"])
        .description("perfsuite's live metrics (--perf-prometheus-port) and the service's own")
        .refresh("5s")
        .time("now-15m", "now")
        .with_variable(
            dashboard.DatasourceVariable("datasource").type("prometheus").label("Prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("test")
            .label("test")
            .query("label_values(perfsuite_requests_total, test)")
            .datasource(DATASOURCE)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dashboard.QueryVariable("endpoint")
            .label("endpoint")
            .query('label_values(perfsuite_requests_total{test=~"$test"}, endpoint)')
            .datasource(DATASOURCE)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_row(dashboard.Row("The load (perfsuite)"))
    )
    for spec in LOAD_PANELS:
        board = board.with_panel(_panel(*spec))
    board = board.with_row(dashboard.Row("The service (its own metrics)"))
    for spec in SERVICE_PANELS:
        board = board.with_panel(_panel(*spec))
    data: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return data


def queries(data: dict[str, object]) -> list[str]:
    """Every PromQL query of a dashboard's panels."""
    panels = data.get("panels", [])
    assert isinstance(panels, list)
    return [t["expr"] for p in panels for t in p.get("targets", []) if "expr" in t]


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
