"""The trainer's settings (:class:`TrainConfig`), its errors, config files and the configs of a resumed run."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from world_models.base import Model, ModelConfig, model_class
from world_models.config import ConfigError, apply_overrides, from_dict, parse_pairs

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Settings of the trainer; every model's own ``Config`` sits beside it on the command line."""

    steps: int = 5000
    """Optimizer steps in total (a resumed run may raise it to train longer)."""
    batch_size: int = 16
    """Sequences per step and per process."""
    lr: float = 1e-3
    """Adam learning rate."""
    adversary_lr: float = 2e-4
    """Adam learning rate of the model's adversary (its discriminator, a second optimizer), if it has one."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``cosine`` decays the learning rate from ``lr`` to 0 over ``steps`` (set from the step, so resumes agree)."""
    weight_decay: float = 0.0
    """Adam (L2) weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    point_share: float = 0.0
    """Share of each batch drawn from the windows with a point (a nonzero reward) in them; the rest are drawn
    from all windows, points or not. Points are rare (one transition in about 50 of ``pong_mix``; 28% of its
    16-frame windows hold one); a share above that shows them more often, and biases the model towards them
    (measured in BENCHMARKS: more points called, fewer right). 0: every window equally likely (each epoch a
    shuffle of all windows)."""
    seed: int = 0
    """Seeds torch, numpy and random (rank r of a DDP run uses seed + r) and the data order."""
    device: str = "auto"
    """``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    amp: bool = True
    """bf16 autocast on CUDA; ignored on the CPU."""
    log_every: int = 50
    """Steps between scalar logs (TensorBoard and train_log.csv)."""
    image_every: int = 500
    """Steps between ground truth vs open-loop rollout images and GIFs (0: never)."""
    ckpt_every: int = 500
    """Steps between checkpoints (one is always written at the end)."""
    keep_last: int = 3
    """Checkpoints kept on disk (0: all)."""
    val_fraction: float = 0.1
    """Episodes held out for validation (the rollout images are drawn from them)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    n_contexts: int = 64
    """Real start contexts shipped with each checkpoint (for learned envs' resets)."""
    eval_every: int = 0
    """Steps between evaluations of an object extractor (``space_time``) on the held-out episodes, as
    ``learned-envs evaluate`` scores it (F-score per class, AP, counting, few-shot z_what accuracy), logged
    to TensorBoard (``eval/*``) and ``eval_log.csv`` (0: never; other models: ignored)."""
    eval_frames: int = 256
    """Held-out frames (the first ones) each ``eval_every`` evaluation scores."""
    init_from: str = ""
    """Start from the weights of this checkpoint (or run dir: its newest), e.g. to fine-tune on more data
    or continue with another model option; the model class and weight shapes must match."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "log_every", "ckpt_every", "eval_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "image_every", "keep_last", "num_workers", "n_contexts", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.point_share <= 1:
            raise ConfigError(f"point_share must be in [0, 1], got {self.point_share}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


RESUMABLE = (
    "steps", "log_every", "image_every", "ckpt_every", "keep_last", "num_workers", "device", "eval_every", "eval_frames"
)  # fmt: skip
"""Train config keys a resumed run takes from the new command line; other changes are ignored."""


class TrainError(RuntimeError):
    """A run that cannot start or go on; the message says why."""


class TrainingDiverged(TrainError):
    """The loss or the gradient norm became NaN / inf; the message names the step and the last good checkpoint."""


def config_file(name: str | Path, model_name: str) -> Path:
    """A config file path as given, or a bare name looked up in the ``configs/`` folder beside the model's
    module (``atari_pong.yaml`` -> ``world_models/space/configs/atari_pong.yaml`` for ``space_time``)."""
    path = Path(name)
    if path.exists():
        return path
    module = sys.modules[model_class(model_name).__module__]
    shipped = Path(module.__file__ or "").parent / "configs" / path.name
    if shipped.exists():
        return shipped
    found = sorted(p.name for p in shipped.parent.glob("*.yaml")) if shipped.parent.exists() else []
    raise ConfigError(
        f"{name}: no such config file" + (f" (shipped for {model_name}: {', '.join(found)})" if found else "")
    )


def resolve_configs(
    cls: type[Model], out: Path, overrides: Sequence[str], resume: bool
) -> tuple[TrainConfig, ModelConfig]:
    pairs = parse_pairs(list(overrides))
    cfg, mcfg = apply_overrides([TrainConfig(), cls.Config()], pairs)
    run_file = out / "run.json"
    if not (resume and run_file.exists()):
        return cfg, mcfg
    try:
        saved = json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TrainError(f"{run_file}: corrupted ({err})") from None
    if saved.get("model") != cls.name:
        raise TrainError(f"{out} is a {saved.get('model')!r} run, not {cls.name!r}")
    old_cfg = from_dict(TrainConfig, saved["train_config"])
    old_mcfg = from_dict(cls.Config, saved["model_config"])
    ignored = []
    for key in pairs:
        new, old = (cfg, old_cfg) if key in {f.name for f in fields(TrainConfig)} else (mcfg, old_mcfg)
        if key not in RESUMABLE and getattr(new, key) != getattr(old, key):
            ignored.append(f"{key}={getattr(new, key)} (run has {getattr(old, key)})")
    if ignored:
        log.warning("resuming %s with its saved configs; ignoring %s", out, ", ".join(ignored))
    return tuple(apply_overrides([old_cfg, old_mcfg], {k: v for k, v in pairs.items() if k in RESUMABLE}))
