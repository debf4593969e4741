"""What is shipped to a load agent: perfsuite's source, the project's own modules,
and the installed distributions the agent lacks.

An agent on another machine has python3, but not necessarily this version of
perfsuite, nor the test's scenario module (its functions are imported by name
when the scenario is unpickled), nor perfsuite's dependencies. perfsuite and
the project's modules are sent over the gateway as source files and kept in a
cache on the agent, keyed by a hash of what was sent: a second load with the
same code sends only the hash, and an agent can never run another version than
the coordinator's. A module the agent cannot import is sent as the whole
installed distribution that holds it (:func:`distribution_of`), cached the same
way; one with compiled code only to an agent of the same interpreter and platform.

"The project's own modules" are the ones imported here from a plain folder
of ``sys.path``: not the standard library, not an installed distribution
(site-packages), not a compiled extension. They are all shipped (a scenario's
module imports its neighbours), each at the path its name gives it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import perfsuite

__all__ = ["Bundle", "Distributions", "Platform", "distribution_of", "make_bundle", "platform"]

# Bundles are source: a file this large is data, not a module worth sending.
_MAX_FILE = 4 * 1024 * 1024
# Files that hold machine code: a distribution with any is tied to its interpreter's
# ABI and platform (numpy.libs' "libscipy_openblas64_-....so" too).
_COMPILED = (".so", ".pyd", ".dylib", ".dll")


@dataclass(frozen=True)
class Bundle:
    """Files by their path under the folder an agent puts first on ``sys.path``."""

    digest: str  # sha256 of the paths and contents, in order
    files: dict[str, bytes]


def make_bundle() -> Bundle:
    """perfsuite's package and every project module imported so far."""
    files: dict[str, bytes] = {}
    package = Path(perfsuite.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"perfsuite/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    installed = _installed()
    for name, module in sorted(sys.modules.items()):
        rel = _project_path(name, getattr(module, "__file__", None), installed)
        if rel is not None and rel not in files:
            files[rel] = Path(module.__file__).read_bytes()  # type: ignore[arg-type]
    digest = hashlib.sha256()
    for rel, data in sorted(files.items()):
        digest.update(rel.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return Bundle(digest=digest.hexdigest()[:32], files=files)


def _installed() -> tuple[Path, ...]:
    """Folders whose modules an agent must have already: the interpreter's and pip's."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    roots.add(site.getusersitepackages())
    return tuple(Path(r).resolve() for r in roots if r)


def _project_path(name: str, file: str | None, installed: tuple[Path, ...]) -> str | None:
    """The bundle path of module ``name`` (loaded from ``file``), None when it is not a
    project module (or its name does not match where it lies, as a ``__main__``)."""
    if name == "__main__" or name.split(".")[0] == "perfsuite" or not file:
        return None
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        return None
    resolved = path.resolve()
    if "site-packages" in resolved.parts or "dist-packages" in resolved.parts:
        return None
    if any(resolved.is_relative_to(root) for root in installed):
        return None
    parts = name.split(".")
    if path.name == "__init__.py":
        rel = Path(*parts, "__init__.py")
    else:
        rel = Path(*parts[:-1], f"{parts[-1]}.py")
    if tuple(resolved.parts[-len(rel.parts) :]) != rel.parts:
        return None  # imported under another name (pytest's importlib mode, a runpy)
    if os.path.getsize(resolved) > _MAX_FILE:
        return None
    return rel.as_posix()


@dataclass(frozen=True)
class Platform:
    """What decides whether compiled code built here runs there."""

    tag: str  # sys.implementation.cache_tag: "cpython-311"
    system: str  # sysconfig.get_platform(): "linux-x86_64"

    def __str__(self) -> str:
        return f"{self.tag} {self.system}"


def platform() -> Platform:
    """This interpreter's."""
    return Platform(tag=sys.implementation.cache_tag or "", system=sysconfig.get_platform())


@dataclass(frozen=True)
class Distributions:
    """The installed distributions that provide one top-level module."""

    names: tuple[str, ...]
    digest: str  # what an agent's cache keys them by

    def bundle(self) -> Bundle:
        """Their files, read now (only when the agent's cache lacks them)."""
        files: dict[str, bytes] = {}
        for name in self.names:
            for rel, path in _files(importlib.metadata.distribution(name)).items():
                files[rel] = path.read_bytes()
        return Bundle(digest=self.digest, files=files)


def distribution_of(module: str, there: Platform) -> Distributions | str:
    """What to send an agent of platform ``there`` that cannot import top-level
    ``module``: the installed distributions that hold it, whole (site-packages
    layout, metadata included); or why they cannot be sent."""
    names = tuple(sorted(set(_distributions().get(module) or ())))
    if not names:
        return f"no distribution installed here provides {module!r}"
    digest = hashlib.sha256()
    for name in names:
        dist = importlib.metadata.distribution(name)
        mine = _files(dist)
        if not mine:
            return f"{name} {dist.version} lists no files here (installed without a RECORD)"
        if any(_compiled(rel) for rel in mine) and there != platform():
            return (
                f"{name} {dist.version} holds compiled code built for {platform()}, and the "
                f"agent is {there}: install it there "
                f"(`python3 -m pip install '{name}=={dist.version}'`)"
            )
        # RECORD lists every file with its hash: the distribution's identity, known
        # without reading megabytes (numpy's 40) when the agent has it cached.
        record = dist.read_text("RECORD") or ""
        digest.update(f"{name}\0{dist.version}\0{record}\0".encode())
    return Distributions(names=names, digest=digest.hexdigest()[:32])


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module names to the distributions that provide them (80 ms: once)."""
    return dict(importlib.metadata.packages_distributions())


def _files(dist: importlib.metadata.Distribution) -> dict[str, Path]:
    """A distribution's importable files by their path under site-packages (its
    scripts, outside it, and byte code left out)."""
    root = Path(str(dist.locate_file(""))).resolve()
    found: dict[str, Path] = {}
    for entry in dist.files or []:
        path = Path(str(dist.locate_file(entry))).resolve()
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        if path.is_relative_to(root):
            found[path.relative_to(root).as_posix()] = path
    return found


def _compiled(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(_COMPILED) or ".so." in name
