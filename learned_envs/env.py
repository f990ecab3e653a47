"""Gymnasium environments that step a trained world model: :class:`LearnedVectorEnv` and :class:`LearnedEnv`.

The model's state stays on its device as tensors; one ``step`` runs one batched forward pass for
all envs. ``reset`` starts each env from a real context (frames + actions) shipped with the
checkpoint (``context.npz``) or drawn from a dataset; rewards and terminations come from the
model's own heads, so nothing of the real game is needed after reset.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from learned_envs.contexts import load_contexts
from learned_envs.registration import shipped_note
from world_models import load_model
from world_models.base import WorldModel, pick_device

log = logging.getLogger(__name__)

ObsType = Literal["frames", "latent", "objects"]
OBS_TYPES = ("frames", "latent", "objects")


def check_obs_type(obs_type: str | None, model: Any, source: str | Path) -> str:
    """``obs_type`` (None: the model's ``default_obs``) if ``model`` can give it, else a one-line ValueError."""
    if obs_type not in (None, *OBS_TYPES):
        raise ValueError(f"obs_type must be one of {', '.join(OBS_TYPES)}, got {obs_type!r}")
    obs_type = obs_type or model.default_obs
    if obs_type == "objects" and model.object_dim == 0:
        raise ValueError(
            f"{source}: obs_type 'objects' needs a model that holds objects beside its latent (rssm "
            f"object_state=true); this is {type(model).name} without"
        )
    return obs_type


Precision = Literal["float32", "bfloat16"]


class LearnedVectorEnv(VectorEnv):
    """``num_envs`` imagined games of one world model, stepped together.

    Args:
        checkpoint: checkpoint dir, or a run dir (its newest checkpoint).
        num_envs: number of parallel envs (one batched forward pass per step).
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda:0"`` ...
        obs_type: ``"frames"`` (H, W, C) uint8 model frames, ``"latent"`` feature vectors (float32 in
            ``[-model.feature_bound, model.feature_bound]``), or ``"objects"`` the objects a pixel model holds
            beside its latent (``rssm`` with ``object_state``: the ball and paddles alone); default (None): the
            model's ``default_obs``, the objects for object models, frames for pixel models.
        render_mode: ``"rgb_array"`` or None.
        max_episode_steps: truncate imagined episodes after this many steps.
        contexts: a dataset dir to draw start contexts from (default: those in the checkpoint).
        game: if given, the checkpoint must model this game (registered ids set it).
        precision: ``"bfloat16"`` runs the model's matrix products under bf16 autocast (about 1.3x
            the env steps/s of an object model on a CPU with bf16 instructions; slower on one without).

    ``reset(options={"context_index": [i, ...]})`` picks the start contexts instead of drawing them.
    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.SAME_STEP, "render_fps": 15}

    def __init__(
        self,
        checkpoint: str | Path,
        num_envs: int = 1,
        device: str = "auto",
        obs_type: ObsType | None = None,
        render_mode: str | None = None,
        max_episode_steps: int = 1000,
        contexts: str | Path | None = None,
        game: str | None = None,
        precision: Precision = "float32",
        settings: dict[str, Any] | list[str] | None = None,
    ) -> None:
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
        self.precision = precision
        if obs_type not in (None, *OBS_TYPES):
            raise ValueError(f"obs_type must be one of {', '.join(OBS_TYPES)}, got {obs_type!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.device = pick_device(device)
        self.model, self.config = load_model(checkpoint, device=self.device)
        if not isinstance(self.model, WorldModel):
            raise ValueError(
                f"{checkpoint}: a {self.config.model} checkpoint is an object extractor, it cannot step a game; "
                "train a dynamics model over its objects (slot_dynamics extractor=...) and make an env of that"
            )
        if settings:
            self.model.set_imagination(settings, checkpoint)
        if game is not None and self.config.game != game:
            raise ValueError(f"{checkpoint}: this checkpoint models {self.config.game}, not {game}")
        self.checkpoint = str(checkpoint)
        note = shipped_note(checkpoint)
        if note:
            log.warning("note: %s", note)
        self.num_envs = num_envs
        self.obs_type: ObsType = check_obs_type(obs_type, self.model, checkpoint)  # type: ignore[assignment]
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        ctx = load_contexts(checkpoint, self.config, contexts)
        self._ctx_frames = torch.from_numpy(ctx["frames"]).to(self.device)  # (N, P, H, W, C) uint8
        self._ctx_actions = torch.from_numpy(ctx["actions"]).to(self.device)  # (N, P-1)
        c, h, w = self.config.frame_shape
        n_actions = int(self.config.n_actions)
        self.single_action_space = gym.spaces.Discrete(n_actions)
        self.action_space = gym.spaces.MultiDiscrete(np.full(num_envs, n_actions))
        if self.obs_type == "frames":
            self.single_observation_space = gym.spaces.Box(0, 255, (h, w, c), np.uint8)
        else:
            bound, dim = float(self.model.feature_bound), self.model.observation_dim(self.obs_type)
            self.single_observation_space = gym.spaces.Box(-bound, bound, (dim,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_meanings = list(self.config.action_meanings)
        self._state: dict[str, torch.Tensor] | None = None
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._generator = torch.Generator(device=self.device)
        self._np_random, _ = gym.utils.seeding.np_random(None)
        self._start_cache: dict[str, torch.Tensor] | None = None
        if self.model.deterministic_start:  # every reset then indexes these instead of running start()
            with torch.no_grad():
                self._start_cache = self._start_contexts(torch.arange(len(self._ctx_frames), device=self.device))

    # ------------------------------------------------------------------ helpers
    def _start(self, n: int, index: Any = None) -> dict[str, torch.Tensor]:
        if index is None:
            index = self._np_random.integers(0, len(self._ctx_frames), size=n)
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.shape != (n,) or index.min() < 0 or index.max() >= len(self._ctx_frames):
            raise ValueError(f"context_index must be {n} integers in [0, {len(self._ctx_frames)})")
        idx = torch.from_numpy(index).to(self.device)
        if self._start_cache is not None:
            return {k: v.index_select(0, idx) for k, v in self._start_cache.items()}
        return self._start_contexts(idx)

    def _start_contexts(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = self._ctx_frames[idx].permute(0, 1, 4, 2, 3).float() / 255.0  # (n, P, H, W, C) -> (n, P, C, H, W)
        return self.model.start(frames, self._ctx_actions[idx], generator=self._generator)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def _observe(self, state: dict[str, torch.Tensor]) -> np.ndarray:
        if self.obs_type != "frames":
            return self.model.observation(state, self.obs_type).cpu().numpy()
        with self._autocast():
            frames = self.model.decode(state).float()  # (B, C, H, W) in [0, 1]
        return (frames.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

    @property
    def state(self) -> dict[str, torch.Tensor]:
        """The model's state of every env (batch first), e.g. to read its objects; ``reset`` first."""
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before reading the state")
        return self._state

    # ------------------------------------------------------------------ gymnasium API
    @torch.no_grad()
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._np_random, _ = gym.utils.seeding.np_random(seed)
            self._generator.manual_seed(int(seed))
        self._state = self._start(self.num_envs, (options or {}).get("context_index"))
        self._elapsed[:] = 0
        return self._observe(self._state), {}

    @torch.no_grad()
    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        acts = np.asarray(actions).reshape(-1)
        n = self.single_action_space.n
        if (
            acts.shape != (self.num_envs,)
            or not np.issubdtype(acts.dtype, np.integer)
            or acts.min() < 0
            or acts.max() >= n
        ):
            raise ValueError(f"actions must be {self.num_envs} integers in [0, {n}), got {np.asarray(actions)!r}")
        with self._autocast():
            state, reward, term_prob = self.model.step(
                self._state, torch.as_tensor(acts, device=self.device), generator=self._generator
            )
        self._elapsed += 1
        terminated = (term_prob > 0.5).cpu().numpy()
        truncated = (self._elapsed >= self.max_episode_steps) & ~terminated
        obs = self._observe(state)
        infos: dict[str, Any] = {}
        done = terminated | truncated
        if done.any():
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in np.nonzero(done)[0]:
                final_obs[i] = obs[i].copy()
            rows = torch.from_numpy(np.nonzero(done)[0]).to(self.device)
            fresh = self._start(len(rows))
            state = {k: v.index_copy(0, rows, fresh[k]) for k, v in state.items()}  # restart only the finished envs
            obs = obs.copy()
            obs[done] = self._observe(fresh)
            self._elapsed[done] = 0
            infos = {
                "final_obs": final_obs,
                "_final_obs": done.copy(),
                "final_info": np.array([{}] * self.num_envs),
                "_final_info": done.copy(),
            }
        self._state = state
        return obs, reward.float().cpu().numpy(), terminated, truncated, infos

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        frame = self.model.decode(self._state)[0]  # (C, H, W)
        img = (frame.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def _observation_key(venv: LearnedVectorEnv) -> tuple[Any, ...]:
    """What an agent's observation means: frames of one shape, or the latent of one model kind over one
    object extractor (two dynamics models over the same extractor observe alike; two pixel models do not)."""
    if venv.obs_type == "frames":
        return ("frames", venv.single_observation_space.shape)
    if venv.obs_type == "objects":  # the same objects, read the same way, whatever model steps them
        return ("objects", venv.config.model, venv.single_observation_space.shape)
    spec = venv.config.model_config.get("extractor_spec") or {}
    owner = spec.get("digest") or venv.checkpoint  # without an extractor, a latent is its own model's
    return ("latent", venv.config.model, owner, venv.single_observation_space.shape)


class EnsembleVectorEnv(VectorEnv):
    """The games of several learned envs side by side as one vector env (``learned-envs dream
    ensemble=...``): ``num_envs`` split as evenly as it goes, the first members taking one more.

    An agent trained in it meets each model's mistakes in only a share of its games, so a state where one
    model credits it with points the game would not give pays off only where that model runs (ME-TRPO's
    remedy for model exploitation; ``slot_dynamics members=`` is the same within one checkpoint, drawn
    step by step, at ``members`` times the training). Every member must observe alike (:func:`_observation_key`).
    """

    metadata = LearnedVectorEnv.metadata

    def __init__(self, checkpoints: list[str | Path], num_envs: int, **kwargs: Any) -> None:
        if not checkpoints:
            raise ValueError("an ensemble needs at least one learned env")
        if num_envs < len(checkpoints):
            raise ValueError(f"{len(checkpoints)} learned envs need at least as many envs, got num_envs={num_envs}")
        counts = [num_envs // len(checkpoints) + (i < num_envs % len(checkpoints)) for i in range(len(checkpoints))]
        self.members = [LearnedVectorEnv(ck, n, **kwargs) for ck, n in zip(checkpoints, counts, strict=True)]
        first = self.members[0]
        for member in self.members[1:]:
            if member.config.game != first.config.game or member.single_action_space != first.single_action_space:
                raise ValueError(
                    f"{member.checkpoint} models {member.config.game}, {first.checkpoint} {first.config.game}"
                )
            if _observation_key(member) != _observation_key(first):
                raise ValueError(
                    f"{member.checkpoint} and {first.checkpoint} observe differently (another extractor, model "
                    "kind or observation): an agent cannot train in both"
                )
        self.num_envs = num_envs
        self.bounds = np.cumsum([0, *counts])
        self.single_action_space = first.single_action_space
        self.action_space = gym.spaces.MultiDiscrete(np.full(num_envs, self.single_action_space.n))
        self.single_observation_space = first.single_observation_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.render_mode = first.render_mode
        self.obs_type, self.config, self.checkpoint = first.obs_type, first.config, first.checkpoint
        self.action_meanings = first.action_meanings

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options and "context_index" in options:
            raise ValueError("an ensemble draws its start contexts; context_index is for one learned env")
        obs = [m.reset(seed=None if seed is None else seed + i)[0] for i, m in enumerate(self.members)]
        return np.concatenate(obs), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        acts = np.asarray(actions).reshape(-1)
        if acts.shape != (self.num_envs,):
            raise ValueError(f"actions must be {self.num_envs} integers, got {np.asarray(actions)!r}")
        parts = [m.step(acts[a:b]) for m, a, b in zip(self.members, self.bounds[:-1], self.bounds[1:], strict=True)]
        obs, reward, terminated, truncated = (np.concatenate([p[k] for p in parts]) for k in range(4))
        infos: dict[str, Any] = {}
        done = terminated | truncated
        if done.any():
            final_obs = np.empty(self.num_envs, dtype=object)
            for (a, b), part in zip(zip(self.bounds[:-1], self.bounds[1:], strict=True), parts, strict=True):
                if part[4]:
                    final_obs[a:b] = part[4]["final_obs"]
            infos = {
                "final_obs": final_obs,
                "_final_obs": done.copy(),
                "final_info": np.array([{}] * self.num_envs),
                "_final_info": done.copy(),
            }
        return obs, reward, terminated, truncated, infos

    def render(self) -> np.ndarray | None:
        return self.members[0].render()

    def close(self, **kwargs: Any) -> None:
        for member in self.members:
            member.close(**kwargs)


class LearnedEnv(gym.Env):
    """One imagined game: a :class:`LearnedVectorEnv` of size 1 behind the single-env API."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "auto",
        obs_type: ObsType | None = None,
        render_mode: str | None = None,
        max_episode_steps: int = 1000,
        contexts: str | Path | None = None,
        game: str | None = None,
        precision: Precision = "float32",
        settings: dict[str, Any] | list[str] | None = None,
    ) -> None:
        self.vec = LearnedVectorEnv(
            checkpoint, 1, device, obs_type, render_mode, max_episode_steps, contexts, game, precision, settings
        )
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.render_mode = render_mode
        self.model, self.config = self.vec.model, self.vec.config

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # draw the vector env's seed from this env's np_random, so reset(seed=s) is reproducible
        obs, info = self.vec.reset(seed=int(self.np_random.integers(2**31)), options=options)
        return obs[0], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
        obs, reward, terminated, truncated, infos = self.vec.step(np.array([action], dtype=np.int64))
        if terminated[0] or truncated[0]:
            obs = infos["final_obs"][0][None]  # the single env does not autoreset: return the final frame
            self.vec._state = None  # the caller must reset
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray | None:
        return self.vec.render()
