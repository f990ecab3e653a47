"""Open-loop evaluation of a checkpoint on held-out episodes, with the SAVP protocol.

From ``n_past`` real frames (and the actions between them) the model predicts ``horizon`` frames
under the true actions (:meth:`WorldModel.rollout`). Windows of ``n_past + horizon`` frames come
from the dataset's validation episodes (:meth:`DatasetDir.split`), spread evenly over them.
``context_frames`` > ``n_past`` takes longer windows and drops their first frames, so that models
with different ``n_past`` predict the very same frames (``learned-envs compare``).

* Frames: PSNR and SSIM (scikit-image, ``data_range=1``) per predicted step. A stochastic model
  draws ``n_samples`` futures per window; as in SAVP, per window the *best* and *worst* sample
  are the ones with the highest / lowest metric averaged over the steps (chosen separately for
  PSNR and for SSIM), and *avg* averages every sample. A deterministic model draws one sample.
  PSNR is capped at :data:`PSNR_CAP` dB, since identical frames would give infinity.
* The copy-last baseline repeats the last context frame.
* Pong: centre error (raw 210 x 160 pixels) of the ball and paddles found in the predicted frames
  of the *first* sample (a real sample, never the blurry mean of many) against RAM truth, on
  steps where RAM shows the ball and it is found; ``ball_found`` is the share of those
  RAM-visible steps where it is found. The same for the copy-last frames.
* Reward-sign accuracy (all samples) and termination accuracy (probability > 0.5) per step.

Outputs in ``out``: ``metrics.json``, ``metrics.csv`` (one row per step), ``per_step.png`` and
``prediction.gif`` (truth | prediction | |difference|).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm.auto import tqdm

from dataset_tools.atari import game_spec
from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess
from dataset_tools.ram_truth import GAMES
from dataset_tools.sequences import SequenceBatch, SequenceDataset
from world_models.base import Extractor, WorldModel, pick_device
from world_models.checkpoint import CheckpointConfig, CheckpointError, load_model, resolve_checkpoint
from world_models.objects import pong_objects

log = logging.getLogger(__name__)

PSNR_CAP = 60.0
"""PSNR (dB) of identical frames, which would otherwise be infinite."""
ROWS_PER_PASS = 256
"""Most (window, sample) rows one rollout handles; more samples run in several passes."""
COLUMNS = (
    "step", "psnr_best", "psnr_avg", "psnr_worst", "ssim_best", "ssim_avg", "ssim_worst",
    "psnr_copy", "ssim_copy", "ball_err", "ball_err_copy", "ball_found", "ball_found_copy",
    "player_err", "player_err_copy", "enemy_err", "enemy_err_copy", "ball_visible",
    "reward_acc", "term_acc",
)  # fmt: skip
_ENV_KEYS = ("frameskip", "repeat_action_probability", "full_action_space")


class EvaluationDataError(ValueError):
    """The dataset does not fit the checkpoint (other game, env settings or action space) or is too short."""


@dataclass
class EvalConfig:
    """One evaluation (saved in ``metrics.json``)."""

    checkpoint: str
    """Checkpoint directory, or a run directory (its newest checkpoint)."""
    data: str
    """Dataset directory of the same game and env settings."""
    out: str
    """Where the metrics, plot and GIF go."""
    n_samples: int = 100
    """Futures drawn per window by a stochastic model (a deterministic one draws 1)."""
    horizon: int = 10
    """Predicted steps per window."""
    max_sequences: int = 64
    """Most windows evaluated, spread evenly over the held-out episodes."""
    batch_size: int = 16
    """Windows per rollout batch."""
    seed: int = 0
    """Seed of the samples' generator."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda`` ..."""
    val_fraction: float | None = None
    """Share of episodes held out (the last ones); None: the training run's (``train_config``), else 0.1."""
    gif_sequences: int = 4
    """Windows shown in ``prediction.gif``."""
    context_frames: int | None = None
    """Real frames before the predicted ones in each window; None: the model's ``n_past``. Models with
    different ``n_past`` predict the same frames when given the same value (each sees its last ``n_past``)."""


