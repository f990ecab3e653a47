"""The one trainer every world model uses: ``train(model_name, data, out, overrides)``.

A run directory holds::

    run.json        model name, model and train configs, dataset path + manifest hash, command
    train_log.csv   step, loss, the model's log keys, grad_norm, wall_time, frames_per_s
    tb/             TensorBoard scalars, and ground truth (top) vs open-loop rollout (bottom) images
    samples/        the same rollouts as GIFs, ``step_XXXXXXXX.gif``
    checkpoints/    the newest ``keep_last`` checkpoints (see :mod:`world_models.checkpoint`)
    eval_log.csv    object extractors with ``eval_every``: held-out scores (:mod:`world_models.space.evaluate`),
    eval/           and the newest evaluation's metrics.json, z_what classifiers and PCA plot

A model with an adversary (:meth:`WorldModel.adversary`, e.g. savp's discriminators) keeps it out of
the main optimizer: after each main step, a second Adam (``adversary_lr``) steps it on
:meth:`WorldModel.adversary_loss`; its logs join the others and its state is checkpointed.

Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel (nccl on CUDA, gloo
on CPU): each rank reads its own share of every epoch and rank 0 writes everything.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from dataset_tools.dataset import DatasetDir, write_json
from dataset_tools.episode import DatasetError
from dataset_tools.sequences import SequenceBatch, SequenceDataset
from world_models.base import ModelConfig, WorldModel, model_class, pick_device
from world_models.checkpoint import checkpoint_dirs, load_model, load_training_state, read_config, save_checkpoint
from world_models.config import ConfigError, apply_overrides, expand_grid, from_dict, parse_pairs, run_name, to_dict

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


class LossModule(nn.Module):
    """Routes ``model.loss(batch)`` through ``forward``: DDP only syncs gradients of ``forward`` calls."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed() -> Iterator[_Dist]:
    """Joins the process group that torchrun describes (``WORLD_SIZE`` > 1) while open; else a no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield _Dist()
        return
    info = _Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        yield info
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield info
    finally:
        dist.destroy_process_group()


def train_grid(
    model_name: str, data: Path, out: Path, overrides: Sequence[str] = (), resume: bool = False, progress: bool = True
) -> list[Path]:
    """Every combination of comma-separated override values, one after the other (SPACE-Time's
    multi_train), each in ``out/<key=value-...>/``; without a multi-valued key, one run in ``out``.
    Returns the final checkpoint of each run."""
    combos = expand_grid(list(overrides))
    varying = [k for k in combos[0] if len({c[k] for c in combos}) > 1]
    cls = model_class(model_name)
    for combo in combos:  # a bad value fails here, not after the first runs
        apply_overrides([TrainConfig(), cls.Config()], combo)
    with distributed():
        return [
            train(
                model_name,
                data,
                Path(out) / run_name(combo, varying) if varying else Path(out),
                [f"{k}={v}" for k, v in combo.items()],
                resume=resume,
                progress=progress,
            )
            for combo in combos
        ]


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


def train(
    model_name: str,
    data: Path,
    out: Path,
    overrides: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train ``model_name`` on the dataset directory ``data`` into the run directory ``out``.

    ``overrides`` are ``key=value`` strings for :class:`TrainConfig` and the model's ``Config``.
    ``resume`` continues from the newest checkpoint in ``out`` with the configs of its run.json.
    Returns the final checkpoint directory.
    """
    data, out = Path(data), Path(out)
    cls = model_class(model_name)
    cfg, mcfg = _configs(cls, out, overrides, resume)
    command = shlex.join(
        ["learned-envs", "train", "--model", model_name, "--data", str(data), "--out", str(out)]
        + (["--resume"] if resume else [])
        + list(overrides)
    )
    ckpt = checkpoint_dirs(out)[-1] if checkpoint_dirs(out) else None
    if ckpt is not None and not resume:
        raise TrainError(f"{out} already holds a run ({ckpt.name}); pass --resume to continue it, or another --out")
    start = int(read_config(ckpt)["step"]) if ckpt is not None else 0
    if resume and ckpt is None:
        log.warning("%s holds no checkpoint to resume from; starting at step 0", out)
    if ckpt is not None and start >= cfg.steps:
        log.info("%s: already trained for %d of %d steps", out, start, cfg.steps)
        return ckpt
    with distributed() as dd:
        return _train(cls, cfg, mcfg, data, out, ckpt, start, command, progress, dd)


