"""Recording: the service writes its own traffic as perfsuite capture lines.

``ORDER_SERVICE_RECORD=/path/traffic.jsonl`` wraps the app in :class:`Recording`,
a plain ASGI middleware: each request (method, target, headers, body) and its
answer (status, headers, body) become one line of a perfsuite capture, written
when the answer is complete, stamped with the time the request arrived. So the
seed's whole loop runs inside this project: record a run, replay it against
another build, compare the answers. ``/metrics`` scrapes and ``/health``
probes are not users' traffic and are left out.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perfsuite.replay import CaptureWriter, RecordedResponse

__all__ = ["Recording"]

_SKIPPED = ("/metrics", "/health")  # probes (scrapes, readiness), not users


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)


class Recording:
    """ASGI middleware that appends every answered request to a capture file."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self.app = app
        self.writer = CaptureWriter(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _SKIPPED:
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        body: list[bytes] = []
        answer: dict[str, Any] = {"body": []}

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = _headers(message.get("headers", []))
            elif message["type"] == "http.response.body":
                answer["body"].append(message.get("body", b""))
            await send(message)

        await self.app(scope, receiving, sending)
        if "status" not in answer:
            return  # no answer (the client left): nothing to replay against
        query = scope.get("query_string", b"").decode("latin-1")
        self.writer.write(
            time=arrived,
            method=scope["method"],
            target=scope.get("raw_path", scope["path"].encode()).decode("latin-1")
            + (f"?{query}" if query else ""),
            headers=_headers(scope.get("headers", [])),
            body=b"".join(body),
            host=next((v for k, v in _headers(scope.get("headers", [])) if k == "host"), None),
            response=RecordedResponse(
                status=answer["status"], headers=answer["headers"], body=b"".join(answer["body"])
            ),
        )
