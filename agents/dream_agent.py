"""A dream-trained agent (``learned-envs dream``) playing from raw frames, e.g. to collect real data.

It sees the real game as its learned env's twin does (:class:`learned_envs.twin.Observer`: the
model's preprocessing and, for latent observations, the model's features), so ``create-dataset
--agent runs/agent/agent.zip`` and the SimPLe-style loop collect with the policy being trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agents.base import Agent
from agents.evaluate import agent_file


def is_dream_agent(path: str | Path) -> bool:
    """True for an agent's weights (or its directory) with the ``agent.json`` that ``dream`` writes."""
    meta = agent_file(path).with_name("agent.json")
    if not meta.is_file():
        return False
    try:
        return {"obs_type", "checkpoint"} <= set(json.loads(meta.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


class DreamAgent(Agent):
    """Plays one env at a time (``act`` on a batch of 1) with a policy trained in a learned env."""

    name = "dream"

    def __init__(
        self, path: str | Path, deterministic: bool = False, noise: float = 0.0, trust_pickle: bool = False
    ) -> None:
        from agents.evaluate import agent_checkpoint, load_agent
        from learned_envs.twin import Observer
        from world_models import load_model

        self.path = agent_file(path)
        self.policy, self.meta = load_agent(self.path, trust_pickle)
        model, config = load_model(agent_checkpoint(self.meta, self.path))
        self.observer = Observer(model, config, self.meta["obs_type"])
        self.n_actions = int(config.n_actions)
        self.deterministic = deterministic
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be a probability in [0, 1], got {noise}")
        self.noise = noise
        self.rng = np.random.default_rng()
        self._last_action: int | None = None

    def reset(self, seed: int | None = None) -> None:
        self._last_action = None
        if seed is not None:
            self.policy.set_random_seed(seed)
            self.rng = np.random.default_rng(seed)

    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        if len(frames) != 1:
            raise ValueError(f"DreamAgent plays one env at a time, got a batch of {len(frames)}")
        if self._last_action is None:
            obs = self.observer.reset(frames[0])
        else:
            obs = self.observer.step(self._last_action, frames[0])
        action, _ = self.policy.predict(obs[None], deterministic=self.deterministic)
        self._last_action = int(np.asarray(action).reshape(-1)[0])
        if self.noise > 0 and self.rng.random() < self.noise:  # explore: the observer still sees the action taken
            self._last_action = int(self.rng.integers(self.n_actions))
        return np.array([self._last_action], dtype=np.int64)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "deterministic": self.deterministic, "noise": self.noise}
