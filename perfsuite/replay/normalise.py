"""A recorded request made fit to send again: filtered, its headers cleaned, its ids mapped.

- **Filter**: by method and by target (regexes). Writes (anything but GET,
  HEAD and OPTIONS) are refused unless ``allow_writes``; a write whose body the
  capture did not keep (access logs) is never sent.
- **Headers**: the hop-by-hop ones (RFC 9110 7.6.1) and those the sender sets
  itself (Host, Content-Length) are dropped, and the volatile ones that would
  change the answer (conditional requests get a 304 where the recording got
  a body); ``set_headers`` puts this environment's values (a token) in.
- **Ids**: a recorded id becomes this environment's id wherever it is a whole
  path segment, a query value or a JSON value of the body: from a table given
  up front, or learned as the replay goes (an order created by a replayed
  POST has a new id; the later requests that used the recorded one get it).
- **Secrets**: :func:`mask_headers`, :func:`mask_target` and :func:`mask_json`
  hide credentials in anything written to a report.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from perfsuite.errors import ConfigError
from perfsuite.replay.capture import Headers, Recorded

__all__ = [
    "HOP_BY_HOP",
    "IdMap",
    "Learn",
    "Outgoing",
    "Rules",
    "is_secret",
    "mask_headers",
    "mask_json",
    "mask_target",
    "prepare",
    "refused",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # Set by the sender for the bytes it sends, and the target it sends them to.
        "host",
        "content-length",
    }
)
# The answer to these depends on the client's cache, not on the service.
VOLATILE = frozenset({"if-none-match", "if-modified-since", "if-match", "if-range"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SECRET = re.compile(
    r"(?i)^(authorization|proxy-authorization|cookie|set-cookie)$"
    r"|token|secret|passw|api[-_]?key|session|signature|credential"
)
MASK = "***"


def is_secret(name: str) -> bool:
    """Is a header, query parameter or JSON field of this name a credential?"""
    return bool(_SECRET.search(name))


def mask_headers(headers: Headers) -> Headers:
    """The headers with credentials' values hidden."""
    return tuple((k, MASK if is_secret(k) else v) for k, v in headers)


def _query(query: str, value: Callable[[str, str], str]) -> str:
    """A query string with each value replaced by ``value(name, raw value)``; the rest of
    it (order, encoding, separators) left byte for byte as it was."""
    parts = []
    for part in query.split("&"):
        name, eq, raw = part.partition("=")
        parts.append(name + eq + value(unquote_plus(name), raw) if eq else part)
    return "&".join(parts)


def mask_target(target: str) -> str:
    """A request target with the values of credential-like query parameters hidden."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    return path + "?" + _query(query, lambda name, raw: MASK if is_secret(name) else raw)


def mask_json(value: Any) -> Any:
    """A JSON value with credential-like fields hidden, at any depth."""
    if isinstance(value, dict):
        return {k: MASK if is_secret(str(k)) else mask_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Learn:
    """Learn an id from answers: for requests ``method`` to ``path`` (a regex on the target),
    the value at ``field`` (a dotted path into the JSON answer, ``id`` or ``order.id``) in the
    recorded answer becomes the value at the same place in the replayed one."""

    method: str
    path: str
    field: str

    def __post_init__(self) -> None:
        try:
            re.compile(self.path)
        except re.error as exc:
            raise ConfigError(f"learn: {self.path!r} is not a regex: {exc}") from None
        if not self.field or any(not part for part in self.field.split(".")):
            raise ConfigError(f"learn: {self.field!r} is not a dotted field path")

    def matches(self, method: str, target: str) -> bool:
        """Does this rule apply to a request?"""
        return method == self.method.upper() and re.search(self.path, target) is not None

    def pick(self, body: bytes | None) -> str | None:
        """The field's value in a JSON body, as text (None: not there)."""
        try:
            value: Any = json.loads(body or b"")
        except ValueError:
            return None
        for part in self.field.split("."):
            if isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            elif isinstance(value, dict) and part in value:
                value = value[part]
            else:
                return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        return str(value)


