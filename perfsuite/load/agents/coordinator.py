"""One load over several execnet agents: clocks, a shared start, exact merging.

Every agent gets the whole schedule and sends its share (arrival i goes to
agent i mod N, users split), starting at one instant translated to its own
clock; their histograms and counters are merged as one generator's.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import execnet

from perfsuite.errors import AgentLost, ConfigError, Interrupted, LoadError
from perfsuite.load.agents import remote
from perfsuite.load.agents.bundle import Bundle, Platform, distribution_of, make_bundle
from perfsuite.load.agents.clock import ClockOffset, estimate_offset
from perfsuite.load.agents.spec import parse_tx
from perfsuite.load.options import EngineOptions, Progress
from perfsuite.load.parallel import merge_parts, split_phases
from perfsuite.load.phases import Phase
from perfsuite.load.recorder import SecondReport
from perfsuite.load.result import LoadResult
from perfsuite.load.safety import check_target
from perfsuite.load.scenario import Scenario
from perfsuite.signals import stop_signals

__all__ = ["Agent", "run_agents"]

PINGS = 16  # round trips per agent: the fastest bounds its clock's offset
START_AHEAD_S = 0.3  # from the last clock reading to the shared start (agents ready)
LOST_GRACE_S = 10.0  # once one agent is lost, how long the others get to send theirs
_ENDED = object()  # a channel closed (execnet's end marker in the receive queue)
_NEEDS = (
    "An agent needs Python 3.11+; perfsuite, the project's modules and the installed "
    "distributions it lacks are sent to it, those with compiled code only to an agent "
    "of this interpreter's version and platform. Elsewhere, `python3 -m pip install "
    "perfsuite` there installs the dependencies, and the shipped code is the one that runs"
)


@dataclass
class Agent:
    """One gateway and what is known of it."""

    index: int
    spec: str
    gateway: Any  # execnet.Gateway
    channel: Any  # execnet.Channel
    pid: int = 0
    host: str = ""
    cores: int = 1  # the cores it may run on: its share of a closed model's users
    clock: ClockOffset | None = None

    @property
    def name(self) -> str:
        """How a message names it."""
        return f"agent {self.index} ({self.spec}, pid {self.pid} on {self.host or '?'})"


def _check_picklable(scenario: Scenario) -> None:
    """A clear error naming what in the scenario cannot be sent to an agent."""
    try:
        pickle.dumps(scenario)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"the scenario cannot be sent to load agents: {exc}. Agents import the "
            "scenario's functions by name: define each one at the top level of a module "
            "(not a lambda, a closure or a function inside another)"
        ) from exc


def new_group() -> execnet.Group:
    """The gateways' group: each agent's code runs in its process's main thread."""
    group = execnet.Group()
    # Only the main thread can ignore SIGINT. In execnet's default "thread" model a
    # spec's env:/chdir: setup runs first, and the agent's code goes to a thread of
    # its own when it comes before the main thread is free again (40 of 200
    # gateways on a busy machine; an agent lost in CI).
    group.set_execmodel("thread", "main_thread_only")
    return group


def _connect(group: execnet.Group, specs: Sequence[execnet.XSpec], bundle: Bundle) -> list[Agent]:
    agents = []
    for index, spec in enumerate(specs):
        try:
            gateway = group.makegateway(spec)
        except Exception as exc:  # execnet's many ways to fail, translated here
            raise LoadError(f"cannot start load agent {index} ({spec}): {exc!r}") from exc
        channel = gateway.remote_exec(remote)
        parent = os.getpid() if spec.popen else 0
        # A process of this very interpreter also has its imports (after the shipped
        # code); another interpreter, even here, is treated as another host's.
        path = list(sys.path) if spec.popen and not spec.python else []
        channel.send(("hello", path, parent, bundle.digest))
        agents.append(Agent(index=index, spec=str(spec), gateway=gateway, channel=channel))
    for agent in agents:  # each asks for the code unless its cache holds it
        (answer,) = _receive(agent, "starting", timeout=60)
        if answer == "send":
            agent.channel.send(("files", bundle.files))
    shipped: dict[str, Bundle] = {}  # read once for all agents that ask
    for agent in agents:
        got = _answer(agent, "receiving perfsuite's code", shipped)
        if got[0] == "missing":
            raise LoadError(f"{agent.name} cannot run perfsuite: {got[1]} (Python {got[2]}). "
                            f"{_NEEDS}")  # fmt: skip
        _, agent.pid, agent.host, agent.cores = got
    return agents


