"""The one trainer every world model uses: ``train(model_name, data, out, overrides)``.

A run directory holds::

    run.json        model name, model and train configs, dataset path + manifest hash, command
    train_log.csv   step, loss, the model's log keys, grad_norm, wall_time, frames_per_s
    tb/             TensorBoard scalars, and ground truth (top) vs open-loop rollout (bottom) images
    samples/        the same rollouts as GIFs, ``step_XXXXXXXX.gif``
    checkpoints/    the newest ``keep_last`` checkpoints (see :mod:`world_models.checkpoint`)
    eval_log.csv    object extractors with ``eval_every``: held-out scores (:mod:`world_models.space.evaluate`),
    eval/           and the newest evaluation's metrics.json, z_what classifiers and PCA plot

A model with an adversary (:meth:`Model.adversary`, e.g. savp's discriminators) keeps it out of
the main optimizer: after each main step, a second Adam (``adversary_lr``) steps it on
:meth:`Model.adversary_loss`; its logs join the others and its state is checkpointed.

Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel (nccl on CUDA, gloo
on CPU): each rank reads its own share of every epoch and rank 0 writes everything.
"""

from __future__ import annotations

import logging
import math
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError
from dataset_tools.sequences import SequenceDataset
from world_models.base import Extractor, Model, ModelConfig, model_class
from world_models.checkpoint import (
    CheckpointConfig,
    checkpoint_dirs,
    load_model,
    load_training_state,
    read_config,
    save_checkpoint,
)
from world_models.config import apply_overrides, expand_grid, run_name, to_dict
from world_models.training.config import TrainConfig, TrainError, TrainingDiverged, resolve_configs
from world_models.training.data import batches, start_contexts, val_batch
from world_models.training.distributed import Dist, LossModule, adversary_step, distributed, train_device
from world_models.training.runlog import RunLog, write_run_json
from world_models.training.weights import init_weights, rng_state, seed_all, set_rng_state

log = logging.getLogger(__name__)


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
    cfg, mcfg = resolve_configs(cls, out, overrides, resume)
    command = shlex.join(
        ["learned-envs", "train", "--model", model_name, "--data", str(data), "--out", str(out)]
        + (["--resume"] if resume else [])
        + list(overrides)
    )
    ckpt = checkpoint_dirs(out)[-1] if checkpoint_dirs(out) else None
    if ckpt is not None and not resume:
        raise TrainError(f"{out} already holds a run ({ckpt.name}); pass --resume to continue it, or another --out")
    start = read_config(ckpt).step if ckpt is not None else 0
    if resume and ckpt is None:
        log.warning("%s holds no checkpoint to resume from; starting at step 0", out)
    if ckpt is not None and start >= cfg.steps:
        log.info("%s: already trained for %d of %d steps", out, start, cfg.steps)
        return ckpt
    with distributed() as dd:
        return _train(cls, cfg, mcfg, data, out, ckpt, start, command, progress, dd)


def _train(
    cls: type[Model],
    cfg: TrainConfig,
    mcfg: ModelConfig,
    data: Path,
    out: Path,
    ckpt: Path | None,
    start: int,
    command: str,
    progress: bool,
    dd: Dist,
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
    device = train_device(cfg.device, dd)
    seed_all(cfg.seed + dd.rank)
    if ckpt is None:
        model = cls(mcfg, frame_shape, n_actions).to(device)
        if cfg.init_from:
            init_weights(model, cfg.init_from, device)
    else:
        model, _ = load_model(ckpt, device)
        model.train()
    try:
        model.bind_data(manifest.get("game"), dataset.preprocess)
    except ValueError as err:
        raise TrainError(f"{data}: {err}") from None
    if ckpt is None:  # parts fitted from the data alone, before the first update (a resumed run has them)
        fitted = model.prefit(dataset, progress=progress and dd.main)
        if fitted:
            log.info("prefit: %s", ", ".join(f"{k} {v:.4g}" for k, v in fitted.items()))
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
    info = CheckpointConfig(
        model=cls.name,
        model_config=to_dict(mcfg),
        train_config=to_dict(cfg),
        frame_shape=frame_shape,
        n_actions=n_actions,
        action_meanings=list(manifest["action_meanings"]),
        game=manifest.get("game"),
        env=dict(manifest["env"]),
        preprocess=dataset.preprocess.to_dict(),
        dataset=dataset_info,
        command=command,
        metrics=dict(state.get("metrics", {})),
    )
    run_log, context, val_windows, evaluator = None, None, None, None
    if dd.main:
        write_run_json(out, info, command, resumed=ckpt is not None)
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
        context = start_contexts(ds, dataset, cfg.n_contexts, mcfg.n_past, cfg.seed) if cfg.n_contexts else None
        val_windows = val_batch(data, seq_len, cfg.val_fraction, options).to(device) if cfg.image_every else None
        evaluator = extractor_evaluator(model, cfg, data, out, dataset.preprocess, manifest.get("game"), start)

    last_good = ckpt
    wall_time = float(state.get("wall_time", 0.0))

    def save(step: int) -> Path:
        nonlocal last_good
        rng = rng_state()
        states = [rng] * dd.world
        if dd.world > 1:
            dist.all_gather_object(states, rng)
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingDiverged(f"non-finite weights at step {step}; last good checkpoint: {last_good}")
        path = out / "checkpoints" / f"step_{step:08d}"
        if dd.main:
            extra = {"step": step, "rng": states, "wall_time": wall_time, "metrics": info.metrics}
            if adv_optimizer is not None:
                extra["adversary_optimizer"] = adv_optimizer.state_dict()
            path = save_checkpoint(out, step, model, info, optimizer, extra, context, cfg.keep_last)
        last_good = path
        return path

    if "rng" in state and dd.rank < len(state["rng"]):
        set_rng_state(state["rng"][dd.rank])
    stream = batches(dataset, cfg, dd, start)
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
            batch = next(stream).to(device)
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
                adv_value = adversary_step(adv_loss, adv_optimizer, adversary_params, max_norm, dd)
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
                info.metrics = {k: v / n_window for k, v in window.items()}
                if run_log is not None:
                    run_log.scalars(step, info.metrics, wall_time, n_window * frames_per_step / max(busy, 1e-9))
                    bar.set_postfix(loss=f"{info.metrics['loss']:.4g}", refresh=False)
                window, n_window, busy, tick = {}, 0, 0.0, now
            if run_log is not None and val_windows is not None and step % cfg.image_every == 0:
                run_log.rollout(step, model, val_windows)
            if run_log is not None and evaluator is not None and step % cfg.eval_every == 0:
                evaluator(step, run_log.writer)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                final = save(step)
        if dd.world > 1:
            dist.barrier()
    finally:
        bar.close()
        stream.close()
        if run_log is not None:
            run_log.close()
    assert final is not None
    return final


def extractor_evaluator(
    model: Model, cfg: TrainConfig, data: Path, out: Path, preprocess: Any, game: str | None, start: int
) -> Any:
    """Rank 0's ``eval_every`` evaluator of an object extractor, or None."""
    if not cfg.eval_every:
        return None
    if not isinstance(model, Extractor):
        log.warning("eval_every=%d: %s is no object extractor; nothing to evaluate", cfg.eval_every, model.name)
        return None
    from world_models.space.evaluate import TrainEvaluator

    try:
        return TrainEvaluator(model, data, out, preprocess, str(game), cfg.val_fraction, cfg.eval_frames, start)
    except ValueError as err:
        raise TrainError(f"eval_every: {err}") from None
