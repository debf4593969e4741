"""Fault switches of the example service, read from ``ORDER_SERVICE_FAULT``.

- ``leak``: the payment callback's error path (unknown order) never releases
  its connection; the seed story's bug, connections pile up in ``Sleep``.
- ``slow:<ms>``: every order query takes ``<ms>`` milliseconds longer, in the
  database: one more statement (``SELECT SLEEP``), so one more round trip as
  well; fractions such as ``slow:0.5`` work.
- ``delay:<ms>``: the order query's own statement sleeps ``<ms>`` milliseconds
  (``SLEEP`` in its select list): a slower query and nothing else, no extra
  statement nor round trip (what a calibrated slowdown needs).
- ``nplus1``: the order query loads its items one query per item (the ids
  first, then each item alone) instead of one query for all of them.
- ``scan``: the order query finds the order through an expression of its id
  (``id + 0``), which no index serves: MySQL examines the whole orders table.
- ``taskleak``: each payment callback starts an asyncio task that waits
  forever on a queue nobody writes to (the seed's ``startWorker`` goroutine
  leak): the tasks pile up, one per callback.
- ``total``: orders of more than three items are answered a cent too much
  (``total_cents``, when created and when queried): a wrong answer, not a slow
  one, for a replay's comparison of answers to find.
- ``hot``: the order query does needless CPU work (``checksum_order``, 3.5 ms of
  its thread's CPU time spent hashing) before answering: a flame graph points at it.
- ``nokey``: each order also writes 50 rows to an audit table that has no
  primary key, and its payment marks them paid (one ``UPDATE`` by order id):
  the primary scans the table once per payment, a replica once per row (row-based
  replication finds each changed row by a scan when a table has no key), so the
  replica falls behind under write load while the primary does not.
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
    delay_query_ms: float = 0.0
    nplus1: bool = False
    scan: bool = False
    taskleak: bool = False
    hot: bool = False
    total: bool = False
    nokey: bool = False


def parse_faults(value: str | None) -> Faults:
    """Parse ``leak``, ``slow:<ms>``, ``delay:<ms>``, ``nplus1``, ``scan``,
    ``taskleak``, ``hot``, ``total``, ``nokey``, comma-separated; raise on anything else."""
    leak = False
    ms = {"slow": 0.0, "delay": 0.0}
    flags = dict.fromkeys(("nplus1", "scan", "taskleak", "hot", "total", "nokey"), False)
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part == "leak":
            leak = True
        elif part in flags:
            flags[part] = True
        elif part.partition(":")[0] in ms and ":" in part:
            name, _, number = part.partition(":")
            try:
                ms[name] = float(number)
            except ValueError:
                ms[name] = -1.0
            if not ms[name] >= 0:  # also NaN
                raise ValueError(f"ORDER_SERVICE_FAULT: bad {name}:<ms> value in {value!r}")
        else:
            raise ValueError(
                f"ORDER_SERVICE_FAULT: unknown fault {part!r} "
                f"(known: leak, slow:<ms>, delay:<ms>, nplus1, scan, taskleak, hot, total, nokey)"
            )
    return Faults(leak=leak, slow_query_ms=ms["slow"], delay_query_ms=ms["delay"], **flags)
