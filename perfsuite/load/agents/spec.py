"""Where load agents run: execnet gateway specs, in pytest-xdist's spelling.

``4*popen`` (four local processes), ``ssh=loadgen@10.0.0.5//python=/opt/bin/python``,
``2*ssh=...``, ``socket=host:port``. (``workers = N`` forks instead: see the README.)
"""

from __future__ import annotations

from collections.abc import Sequence

import execnet

from perfsuite.errors import ConfigError

__all__ = ["MAX_AGENTS", "parse_tx"]

MAX_AGENTS = 256
_KINDS = ("popen", "ssh", "socket")


def parse_tx(specs: Sequence[str]) -> list[execnet.XSpec]:
    """The gateways of ``specs``, each ``N*`` prefix expanded (as pytest-xdist's ``--tx``)."""
    out: list[execnet.XSpec] = []
    for text in specs:
        spec = text.strip()
        count = 1
        head, star, rest = spec.partition("*")
        if star and head.strip().isdigit():
            count, spec = int(head), rest.strip()
            if count < 1:
                raise ConfigError(f"load agents {text!r}: the count before '*' must be >= 1")
        try:
            xspec = execnet.XSpec(spec)
        except Exception as exc:  # execnet's own parse errors, translated here
            raise ConfigError(f"load agents {text!r}: {exc}") from exc
        if not any(getattr(xspec, kind, None) for kind in _KINDS):
            raise ConfigError(
                f"load agents {text!r}: expected popen, ssh=[user@]host or socket=host:port "
                "(pytest-xdist's --tx spelling, e.g. 2*popen or ssh=loadgen@10.0.0.5)"
            )
        # One XSpec each: a gateway takes its spec's id for its own.
        out.extend([xspec] + [execnet.XSpec(spec) for _ in range(count - 1)])
        if len(out) > MAX_AGENTS:
            raise ConfigError(f"load agents: at most {MAX_AGENTS}, got {len(out)}+")
    if not out:
        raise ConfigError("load agents: no gateway given (e.g. 2*popen)")
    return out
