"""The Stable-Baselines3 algorithms of this package, in one table: what ``learned-envs dream`` trains,
what ``--algo`` accepts, what agents save and rebuild (:mod:`agents.policy_io`), and which classes an
older ``.zip`` is tried with (:mod:`agents.sb3`).

Adding an algorithm is one :class:`Algo` row: its SB3 class, its two policy classes, and the settings it
trains with in a batched dream (:meth:`Algo.settings`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from learned_envs.sb3 import ppo_settings


def _ppo(cfg: Any) -> dict[str, Any]:
    auto = ppo_settings(cfg.n_envs)
    return {
        "n_steps": cfg.n_steps or auto["n_steps"],
        "batch_size": cfg.batch_size or auto["batch_size"],
        "n_epochs": cfg.n_epochs,
        "ent_coef": cfg.ent_coef,
    }


def _a2c(cfg: Any) -> dict[str, Any]:
    return {"n_steps": cfg.n_steps or ppo_settings(cfg.n_envs)["n_steps"], "ent_coef": cfg.ent_coef}


def _dqn(cfg: Any) -> dict[str, Any]:
    # Every vector step adds n_envs transitions; a few gradient steps per vector step keep the replay ratio
    # near SB3's Atari settings (one update of 32 per 4 transitions) at a batch that suits a CPU.
    return {
        "buffer_size": min(200_000, max(cfg.steps, 1_000)),
        "learning_starts": min(10_000, cfg.steps // 20),  # a short run still learns
        "batch_size": cfg.batch_size or 256,
        "train_freq": 1,
        "gradient_steps": max(1, cfg.n_envs // 32),
        "target_update_interval": 10_000,
        "exploration_fraction": 0.1,
        "exploration_final_eps": 0.02,
    }


@dataclass(frozen=True)
class Algo:
    """One SB3 algorithm as this package uses it."""

    name: str
    """Lower-case key (``--algo ppo``), as saved in ``agent.json``."""
    sb3_class: str
    """Its class in ``stable_baselines3``."""
    policy_module: str
    """The module of its policy classes."""
    mlp_policy: str
    """Class of its policy over vectors (``MlpPolicy``)."""
    cnn_policy: str
    """Class of its policy over images (``CnnPolicy``)."""
    extra: Callable[[Any], dict[str, Any]]
    """A :class:`~agents.dream.DreamConfig` -> this algorithm's own constructor settings."""

    def cls(self) -> Any:
        import stable_baselines3

        return getattr(stable_baselines3, self.sb3_class)

    def policy_class(self, kind: str) -> Any:
        """``kind`` ``"MlpPolicy"`` or ``"CnnPolicy"`` -> the policy class that rebuilds it."""
        if kind not in ("MlpPolicy", "CnnPolicy"):
            raise ValueError(f"policy kind must be MlpPolicy or CnnPolicy, got {kind!r}")
        module = importlib.import_module(self.policy_module)
        return getattr(module, self.mlp_policy if kind == "MlpPolicy" else self.cnn_policy)

    def policy_kind(self, policy: Any) -> str:
        """``"CnnPolicy"`` or ``"MlpPolicy"``: which of this algorithm's classes ``policy`` is."""
        return "CnnPolicy" if type(policy).__name__ == self.cnn_policy else "MlpPolicy"

    def settings(self, cfg: Any) -> dict[str, Any]:
        """Constructor settings of this algorithm for a :class:`~agents.dream.DreamConfig` (its ``n_envs``
        batched dream envs), besides the learning rate and discount that every algorithm takes."""
        return self.extra(cfg)


ALGOS: dict[str, Algo] = {
    a.name: a
    for a in (
        Algo("ppo", "PPO", "stable_baselines3.common.policies", "ActorCriticPolicy", "ActorCriticCnnPolicy", _ppo),
        Algo("a2c", "A2C", "stable_baselines3.common.policies", "ActorCriticPolicy", "ActorCriticCnnPolicy", _a2c),
        Algo("dqn", "DQN", "stable_baselines3.dqn.policies", "DQNPolicy", "CnnPolicy", _dqn),
    )
}
"""Every algorithm agents here train with, save and load."""


def get_algo(name: str) -> Algo:
    """The :class:`Algo` called ``name`` (any case); a one-line error listing the known ones."""
    algo = ALGOS.get(str(name).lower())
    if algo is None:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGOS)}")
    return algo
