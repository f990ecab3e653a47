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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_models.base import WorldModel, build_model, model_class
from world_models.config import from_dict

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message names the file."""


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
    model: WorldModel,
    info: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    extra_state: dict[str, Any] | None = None,
    context: dict[str, np.ndarray] | None = None,
    keep_last: int = 3,
) -> Path:
    """Write a checkpoint atomically and delete all but the newest ``keep_last``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(model.state_dict(), tmp / "model.pt")
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict(), **(extra_state or {})}, tmp / "optim.pt")
    config = {"format": FORMAT, **info, "step": step}
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    if context is not None:
        np.savez_compressed(tmp / "context.npz", **context)  # frames of a few colours: ~50x smaller
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_config(ckpt: Path) -> dict[str, Any]:
    path = ckpt / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: corrupted ({err})") from None
    if config.get("format") != FORMAT or "model" not in config:
        raise CheckpointError(f"{path}: not a learned-envs checkpoint config (format {config.get('format')})")
    return config


def _load_tensors(path: Path, device: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as err:  # truncated zip, pickle errors, ...
        raise CheckpointError(f"{path}: corrupted or unreadable ({type(err).__name__}: {err})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """Load a checkpoint (dir, or a run dir's newest) -> (model in eval mode on ``device``, config)."""
    ckpt = resolve_checkpoint(path)
    config = read_config(ckpt)
    cls = model_class(config["model"])
    cfg = from_dict(cls.Config, config["model_config"])
    model = build_model(config["model"], cfg, tuple(config["frame_shape"]), int(config["n_actions"]))
    state = _load_tensors(ckpt / "model.pt", device)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{ckpt / 'model.pt'}: weights do not fit {config['model']} ({err})") from None
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
