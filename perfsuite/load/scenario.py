"""What is sent: a weighted mix of named requests, built with httpx.

httpx builds URLs, JSON bodies and headers (it is good at that); the engine
only sends the bytes, because httpx is too slow to be the hot path.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from perfsuite import __version__
from perfsuite.errors import ConfigError

if TYPE_CHECKING:
    from perfsuite.load.journey import Journey

__all__ = ["Context", "Request", "Scenario", "encode_request"]

Check = Callable[[int, bytes], bool]
Builder = Callable[["Context"], httpx.Request]


class Context:
    """What a request builder gets: a seeded RNG, the feeders, and httpx to build with.

    ``ctx.get("/orders/1")``, ``ctx.post("/orders", json={...})`` or
    ``ctx.request(method, url, **httpx_kwargs)`` return an ``httpx.Request``
    relative to the target; ``ctx.pick("user_id")`` draws from a feeder.
    """

    __slots__ = ("_client", "data", "rng")

    def __init__(self, base_url: str, data: Mapping[str, Sequence[Any]], seed: int) -> None:
        self.rng = random.Random(seed)
        self.data = data
        # identity: the engine reads bodies as sent, it does not decompress them.
        self._client = httpx.Client(
            base_url=base_url,
            headers={"accept-encoding": "identity", "user-agent": f"perfsuite/{__version__}"},
        )

    def pick(self, name: str) -> Any:
        """A random element of the feeder ``name``."""
        try:
            values = self.data[name]
        except KeyError:
            raise ConfigError(f"no feeder named {name!r} (feeders: {sorted(self.data)})") from None
        return values[self.rng.randrange(len(values))]

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Request:
        """``httpx.Client.build_request`` against the target."""
        return self._client.build_request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Request:
        """A GET request."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Request:
        """A POST request (``json=``, ``content=``, ``data=`` as in httpx)."""
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        """Release the httpx client used for building."""
        self._client.close()


def _default_status(status: int) -> bool:
    return 200 <= status < 300


@dataclass(frozen=True, kw_only=True)
class Request:
    """One named kind of request in a scenario (an "endpoint" in the results).

    ``build`` returns an ``httpx.Request`` for each send (or is one, sent as is).
    ``status`` lists the accepted status codes (default: any 2xx); ``check``
    is a predicate on (status, body); a failing one counts as a ``check`` error.
    ``stale`` is a predicate on (status, body) of a success: True when the
    answer does not hold a write made just before (a read from a replica
    that is behind); such an answer is a success, counted as a stale read.
    """

    name: str
    build: Builder | httpx.Request
    weight: float = 1.0
    status: Collection[int] | None = None
    check: Check | None = None
    stale: Check | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"request name must be a plain word, got {self.name!r}")
        if not self.weight > 0:
            raise ConfigError(f"request {self.name!r}: weight must be > 0, got {self.weight}")

    def with_weight(self, weight: float) -> Request:
        """The same request with another weight in the mix."""
        return dataclasses.replace(self, weight=weight)

    def accepts(self, status: int) -> bool:
        """Is this status a success for this request?"""
        return _default_status(status) if self.status is None else status in self.status


@dataclass(frozen=True)
class Scenario:
    """A weighted mix of requests and journeys, plus the data they draw from (feeders)."""

    items: tuple[Request | Journey, ...]
    data: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    seed: int = 1

    def __init__(
        self,
        *items: Request | Journey,
        data: Mapping[str, Sequence[Any]] | None = None,
        seed: int = 1,
    ) -> None:
        from perfsuite.load.journey import Journey  # journeys build on this module

        if not items:
            raise ConfigError("a scenario needs at least one request")
        for item in items:
            if not isinstance(item, Request | Journey):
                raise ConfigError(f"a scenario holds Requests and Journeys, got {item!r}")
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise ConfigError(f"request names must be unique, got {names}")
        for name, values in (data or {}).items():
            if len(values) == 0:
                raise ConfigError(f"feeder {name!r} is empty")
        object.__setattr__(self, "items", tuple(items))
        object.__setattr__(self, "data", dict(data or {}))
        object.__setattr__(self, "seed", seed)

    @property
    def requests(self) -> tuple[Request, ...]:
        """The plain requests (journeys left out)."""
        return tuple(item for item in self.items if isinstance(item, Request))

    @property
    def names(self) -> list[str]:
        """The endpoints of the results, in order: each request; each journey, then
        its steps (``journey/step``)."""
        return [n for item in self.items for n in _names(item)]


def _names(item: Request | Journey) -> list[str]:
    return [item.name] if isinstance(item, Request) else item.names


def encode_request(request: httpx.Request) -> bytes:
    """The HTTP/1.1 bytes of an httpx request, for a keep-alive connection."""
    target = request.url.raw_path
    head = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    body = request.read()
    has_length = False
    for key, value in request.headers.raw:
        lower = key.lower()
        if lower == b"connection":
            continue
        if lower == b"content-length":
            has_length = True
        head.append(key + b": " + value)
    if body and not has_length:
        head.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(head) + b"\r\n\r\n" + body