def _prepare(
    agents: Sequence[Agent],
    target: str,
    scenario: Scenario,
    phases: Sequence[Phase],
    options: EngineOptions,
    *,
    live: bool,
    progress: bool = False,
) -> None:
    """Send each agent its share of the load; return once every one has built it."""
    n = len(agents)
    for agent in agents:
        # Each its own seed, as forked workers have.
        own = Scenario(*scenario.items, data=scenario.data, seed=scenario.seed + agent.index)
        payload = (
            target,
            own,
            split_phases(phases, n, agent.index, [a.cores for a in agents]),
            replace(options, worker=agent.index, workers=n),
            live,
            progress and agent.index == 0,  # one agent's line, scaled: as forked workers
        )
        agent.channel.send(("run", pickle.dumps(payload)))
    shipped: dict[str, Bundle] = {}
    for agent in agents:
        got = _answer(agent, "building its run", shipped)
        if got[0] != "prepared":
            raise LoadError(f"{agent.name} failed: {got[1] if len(got) > 1 else got}")


def _receive(agent: Agent, doing: str, timeout: float = 120) -> Any:
    """The agent's next message; a lost agent or one that does not answer is a
    :class:`LoadError` that names it and what it was doing."""
    try:
        return agent.channel.receive(timeout=timeout)
    except (EOFError, OSError, execnet.RemoteError, execnet.TimeoutError) as exc:
        reason = type(exc).__name__ if isinstance(exc, execnet.TimeoutError) else "its channel"
        raise LoadError(f"{agent.name} lost while {doing} ({reason}: {exc})") from exc


def _answer(agent: Agent, doing: str, shipped: dict[str, Bundle]) -> Any:
    """The agent's next message once it has every distribution it asks for (or has
    been told why one cannot be sent)."""
    got = _receive(agent, doing)
    while got[0] == "need":
        _, module, tag, system = got
        found = distribution_of(module, Platform(tag=tag, system=system))
        if isinstance(found, str):
            agent.channel.send(("refused", found))
        else:
            agent.channel.send(("dist", found.digest))
            (answer,) = _receive(agent, f"asking for {module}", timeout=60)
            if answer == "send":
                if found.digest not in shipped:
                    shipped[found.digest] = found.bundle()
                agent.channel.send(("files", shipped[found.digest].files))
        got = _receive(agent, doing)
    return got


def _clocks(agents: Sequence[Agent], max_uncertainty_ns: int) -> None:
    for agent in agents:
        trips = []
        for _ in range(PINGS):
            sent = time.perf_counter_ns()
            agent.channel.send(("ping",))
            read = _receive(agent, "its clock was read", timeout=30)
            trips.append((sent, int(read), time.perf_counter_ns()))
        agent.clock = estimate_offset(trips)
        if agent.clock.uncertainty_ns > max_uncertainty_ns:
            raise LoadError(
                f"{agent.name}: its clock cannot be told to within "
                f"{max_uncertainty_ns / 1e6:.1f} ms: {agent.clock.describe()}; a start "
                "shared by all agents would not be one (raise max_clock_uncertainty "
                "or use a closer agent)"
            )


