"""dashboards/perfsuite.json: Grafana's own SDK builds it, and every query returns data."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from types import ModuleType

import httpx
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client.parser import text_string_to_metric_families

from examples.order_service.app import create_app
from perfsuite import Request, Scenario
from perfsuite.config import DEFAULT_PROFILES
from perfsuite.load import Phases, run_load
from perfsuite.probes.scrape import Scraper, ScrapeTarget
from perfsuite.session.export import LiveExporter
from perfsuite.stats.promql import Evaluator, Series, SeriesSet, parse, selected_names

from .conftest import REPO, Server


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_build", REPO / "dashboards/build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _builder()
COMMITTED = json.loads((REPO / "dashboards/perfsuite.json").read_text())


def _promql(expr: str) -> str:
    """A panel's query with Grafana's variables as a run of every test would set them."""
    for variable, value in (("$test", ".*"), ("$endpoint", ".*"), ("$__rate_interval", "3s")):
        expr = expr.replace(variable, value)
    return expr


def test_the_file_is_what_the_sdk_builds_and_loads_back() -> None:
    assert BUILD.build() == COMMITTED, "run: python dashboards/build.py"
    loaded = Dashboard.from_json(COMMITTED)
    assert json.loads(json.dumps(loaded, cls=JSONEncoder)) == COMMITTED
    assert [p["title"] for p in COMMITTED["panels"] if p["type"] == "row"] == [
        "The load (perfsuite)",
        "The service (its own metrics)",
    ]


def test_percentiles_are_never_averaged() -> None:
    for expr in BUILD.queries(COMMITTED):
        if "histogram_quantile" in expr:
            assert "sum by (le" in expr, expr  # buckets summed first
        if "quantile_seconds" in expr:
            assert not expr.startswith(("avg", "sum", "max", "min")), expr  # per series


def test_every_load_query_returns_data_from_a_real_run(server: Server) -> None:
    exporter = LiveExporter(0)
    scraper = Scraper(
        [ScrapeTarget(job="perfsuite", url=f"http://127.0.0.1:{exporter.port}/metrics")],
        interval=0.5,
    )
    try:
        exporter.start_load("test_x.py::test_x")
        scenario = Scenario(
            Request(name="ok", build=lambda ctx: ctx.get("/ok")),
            Request(name="bad", build=lambda ctx: ctx.get("/status/500")),
        )
        scraper.start()
        run_load(
            server.url,
            scenario,
            [Phases(DEFAULT_PROFILES["full"]).constant(100, "4s")],
            on_second=exporter.second,
        )
        threading.Event().wait(0.6)
        scraped = scraper.stop()
    finally:
        exporter.close()
    evaluator = Evaluator(scraped.series_set())
    end = max(max(times) for times, _ in scraped.points.values())
    load_queries = [q for q in BUILD.queries(COMMITTED) if "order_service" not in q]
    assert len(load_queries) >= 6
    for expr in load_queries:
        value = evaluator.at(parse(_promql(expr)), end)
        assert value, f"no data: {expr}"


def test_every_service_query_returns_data_from_the_example_service() -> None:
    # The example service's own /metrics, without a database: a malformed order id
    # is answered (422) before the pool is asked for a connection.
    app = create_app("mysql://nobody@127.0.0.1:1/none")

    async def scrapes() -> list[str]:
        transport = httpx.ASGITransport(app=app)  # no lifespan: no pool, no database
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            texts = []
            for _ in range(3):
                assert (await client.get("/orders/not-a-number")).status_code == 422
                texts.append((await client.get("/metrics")).text)
            return texts

    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for t, text in zip((100.0, 101.0, 102.0), asyncio.run(scrapes()), strict=True):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = {**sample.labels, "__name__": sample.name}
                series.setdefault(tuple(sorted(labels.items())), []).append((t, sample.value))
    evaluator = Evaluator(SeriesSet(tuple(Series.of(dict(k), v) for k, v in series.items())))
    service_queries = [q for q in BUILD.queries(COMMITTED) if "order_service" in q]
    assert len(service_queries) == 3
    for expr in service_queries:
        names = selected_names(parse(_promql(expr)))
        assert all(evaluator.data.named(n) for n in names), (expr, evaluator.data.names())
        assert evaluator.at(parse(_promql(expr)), 102.0), f"no data: {expr}"
