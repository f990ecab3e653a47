"""Fingerprints of every shipped learned env and agent: what a few fixed steps and observations give.

``python tests/shipped_fingerprints.py tests/data/shipped_outputs.json`` writes them; the test
``tests/test_shipped_outputs.py`` recomputes them and compares. The stored file was written by the code
before ``world_models`` was grouped by role (2026-12-03), so the test shows the move changed no output.
Ids shipped after it (``LearnedFreeway-v0``, ``LearnedBoxing-v0``, ``LearnedPong-v3``, ``LearnedPong-v4``,
``LearnedPong-v5``, ``LearnedPong-v6``, ``LearnedPong-v7``, ``LearnedPong-v8``) were added when they shipped.

The object dreams' entries were written again at 91012af, whose move draws use the inverse CDF instead of
Gumbel-max: the same distribution (``tests/world_models/test_moves.py``), other draws from the same seed.
``certain`` holds what those dreams give with their draws made certain (``CERTAIN``: the likeliest move,
presence thresholded), written by the code before that change (f9ed035): the rest of a step is unchanged.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import torch

ACTIONS = [[1, 2], [3, 0], [2, 2], [5, 4]]
"""Actions of the two envs at each step (modulo the game's action count: Freeway has 3, Boxing 18)."""


def env_fingerprint(env_id: str) -> dict[str, Any]:
    from learned_envs.env import LearnedVectorEnv
    from learned_envs.registration import SHIPPED, shipped_checkpoint

    assert env_id in SHIPPED
    torch.manual_seed(0)
    venv = LearnedVectorEnv(shipped_checkpoint(env_id), 2)
    obs, _ = venv.reset(seed=0)
    rewards, terms = [], []
    for a in ACTIONS:
        obs, reward, term, _, _ = venv.step(np.array(a, dtype=np.int64) % venv.single_action_space.n)
        rewards.append(reward.tolist())
        terms.append(term.tolist())
    flat = np.asarray(obs, dtype=np.float64).reshape(-1)
    return {
        "shape": list(np.shape(obs)),
        "sum": float(flat.sum()),
        "abs_sum": float(np.abs(flat).sum()),
        "head": flat[:8].tolist(),
        "rewards": rewards,
        "terminated": terms,
    }


CERTAIN = {"move_temperature": 1e-4, "sample_presence": False}
"""Imagination settings that make an object dream's draws certain: its steps depend on no random numbers."""


def certain_fingerprint(env_id: str) -> list[float]:
    """Sums of |observation| over 6 steps of 4 envs of the object dream ``env_id`` with ``CERTAIN`` draws."""
    from learned_envs.env import LearnedVectorEnv
    from learned_envs.registration import shipped_checkpoint

    torch.manual_seed(0)
    venv = LearnedVectorEnv(shipped_checkpoint(env_id), 4, settings=dict(CERTAIN))
    venv.reset(seed=0)
    sums = []
    for t in range(6):
        obs, *_ = venv.step(np.array([t % 3, (t + 1) % 3, 2, 1]) % venv.single_action_space.n)
        sums.append(round(float(np.abs(obs).sum()), 3))
    return sums


def agent_fingerprint(name: str) -> dict[str, Any]:
    from agents.evaluate import load_agent

    policy, meta = load_agent(name)
    space = policy.observation_space
    rng = np.random.default_rng(0)
    low = np.where(np.isfinite(space.low), space.low, -1.0)
    high = np.where(np.isfinite(space.high), space.high, 1.0)
    obs = rng.uniform(low, high, size=(16, *space.shape)).astype(space.dtype)
    actions, _ = policy.predict(obs, deterministic=True)
    return {"env_id": meta.get("env_id"), "actions": np.asarray(actions).reshape(-1).tolist()}


def fingerprints() -> dict[str, Any]:
    from agents.evaluate import SHIPPED_AGENTS
    from learned_envs.env import LearnedVectorEnv
    from learned_envs.registration import SHIPPED, shipped_checkpoint

    def object_dream(env_id: str) -> bool:  # its draws can be made certain
        model = LearnedVectorEnv(shipped_checkpoint(env_id), 1).model
        return set(CERTAIN) <= set(type(model).imagination_settings)

    return {
        "envs": {env_id: env_fingerprint(env_id) for env_id in sorted(SHIPPED)},
        "certain": {env_id: certain_fingerprint(env_id) for env_id in sorted(SHIPPED) if object_dream(env_id)},
        "agents": {name: agent_fingerprint(name) for name in sorted(SHIPPED_AGENTS)},
    }


if __name__ == "__main__":
    out = json.dumps(fingerprints(), indent=1)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(out + "\n")
    else:
        print(out)
