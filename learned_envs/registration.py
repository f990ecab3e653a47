"""Registered learned envs (``LearnedPong-v1`` ...) and registering a user's own checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED = {
    "LearnedPong-v0": (ASSETS / "LearnedPong-v0", "Pong"),
    "LearnedPong-v1": (ASSETS / "LearnedPong-v1", "Pong"),
    "LearnedPong-v3": (ASSETS / "LearnedPong-v3", "Pong"),
    "LearnedPong-v4": (ASSETS / "LearnedPong-v4", "Pong"),
    "LearnedPong-v5": (ASSETS / "LearnedPong-v5", "Pong"),
    "LearnedPong-v6": (ASSETS / "LearnedPong-v6", "Pong"),
    "LearnedPong-v7": (ASSETS / "LearnedPong-v7", "Pong"),
    "LearnedPong-v8": (ASSETS / "LearnedPong-v8", "Pong"),
    "LearnedPongObjects-v0": (ASSETS / "LearnedPongObjects-v0", "Pong"),
    "LearnedPongObjects-v1": (ASSETS / "LearnedPongObjects-v1", "Pong"),
    "LearnedPongScene-v0": (ASSETS / "LearnedPongScene-v0", "Pong"),
    "LearnedPong-v2": (ASSETS / "LearnedPong-v2", "Pong"),
    "LearnedFreeway-v0": (ASSETS / "LearnedFreeway-v0", "Freeway"),
    "LearnedBoxing-v0": (ASSETS / "LearnedBoxing-v0", "Boxing"),
}
"""Ids of the shipped default models -> their checkpoint directories (package data). Default observation
(``obs_type=None``) of each, the one its agents train on:

* ``LearnedPong-v2``: the objects found in frames, (60,) float32 in [-2, 2] (4 slot frames x 3 classes x
  ``[present, x, y, w, h]``); ``"frames"``: 160 x 160 RGB.
