"""An agent's clock against the coordinator's, from round trips (NTP's way).

Each round trip gives the coordinator's send and receive times and the agent's
reading in between. The agent read its clock somewhere inside the trip, so its
offset is the reading less the trip's midpoint, wrong by at most half the trip:
the fastest trip bounds the error best, whatever the paths' asymmetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ClockOffset", "estimate_offset"]


@dataclass(frozen=True)
class ClockOffset:
    """The agent's clock minus the coordinator's, in ns, and how far off it can be."""

    offset_ns: int  # add to a coordinator time to get the agent's time for the same instant
    uncertainty_ns: int  # half the fastest round trip: the offset is within +- this
    round_trip_ns: int  # the fastest round trip
    trips: int  # round trips measured

    def describe(self) -> str:
        """The numbers, for a message."""
        return (
            f"offset {self.offset_ns / 1e6:+.3f} ms +- {self.uncertainty_ns / 1e6:.3f} ms "
            f"(fastest of {self.trips} round trips: {self.round_trip_ns / 1e6:.3f} ms)"
        )


def estimate_offset(trips: Sequence[tuple[int, int, int]]) -> ClockOffset:
    """The offset from round trips ``(sent, agent_read, received)`` (ns; ``sent`` and
    ``received`` on the coordinator's clock, ``agent_read`` on the agent's)."""
    if not trips:
        raise ValueError("no round trip to estimate a clock offset from")
    for sent, _, received in trips:
        if received < sent:
            raise ValueError(f"a round trip ended before it began: {sent} -> {received}")
    sent, read, received = min(trips, key=lambda t: t[2] - t[0])
    rtt = received - sent
    return ClockOffset(
        offset_ns=read - (sent + received) // 2,
        uncertainty_ns=(rtt + 1) // 2,
        round_trip_ns=rtt,
        trips=len(trips),
    )
