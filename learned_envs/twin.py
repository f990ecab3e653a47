"""The real-env twin: the real ALE game with a learned env's observation space.

Frames go through the checkpoint's preprocessing; for latent observations the world model runs
as a filter on the real frames: every step it starts from the last ``n_past`` real frames and the
actions between them, and its features are the observation. Models with a posterior that takes one
real frame at a time (``observe_step``: ``rssm``) filter the whole game instead, as their dreams run
on from where they start. A policy trained in the dream then runs unchanged on the real game.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dataset_tools.games import EnvSettings, make_env
from dataset_tools.preprocess import Preprocess
from learned_envs.env import ObsType, check_obs_type
from world_models import WorldModel, load_model
from world_models.base import pick_device
from world_models.checkpoint import CheckpointConfig


class Observer:
    """Real frames -> a learned env's observations: the last ``n_past`` preprocessed frames and the
    actions between them, and, for latent observations, the model's features of that window.

    Used by the real twin and by agents that play the real game with a dream-trained policy.
    """

    def __init__(self, model: WorldModel, config: CheckpointConfig, obs_type: ObsType | None = None) -> None:
        obs_type = check_obs_type(obs_type, model, f"the real twin of a {config.model} checkpoint")  # type: ignore[assignment]
        self.model, self.config, self.obs_type = model, config, obs_type
        self.preprocess = Preprocess.from_dict(config.preprocess)
        self.n_past = int(config.model_config["n_past"])
        self._frames: deque[np.ndarray] = deque(maxlen=self.n_past)
        self._actions: deque[int] = deque(maxlen=max(self.n_past - 1, 1))
        # models that read each frame on its own (an object extractor) encode every real frame once
        self.last_state: dict[str, torch.Tensor] | None = None
        """The model's state behind the latest latent observation (a batch of one)."""
        self._encoded: deque[torch.Tensor] | None = None
        if obs_type == "latent" and hasattr(model, "encode_frames") and hasattr(model, "start_encoded"):
            self._encoded = deque(maxlen=self.n_past)
        # models whose posterior takes one real frame at a time carry their state through the whole game
        self._filters = obs_type != "frames" and hasattr(model, "observe_step")
        c, h, w = config.frame_shape
        if obs_type == "frames":
            self.observation_space = gym.spaces.Box(0, 255, (h, w, c), np.uint8)
        else:
            bound, dim = float(model.feature_bound), model.observation_dim(obs_type)
            self.observation_space = gym.spaces.Box(-bound, bound, (dim,), np.float32)

    def reset(self, raw: np.ndarray) -> np.ndarray:
        """Start from the first raw frame (the context repeats it until real steps fill it)."""
        first = self.preprocess(raw)
        self._frames.clear()
        self._actions.clear()
        for _ in range(self.n_past):
            self._frames.append(first)
        for _ in range(self.n_past - 1):
            self._actions.append(0)
        if self._encoded is not None:
            self._encoded.clear()
            code = self._encode(first)
            for _ in range(self.n_past):
                self._encoded.append(code)
        return self.observe()

    def step(self, action: int, raw: np.ndarray) -> np.ndarray:
        """``action`` led to the raw frame ``raw``; returns the new observation."""
        self._frames.append(self.preprocess(raw))
        self._actions.append(int(action))
        if self._encoded is not None:
            self._encoded.append(self._encode(self._frames[-1], self._encoded[-1]))
        if self._filters and self.last_state is not None:
            return self._filter_step(int(action))
        return self.observe()

    @torch.no_grad()
    def _filter_step(self, action: int) -> np.ndarray:
        device = next(self.model.parameters()).device
        frame = torch.from_numpy(self._frames[-1]).to(device).permute(2, 0, 1).float().unsqueeze(0) / 255.0
        actions = torch.tensor([action], dtype=torch.int64, device=device)
        self.last_state = self.model.observe_step(self.last_state, actions, frame)  # type: ignore[attr-defined]
        return self.model.observation(self.last_state, self.obs_type)[0].cpu().numpy()

    @torch.no_grad()
    def _encode(self, frame: np.ndarray, previous: torch.Tensor | None = None) -> torch.Tensor:
        """One preprocessed frame (H, W, C) uint8 -> the model's encoding of it (its ``encode_frames``), after
        the encoding ``previous`` of the frame before (None: the first)."""
        return self._encode_many(frame[None], None if previous is None else previous[None])[0]

    @torch.no_grad()
    def _encode_many(self, frames: np.ndarray, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Preprocessed frames (N, H, W, C) uint8 of separate games -> the model's encodings of them, one
        batched call; ``previous`` (N, ...): the encodings of the frames before them (objects tracked from
        frame to frame keep their slots)."""
        device = next(self.model.parameters()).device
        x = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255.0  # -> (N, C, H, W)
        return self.model.encode_frames(x, previous)

    @staticmethod
    @torch.no_grad()
    def step_many(observers: list[Observer], actions: list[int], raws: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`step` of several observers at once: with one model that encodes each frame on its own
        (``slot_dynamics``), the new frames are encoded in one batch and the observations come from one call,
        which is what real games played side by side spend their time on. Same observations as stepping
        each observer (up to float rounding of a batched forward pass)."""
        first = observers[0] if observers else None
        if (
            first is None
            or first._encoded is None
            or any(o.model is not first.model or o._encoded is None for o in observers)
        ):
            return [o.step(a, r) for o, a, r in zip(observers, actions, raws, strict=True)]
        for o, action, raw in zip(observers, actions, raws, strict=True):
            o._frames.append(o.preprocess(raw))
            o._actions.append(int(action))
        before = torch.stack([o._encoded[-1] for o in observers])  # type: ignore[index]
        codes = first._encode_many(np.stack([o._frames[-1] for o in observers]), before)
        for o, code in zip(observers, codes, strict=True):
            o._encoded.append(code)  # type: ignore[union-attr]
        device = codes.device
        windows = torch.stack([torch.stack(list(o._encoded)) for o in observers])  # type: ignore[arg-type]
        past = torch.tensor([list(o._actions)[-(o.n_past - 1) :] for o in observers], dtype=torch.int64, device=device)
        state = first.model.start_encoded(windows, past.reshape(len(observers), first.n_past - 1))
        obs = first.model.observation(state).cpu().numpy()
        for i, o in enumerate(observers):
            o.last_state = {k: v[i : i + 1] for k, v in state.items()}
        return list(obs)

    @torch.no_grad()
    def observe(self) -> np.ndarray:
        if self.obs_type == "frames":
            return self._frames[-1]
        device = next(self.model.parameters()).device
        if self._encoded is not None:
            actions = torch.tensor([list(self._actions)[-(self.n_past - 1) :]], dtype=torch.int64, device=device)
            self.last_state = self.model.start_encoded(torch.stack(list(self._encoded))[None], actions)
            return self.model.observation(self.last_state, self.obs_type)[0].cpu().numpy()
        frames = torch.from_numpy(np.stack(self._frames)).to(device)  # (P, H, W, C)
        frames = frames.permute(0, 3, 1, 2).float().unsqueeze(0) / 255.0  # -> (1, P, C, H, W)
        actions = torch.tensor(
            [list(self._actions)[-(self.n_past - 1) :] if self.n_past > 1 else []], dtype=torch.int64, device=device
        )
        self.last_state = self.model.start(frames, actions.reshape(1, self.n_past - 1))
        return self.model.observation(self.last_state, self.obs_type)[0].cpu().numpy()


class RealTwin(gym.Wrapper):
    """Wraps the real ALE game (settings from the checkpoint) to observe like the learned env."""

    def __init__(
        self,
        checkpoint: str | Path,
        obs_type: ObsType | None = None,
        device: str = "cpu",
        loaded: tuple[WorldModel, CheckpointConfig] | None = None,
        **env_overrides: Any,
    ) -> None:
        # twins of one checkpoint can share its model (and then step together: step_many)
        self.model, self.config = loaded if loaded is not None else load_twin_model(checkpoint, device)
        settings = EnvSettings.from_dict({**self.config.env, **env_overrides})
        super().__init__(make_env(settings))
        self.settings = settings
        self.observer = Observer(self.model, self.config, obs_type)
        self.preprocess = self.observer.preprocess
        self.obs_type = self.observer.obs_type
        self.observation_space = self.observer.observation_space
        self.last_raw_frame: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raw, info = self.env.reset(seed=seed, options=options)
        self.last_raw_frame = raw
        return self.observer.reset(raw), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        raw, reward, terminated, truncated, info = self.env.step(action)
        self.last_raw_frame = raw
        return self.observer.step(int(action), raw), float(reward), terminated, truncated, info

    @staticmethod
    def step_many(
        twins: list[RealTwin], actions: list[int]
    ) -> list[tuple[np.ndarray, float, bool, bool, dict[str, Any]]]:
        """:meth:`step` of several twins (of one shared model: ``loaded=``), their observations computed in
        one batch (:meth:`Observer.step_many`)."""
        stepped = [twin.env.step(int(a)) for twin, a in zip(twins, actions, strict=True)]
        for twin, (raw, *_rest) in zip(twins, stepped, strict=True):
            twin.last_raw_frame = raw
        obs = Observer.step_many(
            [t.observer for t in twins], [int(a) for a in actions], [raw for raw, *_rest in stepped]
        )
        return [
            (o, float(reward), terminated, truncated, info)
            for o, (_raw, reward, terminated, truncated, info) in zip(obs, stepped, strict=True)
        ]


def load_twin_model(checkpoint: str | Path, device: str = "cpu") -> tuple[WorldModel, CheckpointConfig]:
    """The world model and config a :class:`RealTwin` of ``checkpoint`` (a path or a learned-env id) runs;
    pass them as ``loaded=`` to twins that should share one model."""
    if not Path(checkpoint).exists() and str(checkpoint) in gym.registry:  # a learned-env id
        checkpoint = gym.registry[str(checkpoint)].kwargs.get("checkpoint", checkpoint)
    model, config = load_model(checkpoint, device=pick_device(device))
    if not isinstance(model, WorldModel):
        raise ValueError(f"{checkpoint}: a {config.model} checkpoint is an object extractor, it has no real twin")
    return model, config


def make_real_twin(
    checkpoint: str | Path,
    obs_type: ObsType | None = None,
    device: str = "cpu",
    loaded: tuple[WorldModel, CheckpointConfig] | None = None,
    **env_overrides: Any,
) -> RealTwin:
    """The real game with the same observations as ``LearnedEnv(checkpoint, obs_type=obs_type)``; ``checkpoint``
    may be a learned-env id (``"LearnedPongObjects-v1"``). ``env_overrides`` set the game's settings
    (``repeat_action_probability=0.25``, ``max_episode_steps=None``: the Atari 100k evaluation); ``loaded``
    (from :func:`load_twin_model`) shares one model between twins."""
    return RealTwin(checkpoint, obs_type=obs_type, device=device, loaded=loaded, **env_overrides)
