"""pprof profiles (Go's ``/debug/pprof``, and anything else that writes
``profile.proto``) read into collapsed stacks, without a Go toolchain.

The message classes are built at import from the schema below (the field
numbers of google/pprof's ``proto/profile.proto``) with the ``protobuf``
package's descriptor pool: no generated ``_pb2`` module to keep in step with
the protobuf runtime, and no hand-written wire decoder.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from perfsuite.errors import ProfileError
from perfsuite.stats.flame import Stacks

__all__ = ["PprofProfile", "read_pprof"]

_I64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
_U64 = descriptor_pb2.FieldDescriptorProto.TYPE_UINT64
_STR = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_MSG = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_BOOL = descriptor_pb2.FieldDescriptorProto.TYPE_BOOL

# message -> (field name, number, type, repeated, message type); profile.proto's.
_SCHEMA: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "Profile": [
        ("sample_type", 1, _MSG, True, "ValueType"),
        ("sample", 2, _MSG, True, "Sample"),
        ("location", 4, _MSG, True, "Location"),
        ("function", 5, _MSG, True, "Function"),
        ("string_table", 6, _STR, True, ""),
        ("duration_nanos", 10, _I64, False, ""),
        ("period_type", 11, _MSG, False, "ValueType"),
        ("period", 12, _I64, False, ""),
        ("default_sample_type", 14, _I64, False, ""),
    ],
    "ValueType": [("type", 1, _I64, False, ""), ("unit", 2, _I64, False, "")],
    "Sample": [("location_id", 1, _U64, True, ""), ("value", 2, _I64, True, "")],
    "Location": [
        ("id", 1, _U64, False, ""),
        ("address", 3, _U64, False, ""),
        ("line", 4, _MSG, True, "Line"),
        ("is_folded", 5, _BOOL, False, ""),
    ],
    "Line": [("function_id", 1, _U64, False, ""), ("line", 2, _I64, False, "")],
    "Function": [
        ("id", 1, _U64, False, ""),
        ("name", 2, _I64, False, ""),
        ("system_name", 3, _I64, False, ""),
        ("filename", 4, _I64, False, ""),
    ],
}
# Fields left out above (mappings, labels, comments, ...) are skipped by the parser
# as unknown fields: they carry nothing a flame graph draws.


def _profile_class() -> Any:
    package = "perfsuite.pprof"
    file = descriptor_pb2.FileDescriptorProto(
        name="perfsuite_pprof.proto", package=package, syntax="proto3"
    )
    for name, fields in _SCHEMA.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind)
            field.label = (
                descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            )
            if type_name:
                field.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Profile"))


_Profile = _profile_class()


@dataclass(frozen=True, kw_only=True)
class PprofProfile:
    """One profile: its stacks (root first) with one sample type's values."""

    stacks: Stacks
    sample_type: str  # e.g. "cpu/nanoseconds", "goroutine/count"
    sample_types: tuple[str, ...]  # all the profile has
    duration_s: float | None


def read_pprof(data: bytes, *, sample_type: str | None = None) -> PprofProfile:
    """Decode a pprof profile (gzipped or not) into collapsed stacks.

    ``sample_type`` picks the value ("cpu", or "cpu/nanoseconds"); by default
    the profile's own default, else its last (pprof's rule). A frame's name is
    its function's; inlined functions are frames of their own, the caller
    after the callee (as ``go tool pprof -traces`` shows them); an address with
    no function reads ``0x...``.
    """
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ProfileError(f"pprof profile: not gzip data: {exc}") from None
    profile = _Profile()
    try:
        profile.ParseFromString(data)
    except DecodeError as exc:
        raise ProfileError(f"pprof profile: cannot decode: {exc}") from None
    strings = list(profile.string_table)

    def text(index: int) -> str:
        if not 0 <= index < len(strings):
            raise ProfileError(f"pprof profile: string index {index} out of range")
        return str(strings[index])

    types = tuple(f"{text(v.type)}/{text(v.unit)}" for v in profile.sample_type)
    if not types:
        raise ProfileError("pprof profile: no sample types")
    column = _column(types, sample_type, text(profile.default_sample_type))
    functions = {f.id: text(f.name) or text(f.system_name) for f in profile.function}
    frames: dict[int, tuple[str, ...]] = {}
    for loc in profile.location:
        # line[0] is the innermost inlined function, the last the real caller.
        names = [functions.get(line.function_id, "") for line in loc.line]
        names = [n for n in names if n] or [f"0x{loc.address:x}"]
        frames[loc.id] = tuple(reversed(names))
    stacks: dict[tuple[str, ...], float] = {}
    for sample in profile.sample:
        if column >= len(sample.value):
            raise ProfileError(f"pprof profile: a sample has {len(sample.value)} values")
        value = float(sample.value[column])
        if not value:
            continue
        path: list[str] = []
        for loc_id in reversed(sample.location_id):  # location_id[0] is the leaf
            if loc_id not in frames:
                raise ProfileError(f"pprof profile: a sample names location {loc_id}, not listed")
            path.extend(frames[loc_id])
        if not path:  # a sample with no location: nothing to draw (pprof skips it too)
            continue
        key = tuple(path)
        stacks[key] = stacks.get(key, 0.0) + value
    duration = profile.duration_nanos / 1e9 if profile.duration_nanos else None
    return PprofProfile(
        stacks=stacks, sample_type=types[column], sample_types=types, duration_s=duration
    )


def _column(types: tuple[str, ...], wanted: str | None, default: str) -> int:
    if wanted is None:
        for i, t in enumerate(types):
            if default and t.split("/")[0] == default:
                return i
        return len(types) - 1
    for i, t in enumerate(types):
        if wanted in (t, t.split("/")[0]):
            return i
    raise ProfileError(f"pprof profile: no sample type {wanted!r} (it has {', '.join(types)})")
