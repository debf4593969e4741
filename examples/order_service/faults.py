"""Fault switches of the example service, read from ``ORDER_SERVICE_FAULT``.

- ``leak``: the payment callback's error path (unknown order) never releases
  its connection; the seed story's bug, connections pile up in ``Sleep``.
- ``slow:<ms>``: every order query takes ``<ms>`` milliseconds longer, in the
  database (``SELECT SLEEP``); fractions such as ``slow:0.5`` work.
- ``nplus1``: the order query loads its items one query per item (the ids
  first, then each item alone) instead of one query for all of them.
- ``scan``: the order query finds the order through an expression of its id
  (``id + 0``), which no index serves: MySQL examines the whole orders table.
- ``taskleak``: each payment callback starts an asyncio task that waits
  forever on a queue nobody writes to (the seed's ``startWorker`` goroutine
  leak): the tasks pile up, one per callback.
- ``hot``: the order query does needless CPU work (``checksum_order``, 3.5 ms of
  its thread's CPU time spent hashing) before answering: a flame graph points at it.
- unset or empty: the correct service.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Faults", "parse_faults"]


@dataclass(frozen=True)
class Faults:
    """Which faults are switched on."""

    leak: bool = False
    slow_query_ms: float = 0.0
    nplus1: bool = False
    scan: bool = False
    taskleak: bool = False
    hot: bool = False


def parse_faults(value: str | None) -> Faults:
    """Parse ``leak``, ``slow:<ms>``, ``nplus1``, ``scan``, ``taskleak``, ``hot``,
    comma-separated; raise on anything else."""
    leak, slow = False, 0.0
    flags = {"nplus1": False, "scan": False, "taskleak": False, "hot": False}
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part == "leak":
            leak = True
        elif part in flags:
            flags[part] = True
        elif part.startswith("slow:"):
            try:
                slow = float(part.removeprefix("slow:"))
            except ValueError:
                slow = -1.0
            if slow < 0:
                raise ValueError(f"ORDER_SERVICE_FAULT: bad slow:<ms> value in {value!r}")
        else:
            raise ValueError(
                f"ORDER_SERVICE_FAULT: unknown fault {part!r} "
                f"(known: leak, slow:<ms>, nplus1, scan, taskleak, hot)"
            )
    return Faults(leak=leak, slow_query_ms=slow, **flags)
