"""Ctrl-C and SIGTERM: stop what runs, keep what it measured, leave nothing behind.

Three pieces, used by the load engine, the plugin and the provisioners:

- :func:`stop_signals` -- while a load runs: the first SIGINT or SIGTERM asks
  the engine to stop (it returns what it measured so far, and the caller
  raises :class:`~perfsuite.errors.Interrupted`); a second one raises at once.
- :func:`run_signals` -- for a whole pytest session or command: SIGTERM (how
  CI runners cancel a job) raises ``Interrupted`` as Ctrl-C raises
  ``KeyboardInterrupt``, so the session tears down and exits with code 2
  instead of dying with its servers' files left behind; and Ctrl-C works
  even where it was inherited as ignored.
- :func:`cleanup_shield` -- while perfsuite stops what it started, or writes
  the run record: another Ctrl-C is told to wait (it takes seconds); the
  next one gives up.

Python runs signal handlers in the main thread only; elsewhere these do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from perfsuite.errors import Interrupted

__all__ = [
    "cleanup_shield",
    "die_with_parent",
    "ignore_stop_signals",
    "interrupted",
    "note_interrupt",
    "raise_interrupt",
    "run_signals",
    "stop_grace",
    "stop_signals",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG = 1
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# Set once a stop signal has come: what perfsuite stops from then on gets a
# short grace (the user wants the terminal back), not a graceful wait.
_interrupted = threading.Event()
# Seconds a process gets to exit on SIGTERM after Ctrl-C. What we stop then is
# throwaway (its folders are deleted next); measured: of a 4.6-5.7 s exit with a
# service that waits for leaked connections, 2 s was this grace.
INTERRUPTED_GRACE = 1.0


def note_interrupt() -> None:
    """Record that Ctrl-C or SIGTERM came (any handler, or pytest's interrupt hook)."""
    _interrupted.set()


def interrupted() -> bool:
    """Whether Ctrl-C or SIGTERM has come (this process stops what it started)."""
    return _interrupted.is_set()


def stop_grace(normal: float) -> float:
    """How long a process we stop may take to exit: ``normal``, shorter after Ctrl-C."""
    return min(normal, INTERRUPTED_GRACE) if _interrupted.is_set() else normal


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """A signal handler: raise :class:`Interrupted` naming the signal."""
    note_interrupt()
    raise Interrupted(signal.Signals(signum).name)


def _ours_to_take(signum: int, handler: Handler) -> bool:
    # Python's own defaults, or ours: a handler the user installed stays theirs.
    if signum == signal.SIGINT:
        return handler is signal.default_int_handler or handler is raise_interrupt
    return handler in (signal.SIG_DFL, None) or handler is raise_interrupt


@contextlib.contextmanager
def _handlers(handler: Callable[[int, FrameType | None], None]) -> Iterator[bool]:
    """Install ``handler`` for SIGINT and SIGTERM where they are ours to take."""
    previous: dict[int, Handler] = {}
    if _main_thread():
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if _ours_to_take(signum, current):
                previous[signum] = current
                signal.signal(signum, handler)
    try:
        yield bool(previous)
    finally:
        for restored, old in previous.items():
            signal.signal(restored, old)


@contextlib.contextmanager
def stop_signals(on_stop: Callable[[str], None]) -> Iterator[bool]:
    """The first SIGINT/SIGTERM calls ``on_stop(name)``; the next one raises.

    ``on_stop`` runs inside the signal handler, between two bytecodes of the
    main thread: it must only hand the stop over (``call_soon_threadsafe``,
    an event), never do the work. Yields whether the handlers were installed.
    """
    seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        note_interrupt()
        seen.append(signum)
        if len(seen) == 1:
            on_stop(signal.Signals(signum).name)
            return
        raise Interrupted(signal.Signals(signum).name)

    with _handlers(handler) as installed:
        yield installed


@contextlib.contextmanager
def run_signals() -> Iterator[None]:
    """For a whole run (a pytest session, a ``perfsuite`` command): stoppable by both.

    SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) as Ctrl-C
    raises ``KeyboardInterrupt``. And Ctrl-C works even where SIGINT came
    ignored: a shell starts a script's background command (``pytest -m perf
    &``) with SIGINT ignored, and Python then never raises, so only SIGKILL
    would stop the load. Go programs such as k6 take back a signal they ask
    for even when it was ignored; so does perfsuite, for the run.
    """
    previous: dict[int, Handler] = {}
    if _main_thread():
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
        if _ours_to_take(signal.SIGTERM, signal.getsignal(signal.SIGTERM)):
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def cleanup_shield(doing: str) -> Iterator[None]:
    """While perfsuite is ``doing`` something that must finish, Ctrl-C waits; twice, gives up.

    Stopping a server or removing a container takes seconds, so does writing
    the run record: a user who presses Ctrl-C meanwhile should not leave a
    datadir, a container or half a history behind by accident, but can
    still insist.
    """
    presses: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        note_interrupt()
        presses.append(signum)
        if len(presses) == 1:
            with contextlib.suppress(OSError, AttributeError):
                sys.__stderr__.write(  # type: ignore[union-attr]
                    f"\nperfsuite: {doing}, a moment please "
                    "(press Ctrl-C again to leave it unfinished)\n"
                )
                sys.__stderr__.flush()  # type: ignore[union-attr]
            return
        raise Interrupted(signal.Signals(signum).name)

    with _handlers(handler):
        yield


def ignore_stop_signals() -> None:
    """In a helper process (a load worker): SIGINT/SIGTERM are its parent's to handle."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux).

    Called in a child of ``parent`` (between fork and exec, or first thing in
    a forked worker): if pytest is killed outright (SIGKILL, OOM) no
    finaliser runs, and nothing else would stop the child.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
