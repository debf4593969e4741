"""A load agent: what runs in each execnet gateway (its source is sent by
``remote_exec``, so it stands alone: everything it needs is imported inside).

The conversation, each message a tuple: the coordinator sends ``("hello",
sys_path, parent_pid)``, the agent answers ``("ready", pid, host, cores)``; then
``("run", pickled)`` with the target, the scenario and the agent's phases and
options, answered by ``("prepared",)`` once it is unpickled (its modules
imported) and its run built; then ``("ping",)`` any number of times, each
answered by the agent's ``time.perf_counter_ns()``; then ``("go", start)``, the
start on the agent's own clock. While it runs it sends ``("second", pickled)``
as seconds close and ``("progress", pickled)`` each second (when asked), and
stops early on ``("stop", signal_name)``; it ends with ``("ok", pickled)`` (what
:func:`perfsuite.load.parallel.to_wire` makes) or ``("error", text)``.
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

    kind, path, parent = channel.receive()
    assert kind == "hello", kind
    for entry in reversed(path):  # the coordinator's imports: the scenario's module
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from perfsuite.signals import die_with_parent, ignore_stop_signals

    # Ctrl-C reaches the whole process group: the coordinator alone decides, and
    # says "stop", so that every agent sends back what it measured.
    ignore_stop_signals()
    if parent:
        die_with_parent(parent)
    channel.send(("ready", os.getpid(), socket.gethostname(), len(os.sched_getaffinity(0))))
    message = channel.receive()
    assert message[0] == "run", message[0]

    from perfsuite.errors import Interrupted
    from perfsuite.load.engine import run_load
    from perfsuite.load.parallel import to_wire

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

        try:
            result = run_load(
                target,
                scenario,
                phases,
                options=options,
                ready=ready,
                stop=lambda: stopped[0] if stopped else None,
                handle_signals=False,
                on_second=second if live else None,
                progress=progressed if progress else None,
            )
        except Interrupted as exc:  # stopped by the coordinator: what it measured so far
            if exc.result is None:
                raise
            result = exc.result
        channel.send(("ok", pickle.dumps(to_wire(result))))
    except BaseException as exc:  # reported to the coordinator, which raises it
        channel.send(("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__channelexec__":
    serve(channel)  # type: ignore[name-defined]  # noqa: F821 (execnet's global)
