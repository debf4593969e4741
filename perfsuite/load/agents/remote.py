"""A load agent: what runs in each execnet gateway (its source is sent by
``remote_exec``, so it stands alone: everything it needs is imported inside).

The conversation, each message a tuple: the coordinator sends ``("hello",
sys_path, parent_pid, digest)``; the agent answers ``("cached",)`` when its cache
holds that bundle (:mod:`perfsuite.load.agents.bundle`), else ``("send",)``,
answered by ``("files", {path: bytes})``; then ``("ready", pid, host, cores)``
(or ``("missing", error, python)`` when a dependency cannot be had). Whenever
an import finds no top-level module on this host (perfsuite's, the scenario's
when it is unpickled, a library's while the run is built, optional ones
included), the agent asks ``("need", module, cache_tag, platform)``, answered
by ``("dist", digest)`` (then the same cached/send/files exchange, the
distributions kept in a cache of their own) or ``("refused", why)``, the
import's error. Then ``("run", pickled)`` with the target, the scenario and the agent's
phases and options, answered by ``("prepared",)`` once it is unpickled (its
modules imported) and its run built; then ``("ping",)`` any number of times,
each answered by the agent's ``time.perf_counter_ns()``; then ``("go", start)``,
the start on the agent's own clock. While it runs it sends ``("second",
pickled)`` as seconds close and ``("progress", pickled)`` each second (when
asked), and stops early on ``("stop", signal_name)``; it ends with ``("ok",
pickled)`` (what :func:`perfsuite.load.parallel.to_wire` makes) or ``("error",
text)``.
"""

from __future__ import annotations

from typing import Any


def serve(channel: Any) -> None:
    """Answer one coordinator on ``channel``: one load, then return."""
    import os
    import pickle
    import socket
    import sys
    import threading
    import time

    kind, path, parent, digest = channel.receive()
    assert kind == "hello", kind
    shipped = unpack(channel, digest)
    # The shipped code first; a popen agent also has the coordinator's imports, after it.
    sys.path.insert(0, shipped)
    sys.path.extend(entry for entry in path if entry not in sys.path)
    finder = asking(channel)
    sys.meta_path.append(finder)
    try:
        import perfsuite.load.parallel as parallel
        import perfsuite.signals as signals
    except ImportError as exc:  # a dependency that cannot be had here: said, not a hang
        channel.send(("missing", f"{type(exc).__name__}: {exc}", sys.version.split()[0]))
        return

    # Ctrl-C reaches the whole process group: the coordinator alone decides, and
    # says "stop", so that every agent sends back what it measured.
    signals.ignore_stop_signals()
    if parent:
        signals.die_with_parent(parent)
    cores = len(os.sched_getaffinity(0))
    channel.send(("ready", os.getpid(), socket.gethostname(), cores))
    message = channel.receive()
    assert message[0] == "run", message[0]

    stopped: list[str] = []

    def watch() -> None:  # the coordinator's "stop", while the load runs
        try:
            while True:
                got = channel.receive()
                if got[0] == "stop":
                    stopped.append(got[1])
                    return
        except Exception:  # the channel closed: the coordinator is gone or done
            stopped.append("SIGTERM")

    try:
        # Unpickling imports the scenario's modules, and the run builds its requests
        # ahead: both done before the start is set.
        target, scenario, phases, options, live, progress = pickle.loads(message[1])

        def ready() -> int:
            finder.open = False  # a module first imported during the load: not asked
            channel.send(("prepared",))
            while True:  # the clock's round trips, then the start
                got = channel.receive()
                if got[0] != "ping":
                    break
                channel.send(time.perf_counter_ns())
            go, start_at_ns = got
            assert go == "go", go
            threading.Thread(target=watch, name="perfsuite-agent-stop", daemon=True).start()
            return int(start_at_ns)

        def second(report: object) -> None:
            channel.send(("second", pickle.dumps(report)))

        def progressed(report: object) -> None:  # the first agent's, for the live line
            channel.send(("progress", pickle.dumps(report)))

        kind, payload = parallel.run_share(
            target,
            scenario,
            phases,
            options,
            ready=ready,
            stop=lambda: stopped[0] if stopped else None,
            on_second=second if live else None,
            progress=progressed if progress else None,
        )
        channel.send((kind, pickle.dumps(payload) if kind == "ok" else payload))
    except BaseException as exc:  # reported to the coordinator, which raises it
        channel.send(("error", f"{type(exc).__name__}: {exc}"))


def asking(channel: Any) -> Any:
    """A finder of last resort for ``sys.meta_path``: a top-level module no other
    finder has is asked of the coordinator, which sends the distribution that holds
    it, whole (put on ``sys.path`` after the host's own), or says why it cannot
    (raised as the import's error). Set ``.open = False`` once the load is built:
    the channel is then the load's."""
    import importlib
    import importlib.machinery
    import sys
    import sysconfig

    class Asking:
        def __init__(self) -> None:
            self.open = True
            self.asked: set[str] = set()

        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            if not self.open or path is not None or name in self.asked:
                return None  # a submodule, or asked before: the usual error
            self.asked.add(name)
            tag = sys.implementation.cache_tag or ""
            channel.send(("need", name, tag, sysconfig.get_platform()))
            kind, detail = channel.receive()
            if kind != "dist":
                raise ModuleNotFoundError(f"No module named {name!r} ({detail})", name=name)
            folder = unpack(channel, detail, "deps", keep=64)
            sys.path.append(folder)
            importlib.invalidate_caches()
            return importlib.machinery.PathFinder.find_spec(name, [folder])

    return Asking()


def unpack(channel: Any, digest: str, kind: str = "code", keep: int = 10) -> str:
    """The folder of what the coordinator ships (``kind``: its code, or the ``deps``
    it sends) on this host: from the cache when it holds ``digest``, else asked for
    (``("send",)``, answered by ``("files", {path: bytes})``) and written there.
    Written whole to a folder of its own, then renamed into place: two agents of
    one host may race, and neither sees a half-written bundle. The ``keep`` used
    last are kept."""
    import os
    import shutil
    import time
    from pathlib import Path

    base = os.environ.get("PERFSUITE_AGENT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "perfsuite", "agents"
    )
    home = Path(base) if kind == "code" else Path(base) / ".deps"
    folder = home / digest
    if (folder / ".complete").exists():
        channel.send(("cached",))
        os.utime(folder)  # used: the pruning below keeps it
        return str(folder)
    channel.send(("send",))
    answer, files = channel.receive()
    assert answer == "files", answer
    home.mkdir(parents=True, exist_ok=True)
    partial = home / f".{digest}.{os.getpid()}"
    for rel, data in files.items():
        path = partial / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (partial / ".complete").write_text(str(time.time()))
    try:
        partial.rename(folder)
    except OSError:  # another agent of this host wrote the same bundle first
        shutil.rmtree(partial, ignore_errors=True)
    # Each code change makes a bundle (about 1 MB); distributions change less often.
    old = sorted(
        (p for p in home.iterdir() if not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in old[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
    return str(folder)


if __name__ == "__channelexec__":
    serve(channel)  # type: ignore[name-defined]  # noqa: F821 (execnet's global)
