"""What is shipped to a load agent: perfsuite's source and the project's own modules.

An agent on another machine has python3 and perfsuite's dependencies, but not
necessarily this version of perfsuite, nor the test's scenario module (its
functions are imported by name when the scenario is unpickled). Both are
sent over the gateway as source files and kept in a cache on the agent,
keyed by a hash of what was sent: a second load with the same code sends
only the hash, and an agent can never run another version than the
coordinator's.

"The project's own modules" are the ones imported here from a plain folder
of ``sys.path``: not the standard library, not an installed distribution
(site-packages), not a compiled extension. They are all shipped (a scenario's
module imports its neighbours), each at the path its name gives it.
"""

from __future__ import annotations

import hashlib
import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import perfsuite

__all__ = ["Bundle", "make_bundle"]

# Bundles are source: a file this large is data, not a module worth sending.
_MAX_FILE = 4 * 1024 * 1024


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
