"""Registered learned envs (``LearnedPong-v1`` ...) and registering a user's own checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED = {
    "LearnedPong-v0": (ASSETS / "LearnedPong-v0", "Pong"),
    "LearnedPong-v1": (ASSETS / "LearnedPong-v1", "Pong"),
    "LearnedPongObjects-v0": (ASSETS / "LearnedPongObjects-v0", "Pong"),
    "LearnedPongObjects-v1": (ASSETS / "LearnedPongObjects-v1", "Pong"),
    "LearnedPongScene-v0": (ASSETS / "LearnedPongScene-v0", "Pong"),
}
"""Ids of the shipped default models -> their checkpoint directories (package data)."""


def shipped_checkpoint(env_id: str) -> Path:
    """The checkpoint shipped for ``env_id``; a clear error if this install has none."""
    path = SHIPPED.get(env_id, (None, None))[0]
    if path is None:
        raise ValueError(f"no shipped checkpoint for {env_id!r}; shipped: {', '.join(SHIPPED)}")
    if not (path / "model.pt").exists():
        raise FileNotFoundError(
            f"{path}: the shipped checkpoint of {env_id} is missing from this install; pass checkpoint=PATH"
        )
    return path


def register_checkpoint(env_id: str, checkpoint: str | Path, max_episode_steps: int = 1000, **kwargs: Any) -> None:
    """Register a trained checkpoint as ``env_id`` so ``gym.make(env_id)`` and ``gym.make_vec(env_id, n)`` work.

    ``kwargs`` (``device=``, ``obs_type=``, ``contexts=``) become the id's defaults.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    gym.register(
        id=env_id,
        entry_point="learned_envs.env:LearnedEnv",
        vector_entry_point="learned_envs.env:LearnedVectorEnv",
        kwargs={"checkpoint": str(path), "max_episode_steps": max_episode_steps, **kwargs},
    )


def _register_shipped() -> None:
    for env_id, (path, game) in SHIPPED.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="learned_envs.env:LearnedEnv",
                vector_entry_point="learned_envs.env:LearnedVectorEnv",
                kwargs={"checkpoint": str(path), "max_episode_steps": 1000, "game": game},
            )
