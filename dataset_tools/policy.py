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


def random_repeat(spec: str) -> int | None:
    """The action repeat of a random agent's spec: ``"random"`` -> 1, ``"random:K"`` -> K (each random action
    held K steps); None for any other agent. A bad K is a ValueError that says what is expected."""
    if spec == "random":
        return 1
    if not spec.startswith("random:"):
        return None
    k = spec.split(":", 1)[1]
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"agent {spec!r}: expected random:K with K a whole number of steps >= 1 (random:16)")
    return int(k)


class RandomAgent(Agent):
    """Uniformly random actions, each held ``repeat`` steps (1: a new one every step).

    Held actions explore further (temporally extended random actions, as in Dabney et al.'s ez-greedy):
    measured on Freeway (4 full games each), random play crosses the road 0, 0, 0, 0 times with a new action
    every step, and 2, 3, 5, 4 times with each held 16 steps (``benchmarks/random_repeat.py``), so its data
    holds rewards to learn from."""

    name = "random"
    needs_frames = False

    def __init__(self, n_actions: int, seed: int | None = None, repeat: int = 1) -> None:
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.n_actions, self.repeat = n_actions, repeat
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
            n = max(1024, batch)
            if self.repeat == 1:
                self._drawn = self.rng.integers(0, self.n_actions, size=n, dtype=np.int64)
            else:  # blocks of whole holds: a hold never breaks at a block's end
                draws = self.rng.integers(0, self.n_actions, size=-(-n // self.repeat), dtype=np.int64)
                self._drawn = np.repeat(draws, self.repeat)
            self._next = 0
        self._next += batch
        return self._drawn[self._next - batch : self._next].copy()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "n_actions": self.n_actions, **({"repeat": self.repeat} if self.repeat > 1 else {})}


def random_only(
    spec: str,
    game: str,
    n_actions: int,
    seed: int | None = None,
    noise: float | None = None,
    trust_pickle: bool = False,
) -> Any:
    """The agent factory collection uses when it is given none: ``"random"`` / ``"random:K"`` only (the others
    are ``agents.make_agent``'s, which ``create-dataset`` and ``learned-envs loop`` pass)."""
    repeat = random_repeat(spec)
    if repeat is None:
        raise ValueError(
            f"agent {spec!r} needs an agent factory: pass CollectConfig(make_agent=agents.make_agent), as "
            "create-dataset does"
        )
    return RandomAgent(n_actions, seed=seed, repeat=repeat)