def _configs(
    cls: type[WorldModel], out: Path, overrides: Sequence[str], resume: bool
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


def _init_weights(model: WorldModel, source: str, device: torch.device) -> None:
    """Copy the weights of checkpoint ``source`` into ``model`` (``init_from``)."""
    src, config = load_model(source, device)
    if config["model"] != model.name:
        raise TrainError(f"init_from={source} holds a {config['model']} model, this run trains {model.name}")
    weights, grown = _grow_inputs(src.state_dict(), model.state_dict())
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise TrainError(f"init_from={source}: weights do not fit this model's config ({err})") from None
    log.info("initialised from %s (step %s)", source, config.get("step"))
    if grown:
        log.info("init_from: more inputs than the source in %s; their weights start at zero", ", ".join(grown))


def _grow_inputs(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``source`` weights, those with fewer inputs (dim 1) than ``target``'s padded with zeros after them.

    For layers that keep their inputs along dim 1 (``Conv2d``, ``Linear``, ``LSTM``), new inputs at
    zero weight leave the layer computing what the source's did, e.g. ``svg_lp``'s encoder with
    ``encoder_frames=2`` from a one-frame model. Other shape differences (a grown bias or norm) are
    left for ``load_state_dict`` to report. Returns the weights and the names of the grown ones.
    """
    out, grown = dict(source), []
    for name, w in source.items():
        t = target.get(name)
        if t is None or t.dim() < 2 or t.dim() != w.dim() or t.shape[1] <= w.shape[1]:
            continue
        if t.shape[0] != w.shape[0] or t.shape[2:] != w.shape[2:]:
            continue
        padded = torch.zeros_like(t)
        padded[:, : w.shape[1]] = w
        out[name] = padded
        grown.append(name)
    return out, grown


def _device(name: str, dd: _Dist) -> torch.device:
    device = pick_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}, but CUDA is not available here (use device=cpu or auto)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dd.local_rank)
    return device


def _train(
    cls: type[WorldModel],
    cfg: TrainConfig,
    mcfg: ModelConfig,
    data: Path,
    out: Path,
    ckpt: Path | None,
    start: int,
    command: str,
    progress: bool,
    dd: _Dist,
) -> Path:
    seq_len = mcfg.n_past + mcfg.n_future
    try:  # every shard whole and its actions in range, before anything is written (checked once per shard)
        DatasetDir(data).check_episodes()
    except DatasetError as err:
        raise TrainError(f"{data}: {err}") from None
    try:  # e.g. an extractor's object states cached beside the episodes; the main rank writes them first
        if dd.main:
            cls.prepare_data(mcfg, data, progress=progress)
        if dd.world > 1:
            dist.barrier()
            if not dd.main:
                cls.prepare_data(mcfg, data, progress=False)
    except (ValueError, FileNotFoundError) as err:
        raise TrainError(f"{data}: {err}") from None
    options = cls.data_options(mcfg, DatasetDir(data).preprocess())
    dataset = SequenceDataset(
        data, seq_len, split="train", val_fraction=cfg.val_fraction, frames=cls.needs_frames, **options
    )
    if len(dataset) == 0:
        raise TrainError(f"{data}: no training window of {seq_len} frames (episodes too short or none)")
    ds: DatasetDir = dataset.ds
    manifest = ds.read_manifest()
    h, w, c = dataset.preprocess.shape
    frame_shape, n_actions = (c, h, w), len(manifest["action_meanings"])
    device = _device(cfg.device, dd)
    _seed(cfg.seed + dd.rank)
    if ckpt is None:
        model = cls(mcfg, frame_shape, n_actions).to(device)
        if cfg.init_from:
            _init_weights(model, cfg.init_from, device)
    else:
        model, _ = load_model(ckpt, device)
        model.train()
    try:
        model.bind_data(manifest.get("game"), dataset.preprocess)
    except ValueError as err:
        raise TrainError(f"{data}: {err}") from None
    adversary = model.adversary()
    adversary_params = list(adversary.parameters()) if adversary is not None else []
    ids = {id(p) for p in adversary_params}
    params = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    adv_optimizer = torch.optim.Adam(adversary_params, lr=cfg.adversary_lr) if adversary_params else None
    state = load_training_state(ckpt, "cpu") if ckpt is not None else {}
    if state:
        optimizer.load_state_dict(state["optimizer"])
        if adv_optimizer is not None:
            adv_optimizer.load_state_dict(state["adversary_optimizer"])
    net: nn.Module = LossModule(model)
    if dd.world > 1:
        net = nn.parallel.DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            # an adversary may get no gradient from the generator's loss (epva's critic): let DDP skip it
            find_unused_parameters=adversary is not None,
        )

    dataset_info = {"path": str(data.resolve()), "manifest_hash": ds.manifest_hash(), "steps": ds.counts()["steps"]}
    info: dict[str, Any] = {
        "model": cls.name,
        "model_config": to_dict(mcfg),
        "train_config": to_dict(cfg),
        "frame_shape": list(frame_shape),
        "n_actions": n_actions,
        "action_meanings": manifest["action_meanings"],
        "game": manifest.get("game"),
        "env": manifest["env"],
        "preprocess": dataset.preprocess.to_dict(),
        "dataset": dataset_info,
        "command": command,
        "metrics": dict(state.get("metrics", {})),
    }
    run_log, context, val_batch, evaluator = None, None, None, None
    if dd.main:
        _write_run_json(out, info, command, resumed=ckpt is not None)
        counts = model.parameter_counts()
        total = counts.pop("total")
        log.info(
            "%s on %s (%s), frames %s, %d actions; number of parameters:",
            cls.name,
            data,
            device,
            frame_shape,
            n_actions,
        )
        for name, count in counts.items():
            log.info("  %-14s %12s", name, f"{count:,}")
        log.info("  %-14s %12s", "total", f"{total:,}")
        run_log = RunLog(out, start_step=start)
        context = _contexts(ds, dataset, cfg.n_contexts, mcfg.n_past, cfg.seed) if cfg.n_contexts else None
        val_batch = _val_batch(data, seq_len, cfg.val_fraction, options).to(device) if cfg.image_every else None
        evaluator = _evaluator(model, cfg, data, out, dataset.preprocess, manifest.get("game"), start)

    last_good = ckpt
    wall_time = float(state.get("wall_time", 0.0))

    def save(step: int) -> Path:
        nonlocal last_good
        rng = _rng_state()
        states = [rng] * dd.world
        if dd.world > 1:
            dist.all_gather_object(states, rng)
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingDiverged(f"non-finite weights at step {step}; last good checkpoint: {last_good}")
        path = out / "checkpoints" / f"step_{step:08d}"
        if dd.main:
            extra = {"step": step, "rng": states, "wall_time": wall_time, "metrics": info["metrics"]}
            if adv_optimizer is not None:
                extra["adversary_optimizer"] = adv_optimizer.state_dict()
            path = save_checkpoint(out, step, model, info, optimizer, extra, context, cfg.keep_last)
        last_good = path
        return path

    if "rng" in state and dd.rank < len(state["rng"]):
        _set_rng_state(state["rng"][dd.rank])
    batches = _batches(dataset, cfg, dd, start)
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
    frames_per_step = cfg.batch_size * seq_len * dd.world
    window: dict[str, float] = {}
    n_window, busy, tick = 0, 0.0, time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, disable=not (progress and dd.main), desc=out.name, dynamic_ncols=True)
    final = last_good
    try:
        if start == cfg.steps:  # a fresh run of 0 steps still leaves a checkpoint
            final = save(start)
        for step in range(start + 1, cfg.steps + 1):
            t0 = time.perf_counter()
            batch = next(batches).to(device)
            model.on_step(step)
            amp = cfg.amp and device.type == "cuda"
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, logs = net(batch)
            if cfg.lr_schedule == "cosine":
                factor = 0.5 * (1.0 + math.cos(math.pi * (step - 1) / cfg.steps))
                for opt, lr in ((optimizer, cfg.lr), (adv_optimizer, cfg.adversary_lr)):
                    for group in opt.param_groups if opt is not None else []:
                        group["lr"] = lr * factor
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p in adversary_params:  # the generator's loss does not train the discriminator
                p.grad = None
            norm = nn.utils.clip_grad_norm_(params, max_norm)
            check = torch.stack([loss.detach().float(), norm.detach().float().to(loss.device)])
            if dd.world > 1:
                dist.all_reduce(check)  # sum over ranks: NaN anywhere is NaN everywhere
                check /= dd.world
            loss_value, norm_value = check.tolist()
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                raise TrainingDiverged(
                    f"training diverged at step {step} (loss {loss_value}, grad norm {norm_value}); "
                    f"last good checkpoint: {last_good if last_good is not None else 'none saved yet'}"
                )
            optimizer.step()
            if adv_optimizer is not None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    adv_loss, adv_logs = model.adversary_loss(batch)
                adv_value = _adversary_step(adv_loss, adv_optimizer, adversary_params, max_norm, dd)
                if not math.isfinite(adv_value):
                    raise TrainingDiverged(f"the adversary diverged at step {step}; last good checkpoint: {last_good}")
                logs = {**logs, "adversary_loss": adv_value, **adv_logs}
            busy += time.perf_counter() - t0
            bar.update(1)
            for key, value in {"loss": loss_value, **logs, "grad_norm": norm_value}.items():
                window[key] = window.get(key, 0.0) + float(value)
            n_window += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                wall_time += now - tick
                info["metrics"] = {k: v / n_window for k, v in window.items()}
                if run_log is not None:
                    run_log.scalars(step, info["metrics"], wall_time, n_window * frames_per_step / max(busy, 1e-9))
                    bar.set_postfix(loss=f"{info['metrics']['loss']:.4g}", refresh=False)
                window, n_window, busy, tick = {}, 0, 0.0, now
            if run_log is not None and val_batch is not None and step % cfg.image_every == 0:
                run_log.rollout(step, model, val_batch)
            if run_log is not None and evaluator is not None and step % cfg.eval_every == 0:
                evaluator(step, run_log.writer)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                final = save(step)
        if dd.world > 1:
            dist.barrier()
    finally:
        bar.close()
        batches.close()
        if run_log is not None:
            run_log.close()
    assert final is not None
    return final


def _evaluator(
    model: WorldModel, cfg: TrainConfig, data: Path, out: Path, preprocess: Any, game: str | None, start: int
) -> Any:
    """Rank 0's ``eval_every`` evaluator of an object extractor, or None."""
    if not cfg.eval_every:
        return None
    if not model.extractor:
        log.warning("eval_every=%d: %s is no object extractor; nothing to evaluate", cfg.eval_every, model.name)
        return None
    from world_models.space.evaluate import TrainEvaluator

    try:
        return TrainEvaluator(model, data, out, preprocess, str(game), cfg.val_fraction, cfg.eval_frames, start)
    except ValueError as err:
        raise TrainError(f"eval_every: {err}") from None


def _adversary_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], max_norm: float, dd: _Dist
) -> float:
    """One step of the adversary's optimizer; its gradients are averaged over DDP ranks by hand (its
    loss runs outside the DDP forward). Returns the loss averaged over ranks."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    value = loss.detach().float().reshape(1)
    if dd.world > 1:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= dd.world
        dist.all_reduce(value)
        value /= dd.world
    if math.isfinite(value.item()):
        nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()
    return value.item()


class RunLog:
    """Rank 0's outputs: train_log.csv (append, header once), TensorBoard events, rollout GIFs."""

    def __init__(self, out: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.out, self.csv = out, out / "train_log.csv"
        self.columns: list[str] | None = None
        if self.csv.exists() and self.csv.stat().st_size:
            with self.csv.open(newline="") as f:
                rows = list(csv.DictReader(f))
            if rows:  # rows past the checkpoint we start from are trained again: drop them
                self.columns = list(rows[0])
                self._write(self.columns, [r for r in rows if int(r["step"]) <= start_step], "w")
        self.writer = SummaryWriter(str(out / "tb"), purge_step=start_step + 1)

    def _write(self, columns: list[str], rows: list[dict[str, Any]], mode: str) -> None:
        with self.csv.open(mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def scalars(self, step: int, metrics: dict[str, float], wall_time: float, frames_per_s: float) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.add_scalar("train/frames_per_s", frames_per_s, step)
        row = {"step": step, **metrics, "wall_time": round(wall_time, 3), "frames_per_s": round(frames_per_s, 1)}
        new = self.columns is None
        self.columns = self.columns or list(row)
        self._write(self.columns, [row], "w" if new else "a")

    @torch.no_grad()
    def rollout(self, step: int, model: WorldModel, batch: SequenceBatch) -> None:
        """Ground truth (top row) vs open-loop prediction from the first n_past frames (bottom row), or
        the model's own :meth:`~WorldModel.summary_images` (``val/summary``, ``samples/step_XXXXXXXX.png``)."""
        import imageio.v3 as iio

        p = model.cfg.n_past
        was_training = model.training
        model.eval()
        summary = model.summary_images(batch)
        if summary is not None:
            model.train(was_training)
            self.writer.add_image("val/summary", summary.float().clamp(0, 1).cpu(), step)
            image = (summary.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            (self.out / "samples").mkdir(exist_ok=True)
            iio.imwrite(self.out / "samples" / f"step_{step:08d}.png", image)  # (3, H, W) -> (H, W, 3)
            return
        generator = torch.Generator(batch.frames.device).manual_seed(0)
        pred = model.rollout(batch.frames[:, :p], batch.actions[:, : p - 1], batch.actions[:, p - 1 :], generator)
        model.train(was_training)
        truth = batch.frames  # (B, T, C, H, W)
        pred_frames = torch.cat([truth[:, :p], pred["frames"].float().clamp(0, 1)], dim=1)  # (B, T, C, H, W)
        self.writer.add_scalar("val/open_loop_mse", torch.mean((pred_frames - truth) ** 2).item(), step)
        grid = torch.cat([truth, pred_frames], dim=3)  # (B, T, C, 2H, W)
        grid = grid.permute(1, 2, 3, 0, 4).flatten(3).cpu()  # (B, T, C, 2H, W) -> (T, C, 2H, B*W)
        self.writer.add_images("val/truth_vs_open_loop", grid, step)
        frames = (grid * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # -> (T, 2H, B*W, C)
        if frames.shape[-1] == 1:
            frames = frames.repeat(3, axis=-1)
        (self.out / "samples").mkdir(exist_ok=True)
        iio.imwrite(self.out / "samples" / f"step_{step:08d}.gif", frames, duration=250, loop=0)

    def close(self) -> None:
        self.writer.close()


def _write_run_json(out: Path, info: dict[str, Any], command: str, resumed: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    keys = ("model", "model_config", "train_config", "dataset")
    run = {k: info[k] for k in keys} | {"command": command, "resumed_by": []}
    if resumed and path.exists():
        run = json.loads(path.read_text()) | {"train_config": info["train_config"]}
        run["resumed_by"] = [*run.get("resumed_by", []), command]
    write_json(path, run)


def _batches(dataset: SequenceDataset, cfg: TrainConfig, dd: _Dist, start: int) -> Iterator[SequenceBatch]:
    """Endless shuffled batches; epoch e is shuffled with seed + e and split between ranks.

    The order depends only on the step, so a resumed run reads exactly what the killed one would have.
    """
    sampler = DistributedSampler(dataset, num_replicas=dd.world, rank=dd.rank, shuffle=True, seed=cfg.seed)
    per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    epoch, skip = divmod(start, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        indices = list(sampler)[skip * cfg.batch_size :]
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=indices,
            num_workers=cfg.num_workers,
            collate_fn=SequenceBatch.collate,
            generator=torch.Generator().manual_seed(cfg.seed + epoch),  # leaves the global RNG alone
        )
        yield from loader
        epoch, skip = epoch + 1, 0


def _contexts(ds: DatasetDir, dataset: SequenceDataset, n: int, n_past: int, seed: int) -> dict[str, np.ndarray] | None:
    """``n`` random windows of ``n_past`` preprocessed real frames from the training episodes."""
    episodes = [ds.load(i) for i in dataset.episodes]
    starts = np.array([max(int(ep.frames.shape[0]) - n_past + 1, 0) for ep in episodes])  # per episode
    if starts.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    flat = np.sort(rng.choice(int(starts.sum()), size=n, replace=bool(starts.sum() < n)))
    bounds = np.cumsum(starts)
    which = np.searchsorted(bounds, flat, side="right")
    frames, actions = [], []
    for e, i in zip(which, flat, strict=True):
        t = int(i - (bounds[e] - starts[e]))
        ep = episodes[e]
        frames.append(dataset.preprocess(np.asarray(ep.frames[t : t + n_past])))  # (n_past, H, W, C)
        actions.append(np.asarray(ep.actions[t : t + n_past - 1], dtype=np.int64))
    return {"frames": np.stack(frames), "actions": np.stack(actions)}  # (N, n_past, H, W, C), (N, n_past-1)


def _val_batch(
    data: Path, seq_len: int, val_fraction: float, options: dict[str, Any] | None = None, n: int = 4
) -> SequenceBatch:
    """``n`` windows spread over the held-out episodes (the training ones if none are held out)."""
    val = SequenceDataset(data, seq_len, split="val", val_fraction=val_fraction, **(options or {}))
    if len(val) == 0:
        val = SequenceDataset(data, seq_len, split="train", val_fraction=val_fraction, **(options or {}))
    idx = np.linspace(0, len(val) - 1, num=min(n, len(val))).round().astype(int)
    return SequenceBatch.collate([val[int(i)] for i in idx])


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """torch / numpy / python RNG states as tensors and plain lists (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
