"""The object dreams and training in them on every device here: the CPU always, CUDA where it exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learned_envs.env import LearnedVectorEnv
from learned_envs.registration import ASSETS

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("env_id", ["LearnedPongObjects-v1", "LearnedPong-v2"])
def test_an_object_dream_steps_on_the_device_as_on_the_cpu(env_id: str, device: str) -> None:
    """Seeded resets repeat on the device, and steps stay in the observation space, past an autoreset."""
    here = LearnedVectorEnv(ASSETS / env_id, 16, device=device, obs_type="latent", max_episode_steps=30)
    assert here.device.type == device
    first, _ = here.reset(seed=3)
    np.testing.assert_array_equal(first, here.reset(seed=3)[0])
    rng = np.random.default_rng(0)
    for _ in range(40):  # past a truncation: autoreset on the device too
        obs, reward, terminated, truncated, _ = here.step(rng.integers(0, here.single_action_space.n, 16))
        assert here.single_observation_space.contains(obs[0].astype(here.single_observation_space.dtype))
        assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0}
    assert np.isfinite(obs).all()


@pytest.mark.parametrize("device", DEVICES)
def test_an_agent_trains_in_the_dream_on_the_device(device: str, tmp_path: Path) -> None:
    from agents.dream import DreamConfig, train_in_dream

    cfg = DreamConfig(
        env="LearnedPongObjects-v1", steps=512, n_envs=16, device=device, eval_episodes=0, n_steps=32, batch_size=128
    )
    weights = train_in_dream(cfg, tmp_path / "agent", progress=False)
    assert weights.exists() and (tmp_path / "agent" / "agent.json").exists()
