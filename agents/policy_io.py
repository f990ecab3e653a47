"""Agents on disk without pickle: the policy's weights (a weights-only state dict) and a JSON to rebuild it.

``learned-envs dream`` writes, in the agent's directory::

    agent.pt     the policy's ``state_dict`` (``torch.save``; read with ``weights_only=True``: no code runs)
    agent.json   which learned env it was trained in, its settings, and under ``"policy"`` what rebuilds the
                 network: the algorithm, the SB3 policy class, ``net_arch``, activation, spaces

Stable-Baselines3's own ``.zip`` (older agents here, rl-zoo's) unpickles parts of the archive on load,
which can run any code the file's author put there, so it is read only with ``trust_pickle=True``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from agents.sb3 import AgentLoadError

WEIGHTS = "agent.pt"
PICKLE_RISK = (
    "a Stable-Baselines3 .zip unpickles data on load, which runs any code its author put in it; load it only if "
    "you trust where it came from: pass --trust-pickle (trust_pickle=True)"
)
_ACTIVATIONS = ("Tanh", "ReLU", "ELU", "LeakyReLU", "SiLU", "GELU")


def _space_json(space: Any) -> dict[str, Any]:
    low, high = np.unique(space.low), np.unique(space.high)
    if len(low) != 1 or len(high) != 1:
        raise ValueError(f"only observation spaces with one bound for every value are saved, got {space}")

    def bound(v: float) -> float | str:
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")

    return {
        "shape": list(space.shape),
        "low": bound(float(low[0])),
        "high": bound(float(high[0])),
        "dtype": str(space.dtype),
    }


def policy_spec(algo: str, policy: Any) -> dict[str, Any]:
    """What rebuilds ``policy`` (an SB3 policy of ``algo``, a key of :data:`agents.algos.ALGOS`): JSON-ready."""
    from agents.algos import get_algo

    kind = get_algo(algo).policy_kind(policy)
    params = policy._get_constructor_parameters()  # noqa: SLF001 - SB3's own record of how it was built
    activation = params["activation_fn"].__name__
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation {activation} is not one this format can rebuild ({', '.join(_ACTIVATIONS)})")
    return {
        "format": 2,
        "algo": algo,
        "class": kind,
        "net_arch": params["net_arch"],
        "activation": activation,
        "normalize_images": bool(params["normalize_images"]),
        "observation_space": _space_json(policy.observation_space),
        "n_actions": int(policy.action_space.n),
    }


def save_policy(algo: str, policy: Any, out: Path) -> Path:
    """Write ``policy``'s weights to ``out / agent.pt`` (under a temporary name, then renamed); returns the path."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{WEIGHTS}.{os.getpid()}.tmp"
    torch.save(policy.state_dict(), tmp)
    os.replace(tmp, out / WEIGHTS)
    return out / WEIGHTS


class LoadedPolicy:
    """A rebuilt policy with the two calls agents here make: ``predict`` and ``set_random_seed``."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.observation_space, self.action_space = policy.observation_space, policy.action_space

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, None]:
        return self.policy.predict(obs, deterministic=deterministic)

    def set_random_seed(self, seed: int) -> None:
        from stable_baselines3.common.utils import set_random_seed

        set_random_seed(seed)


def load_policy(weights: Path, spec: dict[str, Any]) -> LoadedPolicy:
    """Rebuild a policy from its ``spec`` (``agent.json``'s ``"policy"``) and weights-only ``weights``."""
    import gymnasium as gym
    import torch

    from agents.algos import ALGOS

    try:
        kind = (spec["algo"], spec["class"])
        if (
            spec["algo"] not in ALGOS
            or spec["class"] not in ("MlpPolicy", "CnnPolicy")
            or (spec["activation"] not in _ACTIVATIONS)
        ):
            raise AgentLoadError(f"{weights}: a {kind} policy with {spec['activation']}: not one this format rebuilds")
        space = spec["observation_space"]
        obs_space = gym.spaces.Box(
            float(space["low"]), float(space["high"]), tuple(space["shape"]), np.dtype(space["dtype"])
        )
        policy = ALGOS[spec["algo"]].policy_class(spec["class"])(
            obs_space,
            gym.spaces.Discrete(int(spec["n_actions"])),
            lr_schedule=lambda _: 0.0,
            net_arch=spec["net_arch"],
            activation_fn=getattr(torch.nn, spec["activation"]),
            normalize_images=bool(spec.get("normalize_images", True)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise AgentLoadError(f'{weights.with_name("agent.json")}: no usable "policy" entry ({err})') from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        policy.load_state_dict(state)
    except FileNotFoundError:
        raise AgentLoadError(f"{weights}: missing") from None
    except Exception as err:
        raise AgentLoadError(
            f"{weights}: does not fit the policy agent.json describes ({type(err).__name__}: {err})"
        ) from None
    policy.set_training_mode(False)
    return LoadedPolicy(policy)


def convert_zip(path: Path, trust_pickle: bool = False) -> Path:
    """Rewrite an older agent (``agent.zip`` + ``agent.json`` of ``learned-envs dream``) as ``agent.pt`` + the
    policy's entry in ``agent.json``, beside it; the zip is left where it is. Reading the zip unpickles it,
    so it needs ``trust_pickle=True``. Returns the new weights' path."""
    from agents.evaluate import load_agent, read_agent_json
    from dataset_tools.dataset import write_json

    model, meta = load_agent(path, trust_pickle=trust_pickle)
    algo = str(meta["config"].get("algo", "ppo")).lower()
    meta = {**read_agent_json(path), "policy": policy_spec(algo, model.policy)}
    weights = save_policy(algo, model.policy, path.parent)
    write_json(path.with_name("agent.json"), meta)
    return weights
