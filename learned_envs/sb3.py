"""A Stable-Baselines3 ``VecEnv`` over a batched gymnasium ``VectorEnv`` (one forward pass per step).

``PPO("MlpPolicy", SB3VecEnv(LearnedVectorEnv(ck, 64, obs_type="latent")), **ppo_settings(64))`` or, with
frames, ``PPO("CnnPolicy", ...)`` train unchanged (SB3 transposes image observations itself). The adapter
reports every finished episode's return and length as ``VecMonitor`` does, so SB3 logs
``rollout/ep_rew_mean`` without a wrapper.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

ROLLOUT_STEPS = 8192
"""Dream steps per PPO rollout, summed over the envs (``n_steps`` = this / ``num_envs``)."""


def ppo_settings(num_envs: int) -> dict[str, Any]:
    """PPO settings for ``num_envs`` batched dream envs (those of ``learned-envs dream``): SB3's default
    ``n_steps=2048`` is meant for a few envs and, at 64, makes one rollout 131k steps long, so a short
    ``learn()`` does one or two updates. Here a rollout is ``ROLLOUT_STEPS`` (n_steps 128 at 64 envs) in
    8 minibatches."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}")
    n_steps = max(8, ROLLOUT_STEPS // num_envs)
    return {
        "n_steps": n_steps,
        "batch_size": max(64, n_steps * num_envs // 8),
        "n_epochs": 4,
        "learning_rate": 2.5e-4,
        "ent_coef": 0.01,
    }


class SB3VecEnv(VecEnv):
    """SB3 view of a same-step-autoreset gymnasium ``VectorEnv`` (such as LearnedVectorEnv)."""

    def __init__(self, venv: VectorEnv) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if getattr(mode, "value", mode) != "SameStep":
            raise ValueError(f"SB3VecEnv needs a same-step autoreset vector env, got {mode!r}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.render_mode = getattr(venv, "render_mode", None)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t0 = time.perf_counter()

    def reset(self) -> np.ndarray:
        obs, _ = self.venv.reset(seed=self._seed)
        self._seed = None
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, infos = self.venv.step(self._actions)
        dones = terminated | truncated
        self._returns += reward
        self._lengths += 1
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        elapsed = round(time.perf_counter() - self._t0, 6)
        for i in np.nonzero(dones)[0]:
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            out[i]["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]), "t": elapsed}
        self._returns[dones] = 0.0
        self._lengths[dones] = 0
        return obs, reward.astype(np.float32), dones, out

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed = seed
        return [seed] * self.num_envs

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> list[np.ndarray]:
        image = self.venv.render()
        return [image] if image is not None else []

    # The sub-envs are not separate objects: attributes are the vector env's own.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
