"""The readers on captures made by the real tools: a HAR exported by Chromium, an access
log written by nginx in front of the example service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from perfsuite import run_load
from perfsuite.replay import read_capture
from perfsuite.replay.schedule import Pace, plan_replay, replay_phase

from .conftest import ServiceFactory, chromium, debian_binary, free_port, quiet_machine

# Each answer is read whole (as an app would) before the next call: a fetch resolves on
# the headers, and a context closed before the last body arrived exported it empty
# (2 runs of 3 on one machine).
PAGE = b"""<!doctype html><html><body><script>
(async () => {
  await (await fetch('/api/orders/1')).json();
  await (await fetch('/api/orders', {method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({user_id: 7, items: [{sku_id: 2}]})})).json();
  await (await fetch('/api/orders/2?fields=all')).json();
  document.title = 'done';
})();
</script></body></html>"""


class _Site(BaseHTTPRequestHandler):
    """A page that calls a small JSON API, as a browser session would."""

    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, PAGE, "text/html")
        elif self.path.startswith("/api/orders/"):
            order = int(self.path.split("/")[3].split("?")[0])
            self._send(
                200,
                json.dumps({"id": order, "total_cents": 100 * order}).encode(),
                "application/json",
            )
        else:
            self._send(404, b"{}", "application/json")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        created = {"id": 3, "user_id": json.loads(body)["user_id"]}
        self._send(201, json.dumps(created).encode(), "application/json")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_har_exported_by_chromium(site: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    binary = debian_binary("chromium", "a replay test reads the HAR it exports")
    har = tmp_path / "session.har"
    with (
        quiet_machine(),  # a browser takes both cores for a moment
        chromium(binary, tmp_path / "profile") as endpoint,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.connect_over_cdp(endpoint)
        context = browser.new_context(record_har_path=str(har), record_har_content="embed")
        page = context.new_page()
        page.goto(site + "/")
        page.wait_for_function("document.title === 'done'")
        context.close()  # writes the HAR
        browser.close()
    capture = read_capture(har)
    assert capture.format == "har"
    items = [r for r in capture if r.target.startswith("/api/")]
    assert [(r.method, r.target) for r in items] == [
        ("GET", "/api/orders/1"),
        ("POST", "/api/orders"),
        ("GET", "/api/orders/2?fields=all"),
    ]
    get, post, query = items
    assert json.loads(post.body or b"") == {"user_id": 7, "items": [{"sku_id": 2}]}
    assert post.response is not None
    assert post.response.status == 201
    assert query.response is not None
    assert json.loads(query.response.body or b"") == {"id": 2, "total_cents": 200}
    assert 0 <= get.offset <= post.offset <= query.offset < 30


NGINX = """
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  access_log {dir}/access.log combined;
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass {upstream}; }}
  }}
}}
"""


def test_an_access_log_written_by_nginx(
    order_service_factory: ServiceFactory, tmp_path: Path
) -> None:
    sbin = Path("/usr/sbin/nginx")  # a PATH without sbin would not find it
    binary = str(sbin) if sbin.exists() else debian_binary("nginx", "it writes the access log")
    port = free_port()
    with order_service_factory() as service:
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            textwrap.dedent(
                NGINX.format(
                    # As root, nginx's workers would be nobody, kept out of the test's folder.
                    user="user root;" if os.geteuid() == 0 else "",
                    dir=tmp_path,
                    port=port,
                    upstream=service.base_url,
                )
            )
        )
        proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(tmp_path)])
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=10.0, headers={"User-Agent": "shop/1"}) as c:
                for _ in range(100):  # until nginx listens
                    try:
                        c.get("/health")
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                statuses = [c.get(f"/orders/{i}").status_code for i in (1, 2, 3, 999_999)]
                body = {"user_id": 1, "items": [{"sku_id": 1, "quantity": 1}]}
                statuses.append(c.post("/orders", json=body).status_code)
        finally:
            proc.send_signal(signal.SIGQUIT)  # a graceful stop: the log is complete
            proc.wait(timeout=30)
        assert statuses == [200, 200, 200, 404, 201]
        capture = read_capture(tmp_path / "access.log")
        items = list(capture)
        assert [(r.method, r.target) for r in items][1:] == [
            ("GET", "/orders/1"),
            ("GET", "/orders/2"),
            ("GET", "/orders/3"),
            ("GET", "/orders/999999"),
            ("POST", "/orders"),
        ]
        assert [r.response.status for r in items[1:] if r.response] == statuses
        assert items[1].header("user-agent") == "shop/1"
        # Replayed against the service itself: the writes left out, every status as logged.
        plan = plan_replay(capture, pace=Pace(speed=10))
        assert plan.refused == {"a write (POST): allow_writes is off": 1}
        scenario, phase = replay_phase(plan, service.base_url)
        result = run_load(service.base_url, scenario, [phase])
        assert (result.measured().requests, result.measured().errors) == (5, 0)