* ``LearnedFreeway-v0``: frames-only Freeway (the frames-only loop from 33,333 random steps): 14 classes
  in 19 slots (ten cars, cars cut at the screen's edge, the chicken in two poses), (380,) float32 in [-2, 2]
  (4 slot frames x 19 slots x ``[present, x, y, w, h]``); ``"frames"``: 180 x 152 RGB (the play field).
* ``LearnedBoxing-v0``: frames-only Boxing (the frames-only loop from 33,333 random steps): one class per
  boxer, 3 slots, (60,) float32 in [-2, 2] (4 slot frames x 3 slots x ``[present, x, y, w, h]``);
  ``"frames"``: 141 x 96 RGB (the ring).
* ``LearnedPongObjects-v1`` / ``-v0``: the objects, (36,) float32 in [-1, 1] (4 frames x player, enemy,
  ball x ``[present, x, y]``); ``"frames"``: 64 x 64 RGB.
* ``LearnedPongScene-v0``: the SPACE-Time scene slots, (252,) float32 in [-10, 10].
* ``LearnedPong-v8`` / ``-v7`` / ``-v6`` (``rssm`` with an object state: the ball and paddles beside the latent,
  moved by heads that read them; the same weights: v8 rewards a point at the step the game counts it, when the
  ball reaches a side's scoring line, v7 when the ball passes a paddle, v6 when it leaves):
  the objects alone, (24,) float32 in [-1, 1] (the player, the enemy and the ball's ``[found, x, y]`` in the
  last two frames, and their moves); ``"latent"``: the state and the objects, (536,); ``"frames"``: 64 x 64
  RGB, decoded from the state.
* ``LearnedPong-v5`` / ``-v4`` / ``-v3`` (``rssm``, a latent-recurrent pixel model; v4 and v5 trained longer):
  its state, (512,) float32 in [-1, 1] (GRU state and 16 one-hot categorical latents); ``"frames"``: 64 x 64
  RGB, decoded from the state.
* ``LearnedPong-v1`` / ``-v0`` (pixel models): frames, 64 x 64 RGB; ``"latent"``: the model's state.
"""


DREAM_EPISODE_STEPS = {"LearnedBoxing-v0": 30}
"""Shipped ids whose agents train on dream episodes of other than 100 steps (what ``learned-envs dream`` cuts
them at unless told): Boxing's agents lost to the real game's boxer after 100-step dream episodes (-7.4 over 3
seeds) and beat it after 30-step ones (BENCHMARKS.md, "Boxing with short dream episodes")."""


def dream_episode_steps(env_id: str | None) -> int:
    """The dream episode length agents of ``env_id`` train on (:data:`DREAM_EPISODE_STEPS`, else 100)."""
    return DREAM_EPISODE_STEPS.get(env_id or "", 100)


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


def resolve_env(env: str | Path) -> tuple[str | None, Path]:
    """A registered learned-env id or a checkpoint / run path -> (the id or None, checkpoint directory)."""
    from world_models.checkpoint import resolve_checkpoint

    name = str(env)
    if not Path(name).exists() and name in gym.registry:
        checkpoint = gym.registry[name].kwargs.get("checkpoint")
        if checkpoint is None:
            raise ValueError(f"{name} is not a learned env (no checkpoint)")
        return name, Path(checkpoint)
    if not Path(name).exists():
        known = [k for k in gym.registry if str(gym.registry[k].entry_point).startswith("learned_envs")]
        raise ValueError(f"{name!r} is neither a registered learned env ({', '.join(known)}) nor a checkpoint path")
    return None, resolve_checkpoint(name)


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


_FOR_AGENTS = (
    "to train agents use LearnedPong-v7 (its agents +0.1 on real Pong over 5 seeds) or LearnedPong-v2 (objects "
    "found in frames, -3.4 over 3)"
)
NOTES = {
    "LearnedPong-v0": "LearnedPong-v0 (SVG-LP, pixels) falls apart within about 10 steps when it runs on its own "
    f"output (paddle stripes, a smeared ball, no rewards); {_FOR_AGENTS}",
    "LearnedPong-v1": "LearnedPong-v1 (SVG-LP, pixels) falls apart within about 10 steps when it runs on its own "
    f"output (paddle stripes, a smeared ball, no rewards); {_FOR_AGENTS}",
    "LearnedPong-v3": "LearnedPong-v3 (rssm, pixels) stays a Pong scene in most frames over 1,000 steps but loses its "
    "ball about half the time and gives half the game's points; its agents score about -13 on real Pong (3 seeds); "
    f"{_FOR_AGENTS}",
    "LearnedPong-v4": "LearnedPong-v4 (rssm, pixels) keeps about 0.94 of its frames valid Pong scenes over 1,000 "
    "steps but gives random play about 60% of the game's points; its agents score about -14 on real Pong (3 seeds); "
    f"{_FOR_AGENTS}",
    "LearnedPong-v5": "LearnedPong-v5 (rssm, pixels) keeps about 0.95 of its frames valid Pong scenes over 1,000 "
    "steps but gives random play about 60% of the game's points; its agents score about -11 on real Pong (3 seeds); "
    f"{_FOR_AGENTS}",
    "LearnedPong-v8": "LearnedPong-v8 pays each point at the step the game counts it, for studies of the dream; "
    f"its agents score -7.9 on real Pong (5 seeds); {_FOR_AGENTS}",
    "LearnedPongObjects-v0": "LearnedPongObjects-v0 is kept for its published figures; LearnedPongObjects-v1 "
    "replaces it (its agents -7.8 on real Pong over 3 seeds, v0's -14.0), and LearnedPong-v2 (frames-only, -3.4)",
}
"""Shipped ids whose dreams are not the ones to train agents in: learned envs say so (plain text, on the log)
when they are made of one."""


def shipped_note(checkpoint: str | Path) -> str | None:
    """The note of the shipped id whose checkpoint this is (see :data:`NOTES`), or None."""
    try:
        path = Path(checkpoint).resolve()
    except OSError:
        return None
    return next((NOTES[i] for i, (p, _) in SHIPPED.items() if i in NOTES and p.resolve() == path), None)


def _register_shipped() -> None:
    # gymnasium warns (in ANSI colours) that an older version "is out of date" on every make; the notes
    # above say what matters instead.
    warnings.filterwarnings("ignore", message=r".*The environment LearnedPong\w*-v\d+ is out of date")
    for env_id, (path, game) in SHIPPED.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="learned_envs.env:LearnedEnv",
                vector_entry_point="learned_envs.env:LearnedVectorEnv",
                kwargs={"checkpoint": str(path), "max_episode_steps": 1000, "game": game},
            )
