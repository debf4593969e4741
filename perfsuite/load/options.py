"""The engine's limits and thresholds, and what it reports once a second."""

from __future__ import annotations

from dataclasses import dataclass

from perfsuite.errors import ConfigError
from perfsuite.load.transport import DEFAULT_MAX_BODY

__all__ = ["EngineOptions", "Progress"]


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Limits and thresholds of a run."""

    max_connections: int = 1_000
    timeout: float = 10.0  # a request not answered this long after its send is a timeout
    connect_timeout: float = 5.0  # a connection not made this long after the attempt fails
    max_body: int = (
        DEFAULT_MAX_BODY  # bytes of a response body kept for a check (the rest is counted)
    )
    # https:// targets: certificates are verified (against ca_bundle, else the system's).
    verify: bool = True
    ca_bundle: str | None = None
    late_threshold: float = 0.010  # a send later than this after its intended time is late
    saturation_share: float = 0.01  # more generator-late sends than this: saturated
    max_requests: int = 50_000_000  # hard cap on sends, whatever the phases say
    max_duration: float = 4 * 3600.0  # hard cap on the phases' total duration
    allowed_hosts: tuple[str, ...] = ()
    prebuilt: int = 4096  # requests built ahead per endpoint (dynamic builders)
    tick: float = 0.001  # the open model's timer: sends due are released at most this often
    # Open model over several processes: this one sends arrivals worker, worker + workers, ...
    worker: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_connections <= 100_000:
            raise ConfigError(f"max_connections must be 1..100000, got {self.max_connections}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0, got {self.timeout}")
        if not self.connect_timeout > 0:
            raise ConfigError(f"connect_timeout must be > 0, got {self.connect_timeout}")
        if not 0 < self.tick <= 0.1:
            raise ConfigError(f"tick must be in (0, 0.1] s, got {self.tick}")
        if not 0 <= self.worker < self.workers:
            raise ConfigError(f"worker must be in 0..{self.workers - 1}, got {self.worker}")
        if not self.max_body >= 0:
            raise ConfigError(f"max_body must be >= 0 bytes, got {self.max_body}")


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Once a second, for the live line: where the run is and how it goes."""

    phase: str
    elapsed: float
    total: float
    rps: float  # successful requests in the last second
    p95_ms: float  # of every request that ended in it
    errors: int
