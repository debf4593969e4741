"""HTTP/1.1 keep-alive connections on asyncio Protocols, parsed by httptools.

One request at a time per connection, no coroutine or future per request:
this is the generator's hot path (~10 µs a request with uvloop), where
httpx (~300 µs) and aiohttp (~50 µs) are too slow.

httptools (llhttp) has no API for two things a client needs, so they are
done here: a ``HEAD`` response has no body whatever its Content-Length (the
parse stops at its headers and a fresh parser takes the next response), and
a body without length or chunking ends when the connection does (EOF).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httptools

__all__ = ["DEFAULT_MAX_BODY", "Connection", "ConnectionOwner", "JourneyConnection"]

DEFAULT_MAX_BODY = 1 << 20  # bytes of a body kept for a check; the rest is counted


class ConnectionOwner(Protocol):
    """What a connection reports to (the engine)."""

    def on_connected(self, conn: Connection) -> None: ...
    def on_answer(self, conn: Connection, status: int, keep_alive: bool) -> None: ...
    def on_lost(self, conn: Connection, exc: Exception | None) -> None: ...
    def on_unsolicited(self, conn: Connection, count: int) -> None: ...


class _HeadEnd(Exception):
    """Stops the parser at the end of a HEAD response's headers."""


class Connection(asyncio.Protocol):
    """One TCP connection; the engine sets the request fields before ``send``."""

    __slots__ = (
        "arrival",
        "body",
        "busy",
        "cell",
        "closed",
        "completed",
        "deadline",
        "endpoint",
        "head",
        "head_chunks",
        "in_body",
        "informational",
        "intended",
        "keep_alive",
        "kept",
        "max_body",
        "owner",
        "parser",
        "run",
        "sent",
        "status",
        "transport",
        "truncated",
        "user",
        "want_body",
    )

    def __init__(
        self, owner: ConnectionOwner, user: int = -1, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        self.owner = owner
        self.user = user  # virtual user index (closed model), -1 for the open model
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.closed = False
        self.cell = 0
        self.endpoint = 0
        self.intended = 0
        self.sent = 0
        self.deadline = 0
        self.want_body = False
        self.run: Any = None  # the journey run whose step is in flight (events.py)
        self.arrival: Any = None  # the given arrival in flight (a replayed request)
        self.head = False  # the request in flight is a HEAD
        self.body: list[bytes] = []
        self.kept = 0  # body bytes kept for the check
        self.truncated = False  # the body was longer than max_body
        self.completed = 0  # final responses completed in the current data chunk
        self.status = 0
        self.keep_alive = True
        self.in_body = False  # a response's headers are done, its body is not
        # What arrived since the send until the final headers (references, not
        # copies): read only when the connection ends a body (EOF).
        self.head_chunks: list[bytes] = []
        self.informational = 0  # 1xx responses before the final one

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.owner.on_connected(self)

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head_chunks.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not isinstance(exc.__context__, _HeadEnd) and not self._head_ended():
                self.abort()
                self.owner.on_lost(self, exc)
                return
            # A HEAD response ends at its headers: a new parser for what follows.
            self.parser = httptools.HttpResponseParser(self)
        completed, self.completed = self.completed, 0
        if not completed:
            return
        # One request at a time: a second response in one chunk, or one while
        # nothing was asked, was not asked for (a confused server or proxy).
        extra = completed - 1 if self.busy else completed
        if extra:
            self.abort()
            self.owner.on_unsolicited(self, extra)
        if self.busy:
            self.owner.on_answer(self, self.status, self.keep_alive and not self.closed)

    def _head_ended(self) -> bool:
        # httptools may not chain the callback's exception: the flag says it too.
        return self.head and self.completed > 0 and not self.in_body

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.busy and self.in_body and self._ends_at_eof():
            # A body without length or chunking ends with the connection.
            self.in_body = False
            self.owner.on_answer(self, self.parser.get_status_code(), False)
            return
        self.owner.on_lost(self, exc)

    def _ends_at_eof(self) -> bool:
        # The final response's header block follows the informational ones.
        blocks = b"".join(self.head_chunks).lower().split(b"\r\n\r\n")
        head = blocks[min(self.informational, len(blocks) - 1)]
        return b"\ncontent-length:" not in head and b"chunked" not in head

    # -- httptools callbacks ------------------------------------------------

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self.informational += 1
            return  # 1xx (e.g. 103 Early Hints): the final response follows
        if self.head:
            self.status = status
            self.keep_alive = self.parser.should_keep_alive()
            self.completed += 1
            raise _HeadEnd
        self.in_body = True

    def on_body(self, body: bytes) -> None:
        if self.want_body:
            room = self.max_body - self.kept
            if len(body) > room:
                self.truncated = True
                body = body[:room]
            if body:
                self.body.append(body)
                self.kept += len(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            return  # an informational response is not the answer
        self.in_body = False
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.completed += 1

    # -- used by the engine -------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write one request (the engine has set the request fields)."""
        assert self.transport is not None
        self.busy = True
        self.head = data[:5] == b"HEAD "
        self.head_chunks.clear()
        self.informational = 0
        if self.kept or self.body:
            self.body.clear()
            self.kept = 0
        self.truncated = False
        self.transport.write(data)

    def headers(self) -> list[tuple[str, str]]:
        """The last response's headers (kept by :class:`JourneyConnection` only)."""
        return []

    def take_body(self) -> bytes:
        """The body of the last response (only kept when ``want_body`` was set)."""
        body = b"".join(self.body)
        self.body.clear()
        self.kept = 0
        return body

    def close(self) -> None:
        """Close politely; ``on_lost`` is not reported for a close we asked for."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (timeouts, protocol errors)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class JourneyConnection(Connection):
    """A connection that also keeps response headers: journeys extract from them
    and keep their cookies. Only scenarios with journeys pay for the callback."""

    __slots__ = ("_headers",)

    def __init__(
        self, owner: ConnectionOwner, user: int = -1, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        super().__init__(owner, user, max_body)
        self._headers: list[tuple[str, str]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.run is not None:
            self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def send(self, data: bytes) -> None:
        self._headers = []
        super().send(data)

    def headers(self) -> list[tuple[str, str]]:
        return self._headers
