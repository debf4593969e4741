"""The capture readers, on files written to each format's specification."""

from __future__ import annotations

import base64
import gc
import gzip
import itertools
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfsuite.errors import CaptureError, StoreError
from perfsuite.replay import CaptureWriter, Recorded, RecordedResponse, read_capture
from perfsuite.replay.prefetch import prefetched

MONKEYS = "\n🐵🙈🙉\n"


def _offsets(items: list[Recorded]) -> list[float]:
    return [round(r.offset, 6) for r in items]


def test_perfsuite_json_lines_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "traffic.jsonl"
    writer = CaptureWriter(path)
    writer.write(
        time=1000.0,
        method="POST",
        target="/orders",
        headers=(("Content-Type", "application/json"),),
        body=b'{"user_id": 1}',
        host="127.0.0.1:8000",
        response=RecordedResponse(status=201, headers=(("x", "1"),), body=b'{"id": 7}'),
    )
    writer.write(time=1000.25, method="get", target="/orders/7", headers=(), body=b"\xff\x00")
    writer.close()
    capture = read_capture(path)
    assert capture.format == "jsonl"
    first, second = list(capture)
    assert _offsets([first, second]) == [0.0, 0.25]
    assert (first.method, first.target, first.host) == ("POST", "/orders", "127.0.0.1:8000")
    assert first.header("content-type") == "application/json"
    assert first.body == b'{"user_id": 1}'
    assert first.response == RecordedResponse(status=201, headers=(("x", "1"),), body=b'{"id": 7}')
    assert (second.method, second.body, second.response) == ("GET", b"\xff\x00", None)
    assert (capture.stats.requests, capture.stats.responses) == (2, 1)
    # A file appended to later keeps its one header line.
    CaptureWriter(path).close()
    assert path.read_text().count("perfsuite_capture") == 1


def test_json_lines_of_another_version_or_kind_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"perfsuite_capture": 2}\n')
    with pytest.raises(CaptureError, match="version 2; this perfsuite reads version 1"):
        list(read_capture(newer))
    other = tmp_path / "other.jsonl"
    other.write_text('{"t": 1}\n')
    with pytest.raises(CaptureError, match="not a perfsuite capture"):
        list(read_capture(other))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"perfsuite_capture": 1}\n{"t": 1, "method": "GET"}\nnot json\n')
    capture = read_capture(broken)
    assert list(capture) == []
    assert capture.stats.skipped == {"not a request object (t, method, target)": 2}
    assert capture.stats.first_skipped["not a request object (t, method, target)"] == (
        "broken.jsonl: line 2"
    )


def _gor(kind: int, key: str, ns: int, message: str) -> str:
    return f"{kind} {key} {ns}\n{message}"


