"""Load: phases, scenarios, the engine and its results."""

from perfsuite.load.engine import EngineOptions, Progress, run_load
from perfsuite.load.journey import Journey, Step, User, header, json_field, regex
from perfsuite.load.phases import ClosedPhase, OpenPhase, Phase, Phases
from perfsuite.load.result import Cell, LoadResult, PhaseInfo, Summary
from perfsuite.load.scenario import Context, Request, Scenario

__all__ = [
    "Cell",
    "ClosedPhase",
    "Context",
    "EngineOptions",
    "Journey",
    "LoadResult",
    "OpenPhase",
    "Phase",
    "PhaseInfo",
    "Phases",
    "Progress",
    "Request",
    "Scenario",
    "Step",
    "Summary",
    "User",
    "header",
    "json_field",
    "regex",
    "run_load",
]
