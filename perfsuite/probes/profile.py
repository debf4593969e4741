"""CPU profiles of the service, taken during the load: py-spy, Go's pprof, or a command.

Each profiler samples for a window of the load (chosen by
:func:`profile_window`) and returns collapsed stacks. It is started by a
:class:`ProfileSchedule` when the window opens, from a thread, so that the
load loop never waits for it; and it is always stopped, on Ctrl-C too.

- ``py-spy record --nonblocking`` reads a Python service's stacks from
  outside without pausing it (``--subprocesses``: its workers too). It needs
  ptrace permission on the service's processes: root, or
  ``kernel.yama.ptrace_scope = 0``, or ``CAP_SYS_PTRACE``.
- ``/debug/pprof/profile?seconds=N`` is Go's CPU profile; the goroutine
  profile at the end of the window (``/debug/pprof/goroutine``) gives the
  most common stacks of goroutines.
- A command (async-profiler's ``asprof``, perf + stackcollapse) writes
  collapsed stacks to ``{output}``.
"""

from __future__ import annotations

import contextlib
import math
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from perfsuite.errors import ProfileError
from perfsuite.probes.pprof import read_pprof
from perfsuite.stats.flame import Stacks, parse_collapsed

__all__ = [
    "CapturedProfile",
    "CommandProfiler",
    "PprofProfiler",
    "ProfileSchedule",
    "Profiler",
    "PySpyProfiler",
    "profile_window",
]

_PROCESS = re.compile(r'^process \d+:".*"$')
_GRACE = 15.0  # s a profiler may take past its window to write its output


@dataclass(frozen=True, kw_only=True)
class CapturedProfile:
    """Collapsed stacks of one window of the load."""

    stacks: Stacks
    unit: str  # what a stack's value counts: "samples", "nanoseconds"
    profiler: str  # "py-spy", "pprof", the command's program
    start: float  # s from the load's start
    seconds: float
    goroutines: Stacks = field(default_factory=dict)  # Go: goroutines per stack at the end


class Profiler(Protocol):
    """Samples the service from :meth:`begin` for ``seconds``; :meth:`end` collects."""

    name: str

    def begin(self, seconds: float) -> None: ...

    def end(self) -> tuple[Stacks, str, Stacks]: ...

    def cancel(self) -> None: ...


