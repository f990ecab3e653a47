"""Agents: the batched agent interface, random / scripted / SB3 agents.

Training in the dream and evaluation on the real game (later stages) live in their own modules
and are imported from there, so importing ``agents`` stays light for data collection.
"""

from __future__ import annotations

from agents.base import Agent, RandomAgent
from agents.factory import AGENT_CHOICES, make_agent
from agents.sb3 import AgentLoadError, SB3Agent
from agents.scripted import ScriptedPongAgent

__all__ = ["AGENT_CHOICES", "Agent", "AgentLoadError", "RandomAgent", "SB3Agent", "ScriptedPongAgent", "make_agent"]
