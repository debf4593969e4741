"""Micro-benchmarks of perfsuite's hot paths (pytest-benchmark).

    pytest benchmarks/test_micro.py -p no:xdist
    pytest benchmarks/test_micro.py --benchmark-disable   # each once: .ci/run's check

They measure; they assert only that the code did its work, never a time.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from perfsuite.load.recorder import Recorder
from perfsuite.load.scenario import Context, encode_request
from perfsuite.stats.hdr import merge, new_histogram, percentiles, record_many

pytestmark = pytest.mark.benchmark


def test_encode_static_request(benchmark) -> None:
    request = httpx.Request("GET", "http://127.0.0.1:8000/orders/42")
    data = benchmark(encode_request, request)
    assert data.startswith(b"GET /orders/42 HTTP/1.1\r\n")


def test_build_and_encode_json_request(benchmark) -> None:
    ctx = Context("http://127.0.0.1:8000", {"user": list(range(1000))}, seed=1)

    def build() -> bytes:
        body = {"user_id": ctx.pick("user"), "items": [{"sku_id": 3, "quantity": 1}]}
        return encode_request(ctx.post("/orders", json=body))

    assert b"POST /orders" in benchmark(build)
    ctx.close()


def test_recorder_answer(benchmark) -> None:
    recorder = Recorder(1, ["a"])

    def answer_1000() -> None:
        for i in range(1000):
            recorder.answer(0, 1000 + i, 900 + i, 200)

    benchmark(answer_1000)
    recorder.fold(0)
    assert recorder.latency[0].get_total_count() > 0


def test_record_many_100k(benchmark) -> None:
    values = np.random.default_rng(1).lognormal(7, 1, 100_000).astype(np.int64) + 1
    hist = new_histogram()
    benchmark(record_many, hist, values)
    assert hist.get_total_count() % 100_000 == 0


def test_per_value_record_value_100k(benchmark) -> None:
    # The library's own per-value path, for comparison with record_many.
    values = (np.random.default_rng(1).lognormal(7, 1, 100_000).astype(np.int64) + 1).tolist()
    hist = new_histogram()

    def record() -> None:
        for v in values:
            hist.record_value(v)

    benchmark.pedantic(record, rounds=3, iterations=1)
    # Three rounds when measuring, one with --benchmark-disable.
    assert hist.get_total_count() in (100_000, 300_000)


def test_merge_and_summarise_two_runs_of_1m(benchmark) -> None:
    rng = np.random.default_rng(2)
    a, b = new_histogram(), new_histogram()
    record_many(a, rng.lognormal(8, 1, 1_000_000).astype(np.int64) + 1)
    record_many(b, rng.lognormal(8.1, 1, 1_000_000).astype(np.int64) + 1)

    def summarise() -> tuple[float, float]:
        return percentiles(merge([a])).p99, percentiles(merge([b])).p99

    p99a, p99b = benchmark(summarise)
    assert p99b > p99a


def _per_second_blocks(rng: np.random.Generator, shift: float) -> list:
    from perfsuite.stats.blocks import Block
    from perfsuite.stats.hdr import hdr_indices

    seconds, per_second = 600, 1_667  # 10 minutes, ~1,000,000 requests
    values = rng.lognormal(np.log(20_000) + np.log1p(shift), 0.5, (seconds, per_second))
    index = hdr_indices(values.astype(np.int64))
    blocks = []
    for t in range(seconds):
        u, c = np.unique(index[t], return_counts=True)
        blocks.append(Block(t=t, seconds=1.0, requests=per_second, errors=0, index=u, counts=c))
    return blocks


def test_compare_a_run_with_3_runs_of_1m_requests(benchmark) -> None:
    from perfsuite.stats.blocks import BlockSet
    from perfsuite.stats.compare import compare

    rng = np.random.default_rng(3)
    # Three baseline runs (the fewest that give a noise estimate of their own), 1 %
    # apart, and a run 30 % slower: every block set is made inside the benchmark.
    base_blocks = [_per_second_blocks(rng, s) for s in (0.0, 0.01, -0.01)]
    cur_blocks = _per_second_blocks(rng, 0.30)

    def run() -> dict[str, str]:
        base = [BlockSet.from_blocks(b) for b in base_blocks]
        cur = BlockSet.from_blocks(cur_blocks)
        return {c.metric: c.verdict for c in compare(cur, base)}

    verdicts = benchmark.pedantic(run, rounds=5, iterations=1)
    assert verdicts["p95"] == "regressed"


def test_change_points_500_runs(benchmark) -> None:
    from perfsuite.stats.changepoint import change_points

    rng = np.random.default_rng(4)
    series = np.exp(np.concatenate([rng.normal(0, 0.05, 300), rng.normal(0.2, 0.05, 200)]))
    found = benchmark(change_points, list(series))
    assert any(abs(c.index - 300) <= 1 for c in found)


def test_report_from_200_runs_of_30_endpoints(benchmark, tmp_path) -> None:
    # The trend part of `perfsuite report`: 200 runs x 10 tests x 3 endpoints x 6 metrics
    # (36,000 points) read from SQLite, bands and change points for 150 series, SVG, HTML.
    from perfsuite.report.html import build_report
    from perfsuite.store.history import History, history_url

    rng = np.random.default_rng(5)
    url = history_url(str(tmp_path / "h.sqlite"), tmp_path)
    with History(url) as history:
        for run in range(200):
            slow = 1.3 if run >= 150 else 1.0
            points = [
                (f"test_{t}", f"endpoint_{e}", metric, float(value))
                for t in range(10)
                for e in range(3)
                for metric, value in (
                    ("p50", 2 * slow * np.exp(rng.normal(0, 0.05))),
                    ("p95", 5 * slow * np.exp(rng.normal(0, 0.05))),
                    ("p99", 9 * slow * np.exp(rng.normal(0, 0.08))),
                    ("mean", 2.5 * slow * np.exp(rng.normal(0, 0.05))),
                    ("rps", 1000 * np.exp(rng.normal(0, 0.01))),
                    ("error_rate", 0.0),
                )
            ]
            history.append(
                uid=f"run:{run}",
                source="perfsuite",
                created=f"2026-01-01T00:{run // 60:02d}:{run % 60:02d}Z",
                commit=f"{run:040x}",
                profile="ci",
                points=points,
            )
        info = benchmark.pedantic(
            build_report, args=(history, tmp_path / "index.html"), rounds=3, iterations=1
        )
    assert info.charts == 10 * 3 * 5
    assert info.shifts >= 30  # p50 and p95 of every endpoint moved at run 150