def run_agents(
    target: str,
    scenario: Scenario,
    phases: Sequence[Phase],
    tx: Sequence[str],
    *,
    options: EngineOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_second: Callable[[SecondReport], None] | None = None,
    max_clock_uncertainty: float = 0.005,
) -> LoadResult:
    """``phases`` of ``scenario`` against ``target`` from the agents of ``tx``
    (pytest-xdist's spelling: ``2*popen``, ``ssh=host//python=...``), as one load.

    ``on_start(t0)``: the shared start on this process's ``time.perf_counter_ns()``
    clock. Ctrl-C or SIGTERM stops every agent, which sends back what it measured
    (:class:`~perfsuite.errors.Interrupted` carries it).
    """
    options = options or EngineOptions()
    check_target(target, options.allowed_hosts)  # before anything starts anywhere
    specs = parse_tx(tx)
    _check_picklable(scenario)  # said before any agent starts
    bundle = make_bundle()
    n = len(specs)
    per_agent = replace(options, max_connections=max(1, options.max_connections // n))
    group = new_group()
    stop: list[str] = []
    try:
        agents = _connect(group, specs, bundle)
        _prepare(
            agents,
            target,
            scenario,
            phases,
            per_agent,
            live=on_second is not None,
            progress=progress is not None,
        )
        _clocks(agents, int(max_clock_uncertainty * 1e9))
        start = time.perf_counter_ns() + int(START_AHEAD_S * 1e9)
        if on_start is not None:
            on_start(start)
        for agent in agents:
            assert agent.clock is not None
            agent.channel.send(("go", start + agent.clock.offset_ns))
        with stop_signals(stop.append):
            parts = _gather(agents, start, on_second, stop, progress)
    finally:
        with contextlib.suppress(Exception):
            group.terminate(timeout=5.0)
    result = merge_parts(parts)
    if stop:
        raise Interrupted(stop[0], result)
    return result


def _gather(
    agents: Sequence[Agent],
    start: int,
    on_second: Callable[[SecondReport], None] | None,
    stop: list[str],
    progress: Callable[[Progress], None] | None = None,
) -> list[dict[str, Any]]:
    """Each agent's result, in the agents' order; their seconds to ``on_second``.

    An agent lost mid-run stops the others, which send back what they measured:
    :class:`AgentLost` carries it (merged) with the lost agent's name.
    """
    inbox: queue.Queue[tuple[Any, Any]] = execnet.MultiChannel(
        [a.channel for a in agents]
    ).make_receive_queue(endmarker=_ENDED)
    by_channel = {id(a.channel): a for a in agents}
    results: dict[int, dict[str, Any]] = {}
    lost: list[str] = []  # why each lost agent was (execnet ends a channel once)
    told = False
    deadline = float("inf")  # once an agent is lost: how long the others get to answer
    while len(results) + len(lost) < len(agents) and time.monotonic() < deadline:
        if (stop or lost) and not told:
            told = True
            for agent in agents:
                if agent.index not in results:
                    with contextlib.suppress(Exception):
                        agent.channel.send(("stop", stop[0] if stop else "SIGTERM"))
        try:
            channel, item = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        agent = by_channel[id(channel)]
        if item is _ENDED:
            if agent.index not in results:
                at = (time.perf_counter_ns() - start) / 1e9
                lost.append(f"{agent.name} lost at t = {at:.1f} s (its channel closed)")
                deadline = min(deadline, time.monotonic() + LOST_GRACE_S)
            continue
        kind, payload = item
        if kind == "second":
            if on_second is not None:
                on_second(pickle.loads(payload))
        elif kind == "progress":
            if progress is not None:  # the first agent's, for all of them
                line: Progress = pickle.loads(payload)
                n = len(agents)
                progress(replace(line, rps=line.rps * n, errors=line.errors * n))
        elif kind == "ok":
            results[agent.index] = pickle.loads(payload)
        else:
            raise LoadError(f"{agent.name} failed: {payload}")
    if lost:
        kept = merge_parts([results[i] for i in sorted(results)]) if results else None
        sent = f"; the other agents sent {kept.measured().requests} requests" if kept else ""
        raise AgentLost(lost[0] + sent, kept)
    return [results[i] for i in sorted(results)]
