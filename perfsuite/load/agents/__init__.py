"""Load from several agents (processes here, or other machines) on execnet."""

from perfsuite.load.agents.clock import ClockOffset, estimate_offset
from perfsuite.load.agents.coordinator import run_agents
from perfsuite.load.agents.spec import parse_tx

__all__ = ["ClockOffset", "estimate_offset", "parse_tx", "run_agents"]