def check_dataset(config: CheckpointConfig, manifest: dict[str, Any]) -> None:
    """Raise :class:`EvaluationDataError` naming every way the dataset differs from the checkpoint."""
    problems = []
    if config.game is not None and config.game != manifest.get("game"):
        problems.append(f"game: checkpoint {config.game!r}, dataset {manifest.get('game')!r}")
    env_ck, env_ds = config.env or {}, manifest.get("env") or {}
    for key in _ENV_KEYS:
        if key in env_ck and key in env_ds and env_ck[key] != env_ds[key]:
            problems.append(f"{key}: checkpoint {env_ck[key]!r}, dataset {env_ds[key]!r}")
    n_ds = len(manifest.get("action_meanings") or [])
    if n_ds and int(config.n_actions) != n_ds:
        problems.append(f"number of actions: checkpoint {config.n_actions}, dataset {n_ds}")
    elif config.action_meanings and manifest.get("action_meanings") != config.action_meanings:
        problems.append(
            f"action meanings: checkpoint {config.action_meanings}, dataset {manifest['action_meanings']}"
        )
    if problems:
        raise EvaluationDataError("dataset does not match the checkpoint: " + "; ".join(problems))
    missing = [k for k, v in (("game", config.game), ("env", config.env)) if not v]
    if missing:
        log.warning("checkpoint records no %s; cannot check the dataset against it", " / ".join(missing))


