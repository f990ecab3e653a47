"""Build an agent from a command-line spec: ``random`` (``random:K``: each action held K steps), ``scripted``
or a path to an SB3 ``.zip``."""

from __future__ import annotations

from pathlib import Path

from agents.base import Agent, RandomAgent, random_repeat
from agents.dream_agent import DreamAgent, is_dream_agent
from agents.sb3 import AgentLoadError, SB3Agent
from dataset_tools.atari import REGISTRY, game_spec

AGENT_CHOICES = ("random", "random:K", "scripted", "PATH.zip")


def make_agent(
    spec: str,
    game: str,
    n_actions: int,
    seed: int | None = None,
    noise: float | None = None,
    trust_pickle: bool = False,
) -> Agent:
    """``spec`` is ``"random"``, ``"scripted"`` (Pong only), an agent from ``learned-envs dream``
    (its ``agent.zip`` or directory) or a path to a Stable-Baselines3 zip of an image policy. ``noise`` is
    the probability of a random action instead of the agent's (None: 0.1 scripted, 0 for a dream agent).
    ``trust_pickle`` lets a Stable-Baselines3 ``.zip`` load (its loading runs code the file may hold)."""
    repeat = random_repeat(spec)
    if repeat is not None:
        return RandomAgent(n_actions, seed=seed, repeat=repeat)
    if spec == "scripted":
        scripted = game_spec(game).scripted
        if scripted is None:
            with_one = ", ".join(name for name, s in REGISTRY.items() if s.scripted is not None)
            raise AgentLoadError(f"no scripted agent plays {game} (only {with_one}); use --agent random or a policy")
        return scripted(noise=0.1 if noise is None else noise, n_actions=n_actions, seed=seed)
    if is_dream_agent(spec):
        dreamer = DreamAgent(spec, noise=noise or 0.0, trust_pickle=trust_pickle)
        if dreamer.n_actions != n_actions:
            raise AgentLoadError(f"{spec}: policy has {dreamer.n_actions} actions, {game} has {n_actions}")
        return dreamer
    if spec.endswith(".zip") or Path(spec).exists():
        agent = SB3Agent(spec, trust_pickle=trust_pickle)
        if agent.model.action_space.n != n_actions:
            raise AgentLoadError(f"{spec}: policy has {agent.model.action_space.n} actions, {game} has {n_actions}")
        return agent
    raise AgentLoadError(f"unknown agent {spec!r}; choose one of: {', '.join(AGENT_CHOICES)}")