def test_goreplay_files_pair_responses_and_come_back_in_time_order(tmp_path: Path) -> None:
    base = 1_764_331_200_000_000_000
    payloads = [
        _gor(1, "a1", base, "GET /orders/1 HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
        _gor(1, "b2", base + 300_000_000, (
            "POST /orders HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )),
        # Written late (GoReplay writes as it captures): sent at its own time.
        _gor(1, "c3", base + 100_000_000, "HEAD /health HTTP/1.1\r\n\r\n"),
        _gor(2, "a1", base + 2_000_000, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
        _gor(3, "a1", base + 5_000_000, "HTTP/1.1 500 Oops\r\n\r\n"),
        "garbage without a header",
    ]  # fmt: skip
    path = tmp_path / "capture.gor"
    path.write_text(MONKEYS.join(payloads) + MONKEYS)
    capture = read_capture(path)
    items = list(capture)
    assert [(r.method, r.target) for r in items] == [
        ("GET", "/orders/1"),
        ("HEAD", "/health"),
        ("POST", "/orders"),
    ]
    assert _offsets(items) == [0.0, 0.1, 0.3]
    assert items[0].host == "shop.example"
    assert items[0].response == RecordedResponse(
        status=200, headers=(("Content-Length", "2"),), body=b"{}"
    )
    assert items[2].body == b"hello world"  # the chunks joined, the encoding header gone
    assert items[2].header("transfer-encoding") is None
    assert capture.stats.skipped == {
        "a replayed response (type 3)": 1,
        "not a GoReplay payload header (<type> <id> <timestamp>)": 1,
    }
    assert capture.stats.out_of_order == 0


def test_a_request_later_than_the_window_is_sent_at_once_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    writer = CaptureWriter(path)
    for i, t in enumerate([0, 10, 20, 30, 5]):  # the last one written 4 places late
        writer.write(time=1000 + t, method="GET", target=f"/{i}", headers=(), body=b"")
    writer.close()
    capture = read_capture(path, depth=2)  # a window of 2: it is out of it
    items = list(capture)
    assert [r.target for r in items] == ["/0", "/1", "/4", "/2", "/3"]
    assert _offsets(items) == [0, 10, 10, 20, 30]  # never back in time
    assert capture.stats.out_of_order == 1
    assert [r.target for r in read_capture(path, depth=5)] == ["/0", "/4", "/1", "/2", "/3"]


COMBINED_LINES = [
    '10.0.0.1 - - [28/Nov/2026:10:00:01 +0000] "GET /orders/1 HTTP/1.1" 200 52 "-" "curl/8"',
    '10.0.0.2 - - [28/Nov/2026:10:00:01 +0000] "GET /orders/2?x=1 HTTP/1.1" 404 9 "-" "-"',
    '10.0.0.3 - - [28/Nov/2026:10:00:00 +0000] "HEAD /health HTTP/1.1" 200 0 "-" "-"',
    '10.0.0.4 - - [28/Nov/2026:10:00:01 +0000] "\\x16\\x03\\x01" 400 150 "-" "-"',
    '10.0.0.5 - - [28/Nov/2026:10:00:02 +0000] "POST /orders HTTP/1.1" 201 40 "-" "-"',
    "not a log line",
]


def test_a_combined_access_log_spreads_each_second(tmp_path: Path) -> None:
    path = tmp_path / "access.log.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(COMBINED_LINES) + "\n")
    capture = read_capture(path)
    assert capture.format == "access-log"
    items = list(capture)
    assert [(r.method, r.target) for r in items] == [
        ("HEAD", "/health"),
        ("GET", "/orders/1"),
        ("GET", "/orders/2?x=1"),
        ("POST", "/orders"),
    ]
    # Second 0 holds one request (at its middle), second 1 two (at 1/4 and 3/4).
    assert _offsets(items) == [0.0, 0.75, 1.25, 2.0]
    assert items[1].header("user-agent") == "curl/8"
    assert items[2].header("user-agent") is None  # "-" is no value
    assert items[1].response == RecordedResponse(status=200)
    assert all(r.body is None for r in items)  # a log has no bodies
    assert capture.stats.skipped == {
        "not a request line (garbage, or a TLS handshake sent as plain HTTP)": 1,
        "does not match the log format": 1,
    }


def test_a_custom_log_format_with_milliseconds(tmp_path: Path) -> None:
    fmt = '$msec $request_time "$request" $status $http_host "$http_x_api_key"'
    path = tmp_path / "timed.log"
    path.write_text(
        '1764324000.500 0.200 "GET /a HTTP/1.1" 200 shop:80 "k1"\n'
        '1764324000.450 0.010 "GET /b HTTP/1.1" 200 shop:80 "-"\n'
    )
    items = list(read_capture(path, log_format=fmt))
    # Logged when they ended: /a started at .300, /b at .440.
    assert [(r.target, round(r.offset, 3)) for r in items] == [("/a", 0.0), ("/b", 0.14)]
    assert items[0].host == "shop:80"
    assert items[0].header("x-api-key") == "k1"
    with pytest.raises(CaptureError, match=r"needs \$request and a time"):
        read_capture(path, log_format="$remote_addr $status")


def _har_entry(started: str, method: str, url: str, **extra: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "startedDateTime": started,
        "time": 12.5,
        "request": {
            "method": method,
            "url": url,
            "httpVersion": "h2",
            "headers": [
                {"name": ":authority", "value": "shop.example"},
                {"name": "accept", "value": "application/json"},
            ],
        },
        "response": {"status": 0, "headers": [], "content": {"size": 0}},
    }
    entry.update(extra)
    return entry


def test_a_har_file_is_streamed_entry_by_entry(tmp_path: Path) -> None:
    created = _har_entry(
        "2026-11-28T10:00:00.250+01:00",
        "POST",
        "https://shop.example/orders",
        request={
            "method": "POST",
            "url": "https://shop.example/orders",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "postData": {"mimeType": "application/json", "text": '{"user_id": 1}'},
        },
        response={
            "status": 201,
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "content": {
                "mimeType": "application/json",
                "encoding": "base64",
                "text": base64.b64encode(b'{"id": 7}').decode(),
            },
        },
    )
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "test", "version": "1"},
            "entries": [
                created,
                _har_entry("2026-11-28T09:00:00.000Z", "GET", "http://shop.example/?q=1"),
                _har_entry("2026-11-28T09:00:01.000Z", "GET", "data:text/plain,hi"),
                {"startedDateTime": "yesterday"},
            ],
        }
    }
    path = tmp_path / "session.har"
    path.write_text(json.dumps(har))
    capture = read_capture(path)
    first, second = list(capture)
    assert (first.method, first.target, first.host) == ("GET", "/?q=1", "shop.example")
    assert first.headers == (("accept", "application/json"),)  # no HTTP/2 pseudo-headers
    assert first.response is None  # status 0: the browser saw no answer
    assert (second.method, second.offset, second.body) == ("POST", 0.25, b'{"user_id": 1}')
    assert second.response is not None
    assert second.response.body == b'{"id": 7}'
    assert capture.stats.skipped == {
        "not an http(s) URL (data)": 1,
        "not a HAR 1.2 entry (request.method, request.url, startedDateTime)": 1,
    }
    broken = tmp_path / "broken.har"
    broken.write_text('{"log": {"entries": [{"startedDateTime": ')
    with pytest.raises(CaptureError, match=r"broken\.har: not a readable HAR file"):
        list(read_capture(broken))


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such capture file"):
        read_capture(tmp_path / "missing.har")
    path = tmp_path / "x.log"
    path.write_text("")
    with pytest.raises(CaptureError, match="capture format 'pcap': expected auto, har"):
        read_capture(path, "pcap")  # type: ignore[arg-type]
    assert list(read_capture(path)) == []


def test_a_capture_read_ahead_by_a_thread_keeps_its_order_errors_and_stops() -> None:
    before = sys.getswitchinterval(), gc.get_threshold()
    assert list(prefetched(range(10_000), depth=1000)) == list(range(10_000))

    def broken() -> Iterator[int]:
        yield 1
        raise StoreError("line 2: unreadable")

    with pytest.raises(StoreError, match="line 2: unreadable"):
        list(prefetched(broken()))

    # Left early (a phase cut short): the reader stops, the switch interval comes back.
    reading = prefetched(itertools.count(), depth=512)
    assert next(reading) == 0
    assert sys.getswitchinterval() <= 0.0002
    assert gc.get_threshold()[2] == 1 << 30  # no full collection while it reads
    reading.close()
    assert not [t for t in threading.enumerate() if t.name == "perfsuite-replay-reader"]
    assert (sys.getswitchinterval(), gc.get_threshold()) == before
