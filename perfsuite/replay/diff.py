"""Answers compared as Diffy does: two references tell noise from change.

Each replayed request is answered by the candidate and twice by the
reference (two calls, or two instances). A field whose two reference answers
differ is *noise* for its endpoint (a timestamp, a generated id); a field
where the candidate differs from the reference and that is not noise is a
*difference*. A request differs when any of its fields does; the diff rate of
an endpoint is the share of its compared requests that differ.

JSON bodies are compared structurally, field by field (``items[].sku_id``:
array elements by position, their paths with ``[]``, so that the fields of
all elements are one field in the report); other bodies byte for byte up to
``max_bytes``. The status code is a field too (``status``). Examples keep the
target and both values, with credentials masked.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from perfsuite.replay.normalise import MASK, is_secret, mask_target

__all__ = [
    "Answer",
    "DiffExample",
    "Differences",
    "EndpointDiff",
    "fields_that_differ",
    "vars_of",
]

_MISSING = "<missing>"


@dataclass(frozen=True, slots=True)
class Answer:
    """A status and body, as answered (or recorded)."""

    status: int
    body: bytes | None  # None: unknown (a capture without bodies)


def _flatten(value: Any, path: str, out: dict[str, list[Any]]) -> None:
    if isinstance(value, dict):
        if not value:
            out.setdefault(path, []).append({})
        for key, inner in value.items():
            _flatten(inner, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        out.setdefault(path + "#len", []).append(len(value))
        for inner in value:
            _flatten(inner, path + "[]", out)
    else:
        out.setdefault(path or "$", []).append(value)


def _fields(answer: Answer, max_bytes: int, as_json: bool = True) -> dict[str, list[Any]] | None:
    """The answer's fields: the status, and the body's (None: the body is unknown)."""
    out: dict[str, list[Any]] = {"status": [answer.status]}
    if answer.body is None:
        return None
    try:
        if not as_json:
            raise ValueError("compared as bytes")
        _flatten(json.loads(answer.body), "", out)
    except (ValueError, UnicodeDecodeError):
        out["body"] = [answer.body[:max_bytes]]
    return out


def fields_that_differ(a: Answer, b: Answer, *, max_bytes: int = 65536) -> set[str]:
    """The fields where two answers differ (``status`` only, when a body is unknown).

    When one body is JSON and the other is not, both are compared as bytes: one
    difference (``body``), not each JSON field against nothing.
    """
    fa, fb = _fields(a, max_bytes), _fields(b, max_bytes)
    if fa is None or fb is None:
        return set() if a.status == b.status else {"status"}
    if ("body" in fa) != ("body" in fb):
        fa, fb = _fields(a, max_bytes, False), _fields(b, max_bytes, False)
        assert fa is not None
        assert fb is not None
    return {key for key in fa.keys() | fb.keys() if fa.get(key) != fb.get(key)}


def _shown(name: str, value: Any) -> str:
    last = name.rsplit(".", 1)[-1].removesuffix("[]")
    if is_secret(last):
        return MASK
    text = json.dumps(value, default=repr) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _values(answer: Answer, name: str, max_bytes: int) -> str:
    fields = _fields(answer, max_bytes) or {"status": [answer.status]}
    values = fields.get(name)
    if values is None and name == "body" and answer.body is not None:
        values = [answer.body[:max_bytes]]  # compared as bytes: the other body was not JSON
    if values is None:
        return _MISSING
    return _shown(name, values[0] if len(values) == 1 else values)


@dataclass(frozen=True, slots=True)
class DiffExample:
    """One request where a field differed: its target and both values (masked)."""

    target: str
    reference: str
    candidate: str


@dataclass(kw_only=True)
class EndpointDiff:
    """What the comparisons of one endpoint found."""

    compared: int = 0
    unknown: int = 0  # answers without a body to compare (status compared only)
    noise: Counter[str] = field(default_factory=Counter)  # field -> references differed
    raw: Counter[str] = field(default_factory=Counter)  # field -> candidate differed
    # The set of fields that differed per request (few distinct sets, however many requests).
    patterns: Counter[frozenset[str]] = field(default_factory=Counter)
    statuses: Counter[tuple[int, int]] = field(default_factory=Counter)  # (reference, candidate)
    examples: dict[str, list[DiffExample]] = field(default_factory=dict)

    def noise_fields(self) -> frozenset[str]:
        """The fields the reference itself did not answer the same twice."""
        return frozenset(self.noise)

    def differing(self) -> int:
        """Requests with a difference that is not noise."""
        noise = self.noise_fields()
        return sum(n for fields, n in self.patterns.items() if fields - noise)

    @property
    def rate(self) -> float:
        """The share of compared requests that differ (0 when none were compared)."""
        return self.differing() / self.compared if self.compared else 0.0

    def fields(self) -> list[tuple[str, int]]:
        """The fields that differ (noise left out), most often first."""
        noise = self.noise_fields()
        return sorted(
            ((f, n) for f, n in self.raw.items() if f not in noise), key=lambda x: (-x[1], x[0])
        )


@dataclass(kw_only=True)
class Differences:
    """The comparisons of a replay, per endpoint; ``examples`` kept per field."""

    examples: int = 3
    max_bytes: int = 65536
    reference: str = "the reference"  # what the candidate's answers were compared with
    endpoints: dict[str, EndpointDiff] = field(default_factory=dict)
    not_compared: str = ""  # answers left out of the comparisons, and why

    def add(
        self,
        endpoint: str,
        target: str,
        reference: Answer,
        candidate: Answer,
        noise: tuple[Answer, Answer] | None = None,
    ) -> None:
        """Compare one request's answers; ``noise``: two answers to the same request from
        one build (the reference twice, or the candidate twice when the reference is a
        recording), whose differences are noise."""
        diff = self.endpoints.setdefault(endpoint, EndpointDiff())
        diff.compared += 1
        if reference.body is None or candidate.body is None:
            diff.unknown += 1
        if noise is not None:
            diff.noise.update(fields_that_differ(*noise, max_bytes=self.max_bytes))
        found = fields_that_differ(reference, candidate, max_bytes=self.max_bytes)
        diff.raw.update(found)
        diff.patterns[frozenset(found)] += 1
        if reference.status != candidate.status:
            diff.statuses[(reference.status, candidate.status)] += 1
        for name in found:
            kept = diff.examples.setdefault(name, [])
            if len(kept) < self.examples:
                kept.append(
                    DiffExample(
                        target=mask_target(target),
                        reference=_values(reference, name, self.max_bytes),
                        candidate=_values(candidate, name, self.max_bytes),
                    )
                )

    def __iter__(self) -> Iterator[tuple[str, EndpointDiff]]:
        return iter(sorted(self.endpoints.items()))

    def rates(self) -> Mapping[str, float]:
        """Each endpoint's diff rate."""
        return {name: diff.rate for name, diff in self}

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per endpoint: (answers that differ, answers compared), for ``diff_rate``."""
        return {name: (diff.differing(), diff.compared) for name, diff in self}

    def report(self) -> list[str]:
        """Per endpoint: how many answers differ, the noise, the fields that differ (the
        ten most frequent, each with an example) and the status changes."""
        lines = [f"answers compared with {self.reference}:"]
        for endpoint, diff in self:
            noise = sorted(diff.noise_fields())
            lines.append(
                f"  {endpoint}: {diff.differing()} of {diff.compared} differ ({diff.rate:.1%})"
                + (f"; noise: {', '.join(noise)}" if noise else "")
            )
            for name, n in diff.fields()[:10]:
                (example, *_) = diff.examples.get(name, [None])
                shown = (
                    f" (e.g. {example.target}: {example.reference} -> {example.candidate})"
                    if example is not None
                    else ""
                )
                lines.append(f"    {name}: {n}{shown}")
            for (was, now), n in diff.statuses.most_common(5):
                lines.append(f"    status {was} -> {now}: {n}")
        if self.not_compared:
            lines.append(f"  not compared: {self.not_compared}")
        return lines

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, per endpoint (examples masked already)."""
        return {
            name: {
                "compared": d.compared,
                "differing": d.differing(),
                "rate": d.rate,
                "unknown": d.unknown,
                "noise": sorted(d.noise_fields()),
                "fields": dict(d.fields()),
                "statuses": [[was, now, n] for (was, now), n in d.statuses.most_common()],
                "examples": {
                    f: [vars_of(e) for e in examples]
                    for f, examples in d.examples.items()
                    if f not in d.noise_fields()
                },
            }
            for name, d in self
        }


def vars_of(example: DiffExample) -> dict[str, str]:
    """An example as a JSON object."""
    return {
        "target": example.target,
        "reference": example.reference,
        "candidate": example.candidate,
    }
