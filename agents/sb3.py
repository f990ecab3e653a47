"""Drive collection with a trained Stable-Baselines3 policy saved as ``.zip``."""

from __future__ import annotations

import json
import zipfile
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent
from dataset_tools.preprocess import Preprocess


class AgentLoadError(ValueError):
    """A policy file that cannot be used; the message says why."""


def algo_class(name: str) -> Any:
    """The Stable-Baselines3 class of algorithm ``name`` (any case; :data:`agents.algos.ALGOS`), or an
    :class:`AgentLoadError`."""
    from agents.algos import get_algo

    try:
        return get_algo(name).cls()
    except ValueError as err:
        raise AgentLoadError(str(err)) from None


def _load_model(path: Path, device: str, trust_pickle: bool = False) -> Any:
    from agents.policy_io import PICKLE_RISK

    if not trust_pickle:
        raise AgentLoadError(f"{path}: {PICKLE_RISK}")
    try:
        with zipfile.ZipFile(path) as zf:
            zf.read("data")
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise AgentLoadError(f"{path}: not a Stable-Baselines3 .zip ({err})") from None
    from agents.algos import ALGOS

    errors = []
    for name in ALGOS:
        try:
            return algo_class(name).load(path, device=device)
        except Exception as err:  # the wrong algorithm class raises many kinds of errors
            errors.append(f"{name}: {type(err).__name__}")
    raise AgentLoadError(f"{path}: could not load with any of {', '.join(ALGOS)} ({'; '.join(errors)})")


class SB3Agent(Agent):
    """A trained SB3 policy. Raw frames are mapped to the policy's observation space.

    The mapping is, in order: the ``preprocess`` given here; a ``preprocess`` entry in the JSON
    file saved next to the zip (``PATH.json``, written by ``learned-envs dream``); raw frames if
    the policy takes ``(210, 160, 3)``; otherwise a plain resize to the policy's image shape.
    Channel counts that are a multiple of the frame's channels are treated as stacked frames.
    """

    name = "sb3"

    def __init__(
        self,
        path: str | Path,
        preprocess: Preprocess | None = None,
        deterministic: bool = False,
        device: str = "cpu",
        trust_pickle: bool = False,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AgentLoadError(f"{self.path}: no such policy file")
        self.model = _load_model(self.path, device, trust_pickle)
        self.deterministic = deterministic
        space = self.model.observation_space
        shape = tuple(space.shape or ())
        if len(shape) != 3:
            raise AgentLoadError(f"{self.path}: policy observes {shape}; only image policies can run on raw frames")
        self.channels_first = shape[0] < shape[-1]
        h, w, c = (shape[1], shape[2], shape[0]) if self.channels_first else shape
        sidecar = self.path.with_suffix(".json")
        if preprocess is None and sidecar.exists():
            config = json.loads(sidecar.read_text())
            if "preprocess" in config:
                preprocess = Preprocess.from_dict(config["preprocess"])
        if preprocess is None and (h, w, c) != (210, 160, 3):
            preprocess = Preprocess(crop=None, size=(h, w), grayscale=c % 3 != 0)
        self.preprocess = preprocess
        per_frame = preprocess.channels if preprocess is not None else 3
        if c % per_frame:
            raise AgentLoadError(f"{self.path}: policy takes {c} channels, frames have {per_frame}")
        self.stack = c // per_frame
        self._history: deque[np.ndarray] = deque(maxlen=self.stack)

    def reset(self, seed: int | None = None) -> None:
        self._history.clear()
        if seed is not None:
            self.model.set_random_seed(seed)

    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        obs = self.preprocess(frames) if self.preprocess is not None else np.asarray(frames)  # (B, H, W, C)
        if not self._history:
            self._history.extend([obs] * (self.stack - 1))
        self._history.append(obs)
        stacked = np.concatenate(list(self._history), axis=-1)  # (B, H, W, C * stack)
        if self.channels_first:
            stacked = np.moveaxis(stacked, -1, 1)  # (B, H, W, C) -> (B, C, H, W)
        actions, _ = self.model.predict(stacked, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(len(frames))

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "deterministic": self.deterministic}
