"""Was the machine ours during a load? CPU taken by other processes, and by the hypervisor.

A verdict against stored baselines assumes that the machine ran only the
test: a neighbour (another job on a shared CI runner, a forgotten process)
or a host that deschedules the virtual CPUs slows the service as much as a
slower build would. Both are counted over the load's window, from
``/proc/stat`` (every CPU's busy and steal ticks) and psutil (our own
process tree's CPU times): what was busy and not ours was a neighbour's.
A load on a busy machine still gets its numbers; its regressions are not
believed (see :func:`busy_reason`).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = ["MachineLoad", "MachineSampler", "busy_reason"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, kw_only=True)
class MachineLoad:
    """What the machine did during one load.

    ``others_cores``: CPU (in cores, averaged over the window) used by processes
    that are not the session's own (not this process or its descendants), None
    where the service or its database is not a local process of ours (their CPU
    cannot be told from a neighbour's). ``steal``: the share of the virtual CPUs'
    time that the hypervisor gave to other guests (0 on bare metal).
    """

    seconds: float
    cores: int
    others_cores: float | None
    steal: float

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (for run records)."""
        others = None if self.others_cores is None else round(self.others_cores, 4)
        return {
            "seconds": round(self.seconds, 3),
            "cores": self.cores,
            "others_cores": others,
            "steal": round(self.steal, 5),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineLoad:
        """The inverse of :meth:`as_json`."""
        others = data.get("others_cores")
        return cls(
            seconds=float(data["seconds"]),
            cores=int(data["cores"]),
            others_cores=None if others is None else float(others),
            steal=float(data["steal"]),
        )

    def describe(self) -> str:
        """``other processes 0.03 cores, steal 0.1 %`` (what the run report prints)."""
        others = "not known" if self.others_cores is None else f"{self.others_cores:.2f} cores"
        return f"other processes {others}, steal {self.steal:.1%}"


def busy_reason(load: MachineLoad, *, max_others: float, max_steal: float) -> str:
    """Why the machine was not the test's alone during ``load`` ("" when it was)."""
    why = []
    if load.others_cores is not None and load.others_cores > max_others:
        why.append(f"other processes used {load.others_cores:.2f} cores (limit {max_others:g})")
    if load.steal > max_steal:
        why.append(f"the hypervisor took {load.steal:.1%} of the CPUs (limit {max_steal:.0%})")
    return "; ".join(why)


def _cpu_ticks() -> tuple[int, int, int] | None:
    """(busy, steal, total) ticks of all CPUs since boot, None where /proc/stat is missing."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time
    # is already inside user, and idle and iowait are not busy.
    busy = ticks[0] + ticks[1] + ticks[2] + sum(ticks[5:7])
    steal = ticks[7] if len(ticks) > 7 else 0
    return busy, steal, sum(ticks[:8])


def _tree_cpu() -> dict[int, float]:
    """CPU seconds of this process and each descendant, with the children each reaped
    (a worker that exited is counted in its parent's ``children_*`` times)."""
    me = psutil.Process()
    out: dict[int, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system + t.children_user + t.children_system
    return out


class MachineSampler:
    """Counts from :meth:`start` to :meth:`stop`; ``local``: are the service and its
    database processes of ours (then the CPU of the rest is a neighbour's)?"""

    def __init__(self, *, local: bool) -> None:
        self.local = local
        self._start: tuple[float, tuple[int, int, int] | None, dict[int, float]] | None = None

    def start(self) -> None:
        """Read the counters."""
        self._start = (time.monotonic(), _cpu_ticks(), _tree_cpu() if self.local else {})

    def stop(self) -> MachineLoad | None:
        """What the machine did since :meth:`start` (None: it cannot be read here)."""
        if self._start is None:
            return None
        t0, ticks0, tree0 = self._start
        ticks = _cpu_ticks()
        if ticks is None or ticks0 is None:
            return None
        seconds = time.monotonic() - t0
        total = ticks[2] - ticks0[2]
        steal = (ticks[1] - ticks0[1]) / total if total > 0 else 0.0
        others = None
        if self.local and seconds > 0:
            tree = _tree_cpu()
            # A process born in the window counts from its birth (0 before it).
            ours = sum(max(0.0, t - tree0.get(pid, 0.0)) for pid, t in tree.items())
            busy = (ticks[0] - ticks0[0]) / _TICK
            others = max(0.0, busy - ours) / seconds
        return MachineLoad(
            seconds=seconds, cores=os.cpu_count() or 1, others_cores=others, steal=steal
        )