def frame_metrics(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM of frames ``(..., C, H, W)`` in [0, 1] -> two arrays of shape ``(...)``.

    ``target`` is broadcast to ``pred``'s shape (e.g. one truth for many samples).
    """
    target = np.broadcast_to(target, pred.shape)
    lead = pred.shape[:-3]
    p = np.moveaxis(pred, -3, -1).reshape(-1, *pred.shape[-2:], pred.shape[-3])  # (..., C, H, W) -> (N, H, W, C)
    t = np.moveaxis(target, -3, -1).reshape(p.shape)
    psnr = np.empty(len(p))
    ssim = np.empty(len(p))
    for i in range(len(p)):
        if np.array_equal(p[i], t[i]):
            psnr[i] = PSNR_CAP
        else:
            psnr[i] = min(peak_signal_noise_ratio(t[i], p[i], data_range=1.0), PSNR_CAP)
        ssim[i] = structural_similarity(t[i], p[i], channel_axis=-1, data_range=1.0)
    return psnr.reshape(lead), ssim.reshape(lead)


def copy_last(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The copy-last baseline: context (B, n_past, C, H, W) -> (B, horizon, C, H, W) of its last frame."""
    return context[:, -1:].expand(-1, horizon, -1, -1, -1)


def best_avg_worst(metric: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, S, K) per-sample metric -> best, avg, worst (B, K); best/worst by the mean over steps."""
    mean = metric.mean(axis=2)  # (B, S)
    rows = np.arange(metric.shape[0])
    return metric[rows, mean.argmax(axis=1)], metric.mean(axis=1), metric[rows, mean.argmin(axis=1)]


def _windows(
    data: Path, preprocess: Preprocess, length: int, max_sequences: int, val_fraction: float
) -> torch.utils.data.Subset:
    """Up to ``max_sequences`` evenly spread windows of ``length`` frames over the held-out episodes."""
    ds = DatasetDir(data)
    if not ds.episode_indices():
        raise EvaluationDataError(f"{data}: holds no episodes")
    split = "val"
    if not ds.split(val_fraction)[1]:
        log.warning("%s: no validation episodes (val_fraction=%g); evaluating on all episodes", data, val_fraction)
        split = "all"
    seqs = SequenceDataset(data, length, split=split, preprocess=preprocess, val_fraction=val_fraction)
    if len(seqs) == 0:
        raise EvaluationDataError(f"{data}: no {split} episode has the {length} frames n_past + horizon needs")
    pick = np.unique(np.linspace(0, len(seqs) - 1, min(max_sequences, len(seqs))).round().astype(int))
    return torch.utils.data.Subset(seqs, pick.tolist())


def _objects(frames: torch.Tensor, preprocess: Preprocess) -> dict[str, np.ndarray]:
    b, k = frames.shape[:2]
    found = pong_objects.find_objects(frames.reshape(b * k, *frames.shape[2:]), preprocess)  # (B*K, C, H, W)
    return {name: v.reshape(b, k, 3) for name, v in found.items()}  # (B*K, 3) -> (B, K, 3)


def _object_errors(
    found: dict[str, np.ndarray], truth: dict[str, np.ndarray], acc: dict[str, list[np.ndarray]], suffix: str
) -> None:
    """Append (B, K) errors of ``found`` vs ``truth`` to ``acc`` under ``<object>_err<suffix>``."""
    ball_seen = truth["ball"][..., 0] > 0  # (B, K)
    for name in pong_objects.OBJECTS:
        err = pong_objects.centre_errors(found[name].reshape(-1, 3), truth[name].reshape(-1, 3)).reshape(
            ball_seen.shape
        )
        if name == "ball":
            acc.setdefault("ball_found" + suffix, []).append(np.where(ball_seen, found["ball"][..., 0], np.nan))
        acc.setdefault(f"{name}_err{suffix}", []).append(err)


def _repeat(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, ...) -> (n*B, ...), sample-major: row s*B + i is sample s of window i."""
    return x.repeat(n, *([1] * (x.dim() - 1)))


def _drop_first(batch: SequenceBatch, n: int) -> SequenceBatch:
    """The windows without their first ``n`` frames (and the actions, rewards ... that follow them)."""
    if n == 0:
        return batch
    return SequenceBatch(  # (B, T, ...) -> (B, T - n, ...); optional fields (motion targets) may be None
        **{k: v[:, n:] if v is not None else None for k, v in batch.__dict__.items()}
    )


def _evaluate_batch(
    model: WorldModel,
    batch: SequenceBatch,
    horizon: int,
    n_samples: int,
    gen: torch.Generator,
    pong: Preprocess | None,
) -> dict[str, Any]:
    """Every (B, K) metric of one batch of windows, and the first sample's frames."""
    p, k = model.cfg.n_past, horizon
    frames, actions = batch.frames, batch.actions  # (B, P+K, C, H, W), (B, P+K-1)
    context, target = frames[:, :p], frames[:, p:]
    b = frames.shape[0]
    per_pass = max(1, ROWS_PER_PASS // b)
    psnr, ssim, rewards, terms, first = [], [], [], [], None
    target_np = target.cpu().numpy()
    ctx_actions, future = actions[:, : p - 1], actions[:, p - 1 : p - 1 + k]  # (B, P-1), (B, K)
    for s0 in range(0, n_samples, per_pass):
        n = min(per_pass, n_samples - s0)
        out = model.rollout(_repeat(context, n), _repeat(ctx_actions, n), _repeat(future, n), generator=gen)
        pred = out["frames"].float().clamp(0, 1).reshape(n, b, k, *frames.shape[2:])  # (n*B, K, ...) -> (n, B, K, ...)
        first = pred[0].cpu() if first is None else first
        ps, ss = frame_metrics(pred.cpu().numpy(), target_np[None])
        psnr.append(ps)
        ssim.append(ss)
        rewards.append(out["rewards"].reshape(n, b, k).cpu())
        terms.append(out["terminated"].reshape(n, b, k).cpu())
    psnr_s = np.concatenate(psnr).transpose(1, 0, 2)  # (S, B, K) -> (B, S, K)
    ssim_s = np.concatenate(ssim).transpose(1, 0, 2)
    acc: dict[str, Any] = {}
    for name, metric in (("psnr", psnr_s), ("ssim", ssim_s)):
        for kind, v in zip(("best", "avg", "worst"), best_avg_worst(metric), strict=True):
            acc[f"{name}_{kind}"] = [v]
    copy = copy_last(context, k)
    ps, ss = frame_metrics(copy.cpu().numpy(), target_np)
    acc["psnr_copy"], acc["ssim_copy"] = [ps], [ss]
    true_r = torch.sign(batch.rewards[:, p - 1 : p - 1 + k]).cpu()  # (B, K)
    true_t = batch.terminated[:, p - 1 : p - 1 + k].cpu() > 0.5
    pred_r = torch.sign(torch.cat(rewards))  # (S, B, K)
    acc["reward_acc"] = [(pred_r == true_r).float().mean(0).numpy()]
    acc["_reward_nonzero"] = [np.where(true_r.numpy() != 0, (pred_r == true_r).float().mean(0).numpy(), np.nan)]
    acc["term_acc"] = [((torch.cat(terms) > 0.5) == true_t).float().mean(0).numpy()]
    if pong is not None:
        ram = batch.ram[:, p:].cpu().numpy()  # (B, K, 128)
        truth = {n: v.reshape(b, k, 3) for n, v in pong_objects.ram_centres(ram.reshape(b * k, 128)).items()}
        _object_errors(_objects(first, pong), truth, acc, "")
        _object_errors(_objects(copy.cpu(), pong), truth, acc, "_copy")
        acc["ball_visible"] = [truth["ball"][..., 0]]
    return {"metrics": acc, "first": first}


def _mean(v: np.ndarray, axis: int | None = None) -> Any:
    """Mean ignoring NaN, NaN (not a warning) where nothing is left."""
    count = np.sum(~np.isnan(v), axis=axis)
    total = np.nansum(v, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def _finite(x: Any) -> Any:
    """NaN -> None, numpy -> Python, for JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    return None if isinstance(x, float) and math.isnan(x) else x


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    n_samples: int = 100,
    horizon: int = 10,
    max_sequences: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "auto",
    val_fraction: float | None = None,
    gif_sequences: int = 4,
    context_frames: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data``'s held-out episodes; write metrics, plot and GIF to ``out``.

    Returns the content of ``metrics.json``: ``per_step`` (one dict per step with :data:`COLUMNS`),
    ``overall`` (the same pooled over steps), ``config`` and checkpoint information.
    """
    cfg = EvalConfig(str(checkpoint), str(data), str(out), n_samples, horizon, max_sequences, batch_size, seed,
                     device, val_fraction, gif_sequences, context_frames)  # fmt: skip
    if horizon < 1 or n_samples < 1 or max_sequences < 1 or batch_size < 1:
        raise ValueError("horizon, n_samples, max_sequences and batch_size must be at least 1")
    dev = pick_device(device)
    model, config = load_model(checkpoint, dev)
    if isinstance(model, Extractor):
        raise EvaluationDataError(
            f"{checkpoint}: {config.model} is an object extractor, it cannot roll out; score it with "
            "world_models.space.evaluate.evaluate_space (learned-envs evaluate does)"
        )
    check_dataset(config, DatasetDir(data).read_manifest())
    preprocess = Preprocess.from_dict(config.preprocess)
    h, w, c = preprocess.shape
    if tuple(config.frame_shape) != (c, h, w):
        raise CheckpointError(
            f"{checkpoint}: frame_shape {config.frame_shape} differs from its preprocessing {(c, h, w)}"
        )
    if val_fraction is None:
        val_fraction = float((config.train_config or {}).get("val_fraction", 0.1))
        cfg.val_fraction = val_fraction
    n_past = model.cfg.n_past
    skip = 0 if context_frames is None else context_frames - n_past
    if skip < 0:
        raise ValueError(f"context_frames={context_frames} is fewer than the model's n_past={n_past}")
    subset = _windows(Path(data), preprocess, n_past + skip + horizon, max_sequences, val_fraction)
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=SequenceBatch.collate)
    samples = n_samples if model.stochastic else 1
    pong = preprocess if game_spec(config.game).paddle_rally else None
    gen = torch.Generator(device=dev).manual_seed(seed)
    acc: dict[str, list[np.ndarray]] = {}
    gif: list[tuple[torch.Tensor, torch.Tensor]] = []
    log.info("evaluating %s on %d windows of %s (%d sample(s) each)", config.model, len(subset), data, samples)
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
        batch = _drop_first(batch, skip)
        result = _evaluate_batch(model, batch.to(dev), horizon, samples, gen, pong)
        for key, values in result["metrics"].items():
            acc.setdefault(key, []).extend(values)
        if len(gif) < gif_sequences:
            gif.append((batch.frames[: gif_sequences - len(gif)], result["first"][: gif_sequences - len(gif)]))
    stacked = {k: np.concatenate(v).astype(np.float64) for k, v in acc.items()}  # each (N, K)
    per_step = []
    for step in range(horizon):
        row: dict[str, Any] = {key: math.nan for key in COLUMNS}
        row["step"] = step + 1
        for key, v in stacked.items():
            if key in row:
                row[key] = float(np.sum(v[:, step])) if key == "ball_visible" else float(_mean(v[:, step]))
        per_step.append(row)
    overall = {key: (float(np.sum(v)) if key == "ball_visible" else float(_mean(v))) for key, v in stacked.items()}
    overall["reward_nonzero_acc"] = overall.pop("_reward_nonzero")
    overall["reward_nonzero_count"] = int(np.sum(~np.isnan(stacked["_reward_nonzero"])))
    for row in per_step:
        row.pop("_reward_nonzero", None)
    result = {
        "checkpoint": str(resolve_checkpoint(checkpoint)),
        "step": config.step,
        "model": config.model,
        "stochastic": bool(model.stochastic),
        "samples_per_window": samples,
        "windows": len(subset),
        "n_past": n_past,
        "game": config.game,
        "config": dataclasses.asdict(cfg) | {"device": str(dev)},
        "per_step": per_step,
        "overall": overall,
    }
    extractor = getattr(model, "object_extractor", None)
    if extractor is not None and config.game in GAMES:  # a frames-only extractor, scored against the RAM
        from world_models.objects.scoring import score_extractor

        held_out = DatasetDir(data).split(val_fraction)[1] or DatasetDir(data).episode_indices()
        result["objects"] = score_extractor(extractor, data, held_out)
    _write(Path(out), result, gif)
    return _finite(result)


def _write(out: Path, result: dict[str, Any], gif: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    from world_models.evaluation.plot import plot_per_step, write_prediction_gif

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_finite(result), indent=1))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in result["per_step"]:
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    plot_per_step(result["per_step"], out / "per_step.png", title=f"{result['model']} (step {result['step']})")
    if gif:
        truth = torch.cat([t for t, _ in gif])  # (G, P+K, C, H, W)
        pred = torch.cat([p for _, p in gif])  # (G, K, C, H, W)
        write_prediction_gif(truth.numpy(), pred.numpy(), out / "prediction.gif")
    log.info("wrote metrics.json, metrics.csv, per_step.png and prediction.gif to %s", out)
