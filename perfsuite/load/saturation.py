"""Was the generator, not the service, the bottleneck? A pure judgement on counters."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GeneratorStats", "judge_saturation"]


@dataclass(frozen=True, kw_only=True)
class GeneratorStats:
    """What the engine observed of itself during a run."""

    measured_sends: int  # scheduled in measured phases
    sends: int  # actually written to a connection
    late: int  # left more than the late threshold after their intended time
    late_generator: int  # ... although a connection was free
    idle_rate: float  # wake-ups per second with nothing due (open model)
    lag_p99_ms: float  # lateness of the engine's own timers
    cpu: float  # generator CPU seconds / wall seconds


def judge_saturation(
    stats: GeneratorStats, *, share_limit: float, late_threshold_ms: float
) -> tuple[bool, str]:
    """``(saturated, reason)``.

    Three signs, each with late sends: they left late although a connection
    was free, while the generator was busy (its loop held up, or its CPU over
    half a core); the event loop's own timers ran late (something blocks it);
    or the generator used over 80 % of its core (it then reads answers late,
    and sends queue behind connections that only look busy). A
    handful of late sends (a GC pause, the first connect) is noise, and so
    are late sends of an idle generator: the machine did not run it (another
    process had the cores), which is no bottleneck of its own.
    """
    if not stats.measured_sends:
        return False, ""
    gen_share = stats.late_generator / stats.measured_sends
    late_share = stats.late / max(1, stats.sends)
    facts = (
        f"event-loop lag p99 {stats.lag_p99_ms:.1f} ms, generator CPU {stats.cpu:.0%}, "
        f"{stats.idle_rate:.0f} idle wake-ups/s"
    )
    verdict = "the generator, not the service, was the bottleneck"
    busy = stats.cpu > 0.5 or stats.lag_p99_ms > late_threshold_ms
    if gen_share > share_limit and stats.late_generator >= 10 and busy:
        return True, (
            f"{gen_share:.1%} of measured sends left more than {late_threshold_ms:g} ms after "
            f"their intended time although a connection was free ({facts}): {verdict}"
        )
    late_enough = late_share > share_limit and stats.late >= 10
    if late_enough and stats.lag_p99_ms > 5 * late_threshold_ms:
        return True, (
            f"{late_share:.1%} of sends were late while the event loop itself was held up "
            f"({facts}; a slow check or builder blocks it): {verdict}"
        )
    if late_enough and stats.cpu > 0.8:
        # Near its core's limit, the generator reads answers late too: connections
        # look busy (so sends queue) although the service has answered.
        return True, (
            f"{late_share:.1%} of sends were late while the generator used {stats.cpu:.0%} "
            f"of its core, too near its limit to tell its own delay from the service's "
            f"({facts}): {verdict}"
        )
    return False, ""