def profile_window(
    phases: Sequence[tuple[str, float, float, bool]], seconds: float
) -> tuple[str, float, float] | None:
    """(phase, start, length) of the window to profile: ``seconds`` (at most 80 % of the
    phase) in the middle of the longest measured phase, given (name, start, duration,
    measured) of each phase; None when no measured phase lasts 2 s."""
    measured = [p for p in phases if p[3] and p[2] >= 2.0]
    if not measured or seconds <= 0:
        return None
    name, start, duration, _ = max(measured, key=lambda p: p[2])
    length = min(seconds, 0.8 * duration)
    return name, start + (duration - length) / 2, length


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT first (py-spy and asprof write what they have), then kill."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class _Subprocess:
    """A profiler that is a program writing collapsed stacks to a file."""

    name = "command"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None  # made when it begins: nothing to remove before
        self._seconds = 0.0

    @property
    def output(self) -> Path:
        """Where the program writes its collapsed stacks."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="perfsuite-profile-")
        return Path(self._dir) / "stacks.txt"

    def _remove(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def argv(self, seconds: float) -> list[str]:
        raise NotImplementedError

    def explain(self, code: int, stderr: str) -> str:
        return f"{self.name} exited with {code}: {stderr.strip()[-600:]}"

    def begin(self, seconds: float) -> None:
        self._seconds = seconds
        argv = self.argv(seconds)
        try:
            # In our process group: a Ctrl-C in the terminal reaches it too.
            self._proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            self._remove()
            raise ProfileError(f"{self.name}: cannot run {argv[0]}: {exc}") from None

    def end(self) -> tuple[Stacks, str, Stacks]:
        proc = self._proc
        if proc is None:
            raise ProfileError(f"{self.name}: never started")
        try:
            _, err = proc.communicate(timeout=self._seconds + _GRACE)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise ProfileError(
                f"{self.name}: still running {_GRACE:.0f} s after its window"
            ) from None
        finally:
            self._proc = None
        try:
            text = self.output.read_text(errors="replace") if self.output.exists() else ""
        finally:
            self._remove()
        if proc.returncode != 0 and not text:
            raise ProfileError(self.explain(proc.returncode, err.decode(errors="replace")))
        try:
            return parse_collapsed(text), "samples", {}
        except ValueError as exc:
            raise ProfileError(f"{self.name}: {exc}") from None

    def cancel(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None
        self._remove()


def _py_spy() -> str:
    # The one installed beside this Python first (perfsuite[profile]), then PATH's.
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfileError(
            "py-spy is not installed: pip install 'perfsuite[profile]' "
            '(or set [tool.perfsuite.profiling] profiler = "none")'
        )
    return found


class PySpyProfiler(_Subprocess):
    """py-spy on a local process tree (the command provider's service)."""

    name = "py-spy"

    def __init__(self, pid: int, *, rate: int = 100) -> None:
        self.exe = _py_spy()
        super().__init__()
        self.pid = pid
        self.rate = rate

    def argv(self, seconds: float) -> list[str]:
        return [
            self.exe, "record", "--pid", str(self.pid), "--subprocesses", "--nonblocking",
            "--format", "raw", "--nolineno", "--rate", str(self.rate),
            "--duration", str(max(1, math.ceil(seconds))), "--output", str(self.output),
        ]  # fmt: skip

    def end(self) -> tuple[Stacks, str, Stacks]:
        stacks, unit, _ = super().end()
        # --subprocesses roots each stack at 'process PID:"command line"'. Left out:
        # the PID and the port in the command line differ from run to run, so a
        # profile would never compare with the baseline's; the workers of a
        # forking server become one tree, as a merged profile.
        merged: dict[tuple[str, ...], float] = {}
        for path, value in stacks.items():
            if path and _PROCESS.match(path[0]):
                path = path[1:]
            if path:  # a process caught outside Python code has no frame left
                merged[path] = merged.get(path, 0.0) + value
        return merged, unit, {}

    def explain(self, code: int, stderr: str) -> str:
        denied = (
            "run as root, or set kernel.yama.ptrace_scope to 0, or give py-spy "
            "CAP_SYS_PTRACE; a container needs --cap-add SYS_PTRACE"
        )
        if "ermission" in stderr or "Operation not permitted" in stderr:
            return (
                f"py-spy may not read the service's process {self.pid} (ptrace is denied): {denied}"
            )
        if "No python processes found" in stderr:
            # What py-spy says with --subprocesses when every read was denied, too.
            return (
                f"py-spy could read no Python process in the service's process {self.pid} "
                f"or its children: if it is a Python service, ptrace is denied: {denied}"
            )
        if "No such process" in stderr or "Failed to find process" in stderr:
            return f"py-spy: the service's process {self.pid} is gone"
        return super().explain(code, stderr)


class CommandProfiler(_Subprocess):
    """``[tool.perfsuite.profiling] command``: ``{pid}``, ``{seconds}`` and ``{output}``
    are filled in; the command writes collapsed stacks to ``{output}``."""

    def __init__(self, template: str, pid: int | None) -> None:
        super().__init__()
        self.template = template
        self.pid = pid
        self.name = shlex.split(template)[0] if template.strip() else "command"

    def argv(self, seconds: float) -> list[str]:
        values = {
            "pid": "" if self.pid is None else str(self.pid),
            "seconds": str(max(1, math.ceil(seconds))),
            "output": str(self.output),
        }
        return [part.format(**values) for part in shlex.split(self.template)]


class PprofProfiler:
    """Go's ``net/http/pprof``: a CPU profile over the window, then the goroutines."""

    name = "pprof"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._thread: threading.Thread | None = None
        self._data: bytes | None = None
        self._error: str | None = None
        self._seconds = 0.0
        self._client = httpx.Client(trust_env=False)

    def _get(self, path: str, timeout: float) -> bytes:
        url = f"{self.base_url}{path}"
        try:
            response = self._client.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ProfileError(f"pprof: {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ProfileError(f"pprof: {url} answered {response.status_code}")
        return response.content

    def begin(self, seconds: float) -> None:
        self._seconds = seconds
        whole = max(1, math.ceil(seconds))

        def fetch() -> None:
            try:
                self._data = self._get(f"/debug/pprof/profile?seconds={whole}", whole + _GRACE)
            except ProfileError as exc:
                self._error = str(exc)

        self._thread = threading.Thread(target=fetch, name="perfsuite-pprof", daemon=True)
        self._thread.start()

    def end(self) -> tuple[Stacks, str, Stacks]:
        try:
            if self._thread is not None:
                self._thread.join(self._seconds + _GRACE)
            if self._error is not None:
                raise ProfileError(self._error)
            if self._data is None:
                raise ProfileError("pprof: no profile within its window")
            cpu = read_pprof(self._data, sample_type="cpu")
            goroutines = read_pprof(self._get("/debug/pprof/goroutine", 10.0))
            return cpu.stacks, cpu.sample_type.split("/")[-1], goroutines.stacks
        finally:
            self._client.close()

    def cancel(self) -> None:
        self._client.close()  # the fetch in flight fails; its thread is a daemon


class ProfileSchedule:
    """Starts a profiler when the window opens (from the load's start) and collects it.

    Errors are kept, not raised: a missing diagnosis never fails a test.
    """

    def __init__(self, profiler: Profiler, phase: str, start: float, seconds: float) -> None:
        self.profiler = profiler
        self.phase = phase
        self.start = start
        self.seconds = seconds
        self.error: str | None = None
        self._began = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self, t0_ns: int) -> None:
        """The load started at ``t0_ns`` (``time.perf_counter_ns()``): wait for the window."""

        def wait_then_begin() -> None:
            delay = self.start - (time.perf_counter_ns() - t0_ns) / 1e9
            if self._cancel.wait(max(0.0, delay)):
                return
            try:
                self.profiler.begin(self.seconds)
                self._began.set()
            except ProfileError as exc:
                self.error = str(exc)

        self._thread = threading.Thread(
            target=wait_then_begin, name="perfsuite-profile", daemon=True
        )
        self._thread.start()

    def finish(self, *, completed: bool) -> CapturedProfile | None:
        """The profile (None: the load ended before the window, or it failed: ``error``).
        ``completed`` false (Ctrl-C, a failed load): stop the profiler, keep nothing."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self._began.is_set():
            self.profiler.cancel()  # nothing to collect; what it holds is released
            if self.error is None and completed:
                self.error = "the load ended before the profile's window"
            return None
        if not completed:
            self.profiler.cancel()
            return None
        try:
            stacks, unit, goroutines = self.profiler.end()
        except ProfileError as exc:
            self.error = str(exc)
            return None
        except BaseException:
            self.profiler.cancel()
            raise
        if not stacks:
            self.error = f"{self.profiler.name}: no samples in the window (was the service idle?)"
            return None
        return CapturedProfile(
            stacks=stacks,
            unit=unit,
            profiler=self.profiler.name,
            start=self.start,
            seconds=self.seconds,
            goroutines=goroutines,
        )
