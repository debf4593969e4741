"""Journeys: steps that carry values from one response into the next request.

The seed's own flow is one: create an order, pay for *that* order with its
amount, query it. A :class:`Journey` is a named sequence of :class:`Step`\\ s;
a step's ``extract`` takes values out of its response (a JSON field, a
header, a regex group) into the virtual user's variables, and later steps
build their requests from them (``user["order_id"]``). Each journey run has
its own user: variables and cookies (``Set-Cookie`` is sent back as
``Cookie``). In the open model each arrival starts one journey; in the
closed model each virtual user loops over it, keeping its cookies (its
variables start empty at each loop).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from perfsuite.errors import ConfigError
from perfsuite.load.scenario import Check, Context, encode_request

__all__ = [
    "ExtractError",
    "Journey",
    "JourneyRun",
    "Response",
    "Step",
    "User",
    "header",
    "json_field",
    "regex",
]


class ExtractError(Exception):
    """A value a step was to extract is not in its response."""


@dataclass(frozen=True)
class Response:
    """What an extractor sees: status, headers (lower-cased names) and body."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header of that name (any case), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


Extractor = Callable[[Response], Any]


def json_field(path: str) -> Extractor:
    """The JSON body's field at a dotted path: ``json_field("order.id")``, ``"items.0.sku"``."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]

    def extract(response: Response) -> Any:
        try:
            value: Any = json.loads(response.body)
            for key in keys:
                value = value[key]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ExtractError(f"no JSON field {path!r} ({type(exc).__name__}: {exc})") from exc
        return value

    return extract


def header(name: str) -> Extractor:
    """A response header's value: ``header("Location")``."""

    def extract(response: Response) -> str:
        value = response.header(name)
        if value is None:
            raise ExtractError(f"no header {name!r}")
        return value

    return extract


def regex(pattern: str, group: int | str = 1) -> Extractor:
    """A group of the first match in the body (decoded as UTF-8): ``regex(r'id=(\\d+)')``."""
    compiled = re.compile(pattern)

    def extract(response: Response) -> str:
        match = compiled.search(response.body.decode("utf-8", "replace"))
        if match is None:
            raise ExtractError(f"no match for {pattern!r}")
        return match.group(group)

    return extract


class User:
    """A virtual user in a journey: its variables, its cookies, and request building.

    ``user["order_id"]`` reads a variable; ``user.get/post/request`` build
    requests as :class:`~perfsuite.load.scenario.Context` does, with the
    user's cookies; ``user.rng`` and ``user.pick(feeder)`` are the run's.
    """

    __slots__ = ("_ctx", "cookies", "vars")

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.vars: dict[str, Any] = {}
        self.cookies: dict[str, str] = {}

    def __getitem__(self, name: str) -> Any:
        try:
            return self.vars[name]
        except KeyError:
            known = sorted(self.vars)
            raise KeyError(f"no variable {name!r} (extracted so far: {known})") from None

    @property
    def rng(self) -> Any:
        """The run's seeded ``random.Random``."""
        return self._ctx.rng

    @property
    def data(self) -> Mapping[str, Sequence[Any]]:
        """The feeders (a builder written for a ``Context`` works for a user too)."""
        return self._ctx.data

    def pick(self, name: str) -> Any:
        """A random element of the feeder ``name``."""
        return self._ctx.pick(name)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Request:
        """``httpx.Client.build_request`` against the target, with this user's cookies."""
        request = self._ctx.request(method, url, **kwargs)
        if self.cookies:
            request.headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return request

    def get(self, url: str, **kwargs: Any) -> httpx.Request:
        """A GET request."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Request:
        """A POST request."""
        return self.request("POST", url, **kwargs)

    def keep_cookies(self, headers: Sequence[tuple[str, str]]) -> None:
        """Take the ``Set-Cookie`` headers of a response (name and value; no expiry or path)."""
        for name, value in headers:
            if name != "set-cookie":
                continue
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value)
            except CookieError:
                continue  # a malformed cookie is the server's problem, not the journey's
            for key, morsel in jar.items():
                self.cookies[key] = morsel.value


Builder = Callable[[User], httpx.Request]


@dataclass(frozen=True, kw_only=True)
class Step:
    """One request of a journey.

    ``build(user)`` returns the ``httpx.Request`` (or is one); ``extract``
    maps variable names to extractors of its response; ``status``, ``check``
    and ``stale`` judge it as a :class:`~perfsuite.load.scenario.Request`'s do.
    A step that fails (status, check, a value not found) ends its journey; a
    stale read does not (it is a success).
    """

    name: str
    build: Builder | httpx.Request
    extract: Mapping[str, Extractor] = field(default_factory=dict)
    status: Collection[int] | None = None
    check: Check | None = None
    stale: Check | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "step")

    def accepts(self, status: int) -> bool:
        """Is this status a success for this step?"""
        return 200 <= status < 300 if self.status is None else status in self.status

    def encode(self, user: User) -> bytes:
        """The step's request bytes for this user."""
        build = self.build
        return encode_request(build(user) if callable(build) else build)


@dataclass(frozen=True)
class Journey:
    """A named sequence of steps, run by one virtual user from the first to the last.

    Results have one endpoint for the whole journey (``name``: latency from
    the journey's intended start to its last answer; a failed step fails it)
    and one per step (``name/step``).
    """

    name: str
    steps: tuple[Step, ...]
    weight: float = 1.0

    def __init__(self, name: str, *steps: Step, weight: float = 1.0) -> None:
        _check_name(name, "journey")
        if not steps:
            raise ConfigError(f"journey {name!r} needs at least one step")
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ConfigError(f"journey {name!r}: step names must be unique, got {names}")
        if not weight > 0:
            raise ConfigError(f"journey {name!r}: weight must be > 0, got {weight}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "weight", weight)

    def with_weight(self, weight: float) -> Journey:
        """The same journey with another weight in the mix."""
        return Journey(self.name, *self.steps, weight=weight)

    @property
    def names(self) -> list[str]:
        """Its endpoints: the whole journey, then each step."""
        return [self.name, *(f"{self.name}/{s.name}" for s in self.steps)]


class JourneyRun:
    """One run of a journey by one user: which step it is at, since when."""

    __slots__ = ("cell", "ep", "first_sent", "journey", "k", "start", "user")

    def __init__(self, journey: Journey, ep: int, cell: int, start: int, user: User) -> None:
        self.journey = journey
        self.ep = ep  # the journey's own endpoint; step k is ep + 1 + k
        self.cell = cell  # likewise its cell in the phase it started in
        self.k = 0
        self.start = start  # intended start (ns): the journey's latency counts from it
        self.first_sent = 0
        self.user = user

    @property
    def step_name(self) -> str:
        """``journey/step`` of the current step."""
        return f"{self.journey.name}/{self.journey.steps[self.k].name}"


def _check_name(name: str, what: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{what} name must be a plain word, got {name!r}")
