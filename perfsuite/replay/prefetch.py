"""A capture read ahead by a thread, so that reading never holds up the load's event loop.

Read on the event loop, a capture stalls the sends in bursts: an access log's
second is read whole before its first request can be spread within it (20,000
lines, 0.6 s, measured: p99 337 ms at 5,000 req/s against nginx's 6 ms), and
the first 10,000 requests are read before the first is sent (the window that
puts late entries back in order). A thread reads instead, up to ``depth``
requests ahead; the loop takes them from a queue in batches.

The thread shares the GIL with the loop: while it runs, the loop waits for the
interpreter's switch interval (5 ms by default) before it gets the GIL back,
and its sends go out that late. The interval is lowered to 0.2 ms while a
reader runs (and restored after): the loop is then held up at most that long.

The read-ahead keeps about 100,000 objects alive (the reader's window, the
queue), and each full garbage collection walks them all: 70 to 160 ms every
few seconds, measured, each a burst of late sends (p99 66 ms at 5,000 req/s
against nginx's 4 ms). While a reader runs there are no full collections;
the young generations are still collected, so what a request leaves in a
cycle still goes, unless it lived long enough to reach the old generation
(a connection the server closed after seconds): that waits for the end.
"""

from __future__ import annotations

import gc
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")

_BATCH = 256  # requests a queue item: a lock taken per batch, not per request
_SWITCH = 0.0002  # seconds: the longest the loop waits for the reader's GIL
_lock = threading.Lock()
_readers = 0
_saved: tuple[float, tuple[int, int, int]] = (0.0, (0, 0, 0))


def _reader_started() -> None:
    """The interpreter set for readers: a short switch interval, no full collections."""
    global _readers, _saved
    with _lock:
        if _readers == 0:
            _saved = (sys.getswitchinterval(), gc.get_threshold())
            sys.setswitchinterval(min(_saved[0], _SWITCH))
            young, middle, _ = _saved[1]
            gc.set_threshold(young, middle, 1 << 30)
        _readers += 1


def _reader_ended() -> None:
    global _readers
    with _lock:
        _readers -= 1
        if _readers == 0:
            sys.setswitchinterval(_saved[0])
            gc.set_threshold(*_saved[1])


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(items: Iterable[T], *, depth: int = 20_000) -> Iterator[T]:
    """``items``, read by a thread up to ``depth`` ahead. An error of the reading is
    raised here, where the items are taken; closing the iterator stops the thread."""
    batches: queue.Queue[list[T] | _Failed | None] = queue.Queue(max(1, depth // _BATCH))
    stop = threading.Event()

    def put(value: list[T] | _Failed | None) -> bool:
        while not stop.is_set():
            try:
                batches.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            batch: list[T] = []
            for item in items:
                batch.append(item)
                if len(batch) >= _BATCH:
                    if not put(batch):
                        return
                    batch = []
            if batch and not put(batch):
                return
            put(None)
        except BaseException as exc:  # raised again in the loop's thread
            put(_Failed(exc))

    _reader_started()
    thread = threading.Thread(target=read, name="perfsuite-replay-reader", daemon=True)
    thread.start()
    try:
        # The first request is asked for as the load is set up, before its clock starts:
        # the read-ahead is filled then (or the capture read to its end), not in a burst
        # beside the first sends (measured: 0.2 s of them late, the reader's full
        # garbage collections holding the GIL for up to 150 ms).
        while batches.qsize() < batches.maxsize and thread.is_alive():
            thread.join(0.01)
        while (got := batches.get()) is not None:
            if isinstance(got, _Failed):
                raise got.exc
            yield from got
    finally:
        stop.set()
        thread.join(1.0)  # it checks ``stop`` every 0.1 s, and between requests read
        _reader_ended()
