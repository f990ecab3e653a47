"""The agent interface collection drives (batched ``act`` on raw frames and RAM), and the random agent.

Collection needs only this: agents that read the RAM, play a policy or a dream agent live in ``agents``
(``agents.make_agent``), which callers hand to collection as ``CollectConfig.make_agent``, so data
collection imports nothing above it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Agent(ABC):
    """Chooses actions for a batch of environments.

    ``act`` gets raw ALE observations ``(B, 210, 160, 3)`` uint8 and the RAM ``(B, 128)`` uint8
    of the same frames, and must return ``(B,)`` int64 actions in the env's action space.
    """

    name: str = "agent"
    needs_frames: bool = True
    """False for agents that look only at the RAM: collection then passes an empty ``(B, 0, 0, 3)``
    array as ``frames`` and skips converting its stored palette frames to RGB for them."""

    def reset(self, seed: int | None = None) -> None:  # noqa: B027 - optional hook
        """Start new episodes; ``seed`` makes the agent's own randomness reproducible."""

    @abstractmethod
    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 frames and ``(B, 128)`` uint8 RAM -> ``(B,)`` int64 actions."""

    def describe(self) -> dict[str, object]:
        """What the dataset manifest records about this agent."""
        return {"name": self.name}


class RandomAgent(Agent):
    """Uniformly random actions."""

    name = "random"
    needs_frames = False

    def __init__(self, n_actions: int, seed: int | None = None) -> None:
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)
        # Actions are drawn a block at a time: one generator call per step cost ~5% of collecting it.
        self._drawn = np.empty(0, dtype=np.int64)
        self._next = 0

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self._drawn, self._next = np.empty(0, dtype=np.int64), 0

    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        batch = len(frames)
        if self._next + batch > len(self._drawn):
            self._drawn = self.rng.integers(0, self.n_actions, size=max(1024, batch), dtype=np.int64)
            self._next = 0
        self._next += batch
        return self._drawn[self._next - batch : self._next].copy()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "n_actions": self.n_actions}


def random_only(
    spec: str,
    game: str,
    n_actions: int,
    seed: int | None = None,
    noise: float | None = None,
    trust_pickle: bool = False,
) -> Any:
    """The agent factory collection uses when it is given none: ``"random"`` only (the others are
    ``agents.make_agent``'s, which ``create-dataset`` and ``learned-envs loop`` pass)."""
    if spec != "random":
        raise ValueError(
            f"agent {spec!r} needs an agent factory: pass CollectConfig(make_agent=agents.make_agent), as "
            "create-dataset does"
        )
    return RandomAgent(n_actions, seed=seed)
