"""Load: phases, scenarios, the engine and its results."""

from perfsuite.load.engine import EngineOptions, Progress, run_load
from perfsuite.load.phases import ClosedPhase, OpenPhase, Phase, Phases
from perfsuite.load.result import Cell, LoadResult, PhaseInfo, Summary
from perfsuite.load.scenario import Context, Request, Scenario

__all__ = [
    "Cell",
    "ClosedPhase",
    "Context",
    "EngineOptions",
    "LoadResult",
    "OpenPhase",
    "Phase",
    "PhaseInfo",
    "Phases",
    "Progress",
    "Request",
    "Scenario",
    "Summary",
    "run_load",
]
