"""Replay a capture against a target, and say what was replayed, left out, and how late."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from perfsuite.errors import ConfigError
from perfsuite.load import EngineOptions, LoadResult
from perfsuite.load.engine import Progress
from perfsuite.load.parallel import run_parallel
from perfsuite.load.safety import check_target
from perfsuite.replay import Capture
from perfsuite.replay.compare import RECORDED, Comparer
from perfsuite.replay.normalise import Rules
from perfsuite.replay.schedule import Pace, ReplayPlan, plan_replay, replay_phase

__all__ = ["Replayed", "replay"]


@dataclass(frozen=True)
class Replayed:
    """A replay's plan (what was read, left out) and its load result."""

    plan: ReplayPlan
    result: LoadResult
    late_ms: float  # a send later than this after its time is counted late
    comparer: Comparer | None = None

    def describe(self) -> str:
        """The plan in a few lines, then the result's table."""
        plan, read = self.plan, self.plan.read
        lines = [
            f"replay of {plan.capture.path.name} ({plan.capture.format}) at "
            f"{plan.pace.describe()}: {plan.requests} requests over {plan.duration:.1f}s, "
            f"{len(plan.routes)} endpoints"
        ]
        for why, n in sorted(plan.refused.items(), key=lambda x: -x[1]):
            lines.append(f"  not replayed: {n} {why}")
        for why, n in sorted(read.skipped.items(), key=lambda x: -x[1]):
            lines.append(f"  not read: {n} {why} (first: {read.first_skipped[why]})")
        if read.out_of_order:
            lines.append(
                f"  {read.out_of_order} recorded out of time order beyond the reading window "
                "(sent at once)"
            )
        # How far the replay fell behind its schedule: late sends, and the engine's lag.
        r = self.result
        lines.append(
            f"  behind the schedule: {r.late} of {r.measured().requests} sends more than "
            f"{self.late_ms:g} ms late, {r.dropped} dropped"
        )
        if self.comparer is not None:  # closed by now: its differences are complete
            lines += self.comparer.diffs.report()
        return "\n".join(lines) + "\n" + r.describe()


def replay(
    target: str,
    capture: Capture,
    *,
    rules: Rules | None = None,
    pace: Pace | None = None,
    options: EngineOptions | None = None,
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
    compare: str | None = None,
) -> Replayed:
    """Read the capture's plan, then replay it against ``target`` (blocking).

    ``compare``: a reference URL, or ``"recorded"``: each answer is compared with the
    reference's (see :mod:`perfsuite.replay.compare`). Ctrl-C raises
    :class:`~perfsuite.errors.Interrupted` with what was measured.
    """
    options = options or EngineOptions()
    if compare is not None and workers != 1:
        raise ConfigError("replay: comparing answers needs one worker (workers=1)")
    if compare is not None and compare != RECORDED:
        check_target(compare, options.allowed_hosts)  # it gets twice the load's requests
    plan = plan_replay(capture, rules, pace)
    comparer = Comparer(plan, compare, target) if compare is not None else None
    try:
        scenario, phase = replay_phase(
            plan, target, on_answer=comparer.told if comparer is not None else None
        )
        result = run_parallel(
            target, scenario, [phase], options=options, workers=workers, progress=progress
        )
    finally:
        if comparer is not None:
            comparer.close()
    return Replayed(
        plan=plan, result=result, late_ms=options.late_threshold * 1000, comparer=comparer
    )
