"""Checkpoints: weights (``torch.save`` state_dicts, loaded with ``weights_only=True``) plus JSON.

One checkpoint is a directory ``RUN/checkpoints/step_00001000/``::

    model.pt      the model's state_dict
    optim.pt      optimizer state, step and RNG states (for --resume)
    config.json   model class and config, train config, preprocessing, action space, game and env
                  settings, dataset manifest hash, the command that made it, step, metrics
    context.npz   real start contexts for learned envs: frames (N, n_past, H, W, C) uint8,
                  actions (N, n_past - 1) int64

It is written under a temporary name and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_models.base import Model, build_model, model_class
from world_models.config import from_dict

FORMAT = 1
"""Schema version of ``config.json`` (its ``format`` key). A later layout bumps it, and
:meth:`CheckpointConfig.from_dict` reads every older one into the current fields."""
READABLE_FORMATS = (1,)
"""Schema versions this code reads."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message names the file."""


@dataclass
class CheckpointConfig:
    """A checkpoint's ``config.json``, typed: the one reader (:func:`read_config`) and writer
    (:func:`save_checkpoint`) of it. The model's and the trainer's own settings stay dicts here (each
    model's :attr:`~world_models.base.Model.Config` types its own); the rest are fields."""

    model: str
    """Registered model name (:func:`world_models.base.model_class`)."""
    model_config: dict[str, Any]
    """The model's config (its ``Config`` dataclass as a dict)."""
    frame_shape: tuple[int, int, int]
    """(C, H, W) of the model's frames."""
    n_actions: int
    """Size of the game's action set."""
    game: str | None = None
    """ALE game id of the training data (``"Pong"``); None for data of unknown origin."""
    action_meanings: list[str] = field(default_factory=list)
    """The game's action names, in action order."""
    preprocess: dict[str, Any] = field(default_factory=dict)
    """The frames' preprocessing (:meth:`dataset_tools.preprocess.Preprocess.to_dict`)."""
    env: dict[str, Any] = field(default_factory=dict)
    """The game's settings the data was collected with (frameskip, sticky actions, ...)."""
    train_config: dict[str, Any] = field(default_factory=dict)
    """The trainer's settings (:class:`world_models.training.config.TrainConfig` as a dict)."""
    dataset: dict[str, Any] = field(default_factory=dict)
    """The training data: ``path``, ``manifest_hash``, ``steps``."""
    command: str = ""
    """The command line that trained it."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Training metrics averaged over the last logging window."""
    step: int = 0
    """Trainer steps done."""
    format: int = FORMAT
    """Schema version (:data:`FORMAT`)."""

    def __post_init__(self) -> None:
        c, h, w = (int(v) for v in self.frame_shape)
        self.frame_shape = (c, h, w)
        self.n_actions = int(self.n_actions)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config.json") -> CheckpointConfig:
        """Read a ``config.json`` of any readable schema; a one-line :class:`CheckpointError` naming ``where``
        for anything else."""
        if not isinstance(raw, dict) or raw.get("format") not in READABLE_FORMATS or "model" not in raw:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{where}: not a learned-envs checkpoint config (format {got})")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("model_config", "frame_shape", "n_actions") if k not in raw]
        if missing:
            raise CheckpointError(f"{where}: checkpoint config lacks {', '.join(missing)}")
        values = {k: v for k, v in raw.items() if k in known}
        for key in ("model_config", "preprocess", "env", "train_config", "dataset", "metrics"):
            values[key] = dict(values.get(key) or {})
        values["action_meanings"] = list(values.get("action_meanings") or [])
        try:
            values["step"] = int(values.get("step", 0))
            return cls(**values)
        except (TypeError, ValueError):
            raise CheckpointError(f"{where}: bad frame_shape, n_actions or step in the checkpoint config") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as ``config.json`` holds it."""
        out = asdict(self)
        out["frame_shape"] = list(self.frame_shape)
        return out


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a checkpoint dir, a run dir (its newest) or a file inside one."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if (path / "config.json").exists() and (path / "model.pt").exists():
        return path
    found = checkpoint_dirs(path)
    if found:
        return found[-1]
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    raise CheckpointError(f"{path}: holds no checkpoint (expected model.pt + config.json, or checkpoints/step_*)")


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Model,
    config: CheckpointConfig,
    optimizer: torch.optim.Optimizer | None = None,
    extra_state: dict[str, Any] | None = None,
    context: dict[str, np.ndarray] | None = None,
    keep_last: int = 3,
) -> Path:
    """Write a checkpoint atomically (``config`` with ``step``) and delete all but the newest ``keep_last``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(model.state_dict(), tmp / "model.pt")
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict(), **(extra_state or {})}, tmp / "optim.pt")
    written = {**config.to_dict(), "format": FORMAT, "step": step}
    (tmp / "config.json").write_text(json.dumps(written, indent=1))
    if context is not None:
        np.savez_compressed(tmp / "context.npz", **context)  # frames of a few colours: ~50x smaller
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_config(ckpt: str | Path) -> CheckpointConfig:
    """The typed ``config.json`` of checkpoint directory ``ckpt``."""
    path = Path(ckpt) / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: corrupted ({err})") from None
    return CheckpointConfig.from_dict(raw, str(path))


def _load_tensors(path: Path, device: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as err:  # truncated zip, pickle errors, ...
        raise CheckpointError(f"{path}: corrupted or unreadable ({type(err).__name__}: {err})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Model, CheckpointConfig]:
    """Load a checkpoint (dir, or a run dir's newest) -> (model in eval mode on ``device``, its config)."""
    ckpt = resolve_checkpoint(path)
    config = read_config(ckpt)
    cls = model_class(config.model)
    cfg = from_dict(cls.Config, config.model_config)
    model = build_model(config.model, cfg, config.frame_shape, config.n_actions)
    state = _load_tensors(ckpt / "model.pt", device)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{ckpt / 'model.pt'}: weights do not fit {config.model} ({err})") from None
    return model.to(device).eval(), config


def load_training_state(ckpt: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    return _load_tensors(ckpt / "optim.pt", device)


def load_context(path: str | Path) -> dict[str, np.ndarray]:
    """The real start contexts shipped with a checkpoint."""
    ckpt = resolve_checkpoint(path)
    file = ckpt / "context.npz"
    try:
        with np.load(file, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing (no start contexts shipped with this checkpoint)") from None
    except Exception as err:
        raise CheckpointError(f"{file}: corrupted ({err})") from None