@dataclass(kw_only=True)
class IdMap:
    """Recorded ids and this environment's: given up front, and learned from answers."""

    table: dict[str, str] = field(default_factory=dict)
    learned: int = 0

    def learn(self, rules: tuple[Learn, ...], item: Recorded, status: int, body: bytes) -> None:
        """Read the ids a replayed answer gives (against the recorded answer's)."""
        recorded = item.response
        if recorded is None or not 200 <= status < 300:
            return
        for rule in rules:
            if rule.matches(item.method, item.target):
                old, new = rule.pick(recorded.body), rule.pick(body)
                if old is not None and new is not None and old != new:
                    self.table[old] = new
                    self.learned += 1

    def target(self, target: str) -> str:
        """Ids mapped in whole path segments and query values."""
        if not self.table:
            return target
        path, sep, query = target.partition("?")
        path = "/".join(self.table.get(part, part) for part in path.split("/"))
        if sep:
            query = _query(query, lambda _, raw: self.table.get(raw, raw))
        return path + sep + query

    def body(self, body: bytes, content_type: str | None) -> bytes:
        """Ids mapped in a JSON body's values (other bodies are sent as recorded)."""
        if not self.table or not body or "json" not in (content_type or ""):
            return body
        try:
            value = json.loads(body)
        except ValueError:
            return body
        return json.dumps(self._json(value), separators=(",", ":")).encode()

    def _json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._json(v) for v in value]
        if isinstance(value, bool) or not isinstance(value, str | int):
            return value
        mapped = self.table.get(str(value))
        if mapped is None:
            return value
        # An id stays the JSON type it was: a number as a number when the new one is.
        return int(mapped) if isinstance(value, int) and mapped.lstrip("-").isdigit() else mapped


@dataclass(frozen=True, kw_only=True)
class Rules:
    """How recorded requests are replayed (see the module's docstring)."""

    methods: frozenset[str] | None = None  # only these (None: any the writes rule allows)
    include: tuple[str, ...] = ()  # regexes on the target: only these (default: all)
    exclude: tuple[str, ...] = ()  # regexes on the target: never these
    drop_headers: frozenset[str] = frozenset()  # lower-case names, beyond the defaults
    set_headers: Mapping[str, str] = field(default_factory=dict)
    allow_writes: bool = False
    ids: Mapping[str, str] = field(default_factory=dict)
    learn: tuple[Learn, ...] = ()

    @functools.cached_property
    def left_out(self) -> frozenset[str]:
        """The recorded headers not sent (lower case): the dropped ones, and those set."""
        setting = {k.lower() for k in self.set_headers}
        return HOP_BY_HOP | VOLATILE | self.drop_headers | setting

    def __post_init__(self) -> None:
        for pattern in (*self.include, *self.exclude):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"replay filter {pattern!r} is not a regex: {exc}") from None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request as it will be sent: method, target, headers and body."""

    method: str
    target: str
    headers: Headers
    body: bytes


def refused(item: Recorded, rules: Rules) -> str | None:
    """Why a recorded request is not replayed, or None."""
    if rules.methods is not None and item.method not in rules.methods:
        return f"method {item.method} not selected"
    if rules.include and not any(re.search(p, item.target) for p in rules.include):
        return "target not included"
    if any(re.search(p, item.target) for p in rules.exclude):
        return "target excluded"
    if item.method not in SAFE_METHODS:
        if not rules.allow_writes:
            return f"a write ({item.method}): allow_writes is off"
        if item.body is None:
            return f"a write ({item.method}) whose body the capture did not keep"
    return None


def prepare(item: Recorded, rules: Rules, ids: IdMap, *, checked: bool = False) -> Outgoing | str:
    """The request to send for a recorded one, or why it is not sent (``checked``: it is
    known to be replayed, :func:`refused` was asked)."""
    why = None if checked else refused(item, rules)
    if why is not None:
        return why
    left_out = rules.left_out
    headers = tuple((k, v) for k, v in item.headers if k.lower() not in left_out) + tuple(
        rules.set_headers.items()
    )
    content_type = next((v for k, v in item.headers if k.lower() == "content-type"), None)
    return Outgoing(
        method=item.method,
        target=ids.target(item.target),
        headers=headers,
        body=ids.body(item.body or b"", content_type),
    )
