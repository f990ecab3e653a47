"""One table of several trained world models on the same held-out episodes (``learned-envs compare``).

Every run (a training run directory, its newest checkpoint, or a checkpoint directory) is
evaluated by :func:`world_models.evaluation.evaluate.evaluate` with the same settings: same dataset, same
held-out episodes (one ``val_fraction`` for all), same horizon, samples per window and seed.
Beside the per-step metrics each model gets

* ``params``: its parameter count (:meth:`WorldModel.parameter_counts`),
* ``train_frames_per_s``: the median of its run's ``train_log.csv`` ``frames_per_s`` column
  (None when the checkpoint has no run beside it, e.g. a shipped asset),
* ``imagined_steps_per_s``: env steps per second of ``start`` plus ``steps`` x (``step`` +
  ``decode``) on ``speed_envs`` envs at once on the evaluation device, median of ``speed_repeats``
  timed repeats after one warm-up (:func:`imagined_steps_per_s`).

Outputs in ``out`` (:mod:`world_models.evaluation.compare_report`): ``compare.json`` (everything),
``compare.csv`` (long format: one row per model and predicted step, then the copy-last baseline as
model ``copy last frame``), ``compare.md`` (the Markdown summary table), ``compare.png`` (PSNR avg,
SSIM avg and ball error per step of every model, copy-last dashed), and per model a directory with
its own ``evaluate`` outputs (``metrics.json``, ``per_step.png``, ``prediction.gif`` ...).

Every model predicts the same frames: the windows hold ``max(n_past) + horizon`` frames (the
evaluator's ``context_frames``) and a model with a shorter ``n_past`` sees only the latest of the
context frames, so the copy-last baseline is the same for all.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceDataset
from world_models.base import ModelConfig, WorldModel, pick_device
from world_models.checkpoint import load_model, read_config, resolve_checkpoint
from world_models.evaluation.compare_report import write_report
from world_models.evaluation.evaluate import EvaluationDataError, check_dataset, evaluate
from world_models.evaluation.plot import LOG_NAME, read_train_log

log = logging.getLogger(__name__)


class CompareError(ValueError):
    """The runs cannot be compared (e.g. they see frames at different resolutions)."""


def _named_dir(ckpt: Path) -> Path:
    """The directory that names a run: the run directory, or the checkpoint directory of a bare checkpoint."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt


def _unique(dirs: list[Path]) -> list[str]:
    """The directories' names; repeated names get their parent directory's name, then a counter."""
    names = [d.name for d in dirs]
    names = [f"{d.parent.name}/{n}" if names.count(n) > 1 else n for d, n in zip(dirs, names, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _describe(pre: Preprocess) -> str:
    colour = "gray" if pre.grayscale else "RGB"
    return f"{pre.size[0]}x{pre.size[1]} {colour}, crop {list(pre.crop) if pre.crop else 'none'}"


def train_frames_per_s(ckpt: Path) -> float | None:
    """Median ``frames_per_s`` of the ``train_log.csv`` of the run that holds ``ckpt`` (None: no log)."""
    if ckpt.parent.name != "checkpoints":
        return None
    path = ckpt.parent.parent / LOG_NAME
    if not path.exists():
        return None
    values = read_train_log(path).get("frames_per_s")
    if values is None or np.all(np.isnan(values)):
        return None
    return float(np.nanmedian(values))


def _speed_context(
    data: Path, preprocess: Preprocess, n_past: int, val_fraction: float, n_envs: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real start contexts for the speed test: up to 8 windows of the held-out episodes, tiled to ``n_envs``."""
    seqs = SequenceDataset(data, n_past, split="val", preprocess=preprocess, val_fraction=val_fraction)
    if len(seqs) == 0:
        seqs = SequenceDataset(data, n_past, split="all", preprocess=preprocess, val_fraction=val_fraction)
    pick = np.unique(np.linspace(0, len(seqs) - 1, min(8, len(seqs))).round().astype(int))
    items = [seqs[int(i)] for i in pick]
    rows = [items[i % len(items)] for i in range(n_envs)]
    frames = torch.stack([r["frames"] for r in rows])  # (n_envs, n_past, C, H, W)
    actions = torch.stack([r["actions"] for r in rows])  # (n_envs, n_past - 1)
    return frames, actions


@torch.no_grad()
def imagined_steps_per_s(
    model: WorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    steps: int = 10,
    repeats: int = 5,
    seed: int = 0,
) -> float:
    """Imagined env steps per second: ``start`` from ``frames`` (B, n_past, C, H, W) / ``actions``
    (B, n_past - 1), then ``steps`` x (``step`` with random actions + ``decode``), B envs at once.

    One untimed warm-up, then the median of ``repeats`` timed runs of B x ``steps`` env steps.
    """
    device = next(model.parameters()).device
    frames, actions = frames.to(device), actions.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    b = frames.shape[0]
    future = torch.randint(0, model.n_actions, (b, steps), generator=gen, device=device)  # (B, steps)

    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        state = model.start(frames, actions, generator=gen)
        for k in range(steps):
            state = model.step(state, future[:, k], generator=gen).state
            model.decode(state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    run()
    times = [run() for _ in range(repeats)]
    return b * steps / statistics.median(times)


def _resolve(runs: Sequence[str | Path], manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run's checkpoint and config, checked against the dataset and each other, before any evaluation."""
    entries = []
    for run in runs:
        ckpt = resolve_checkpoint(run)
        config = read_config(ckpt)
        try:
            check_dataset(config, manifest)
        except EvaluationDataError as err:
            raise EvaluationDataError(f"{run}: {err}") from None
        entries.append({"given": Path(run), "ckpt": ckpt, "config": config})
    pres = [Preprocess.from_dict(e["config"].preprocess) for e in entries]
    if len(set(pres)) > 1:
        seen = "; ".join(f"{e['given']}: {_describe(p)}" for e, p in zip(entries, pres, strict=True))
        raise CompareError(f"the runs see frames at different resolutions, so PSNR / SSIM would not compare: {seen}")
    labels = _unique([_named_dir(e["ckpt"]) for e in entries])
    for entry, label in zip(entries, labels, strict=True):
        entry["name"] = label
    return entries


def _common_val_fraction(entries: list[dict[str, Any]]) -> float:
    values = [float((e["config"].train_config or {}).get("val_fraction", 0.1)) for e in entries]
    if len(set(values)) > 1:
        log.warning("runs held out different shares of episodes (%s); all are evaluated with %g", values, values[0])
    return values[0]


def _reusable(path: Path, settings: dict[str, Any], ckpt: Path, step: Any) -> dict[str, Any] | None:
    """The ``metrics.json`` at ``path`` if it was computed for this checkpoint and step with ``settings``."""
    try:
        old = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    cfg = old.get("config") or {}
    same = all(cfg.get(k) == v for k, v in settings.items())
    return old if same and old.get("checkpoint") == str(ckpt) and old.get("step") == step else None


def compare(
    runs: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    n_samples: int = 100,
    horizon: int = 10,
    max_sequences: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "auto",
    val_fraction: float | None = None,
    speed_envs: int = 64,
    speed_steps: int = 10,
    speed_repeats: int = 5,
    reuse: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every run in ``runs`` on ``data``'s held-out episodes with the same settings; write the
    comparison (``compare.json`` / ``.csv`` / ``.md`` / ``.png``) to ``out`` and return ``compare.json``'s content.

    ``val_fraction`` None: the first run's (all runs then use it). ``reuse``: take a model's
    ``OUT/NAME/metrics.json`` when it holds the same checkpoint and step evaluated with the same
    settings instead of evaluating again. Raises :class:`CheckpointError` (a run without a
    checkpoint), :class:`EvaluationDataError` (data that does not fit a run) or
    :class:`CompareError` (runs at different resolutions) before evaluating anything.
    """
    if not runs:
        raise CompareError("give at least one run to compare")
    if speed_envs < 1 or speed_steps < 1 or speed_repeats < 1:
        raise ValueError("speed_envs, speed_steps and speed_repeats must be at least 1")
    data, out = Path(data), Path(out)
    entries = _resolve(runs, DatasetDir(data).read_manifest())
    if val_fraction is None:
        val_fraction = _common_val_fraction(entries)
    context_frames = max(int(e["config"].model_config.get("n_past", ModelConfig.n_past)) for e in entries)
    dev = pick_device(device)
    settings = dict(
        data=str(data),
        n_samples=n_samples,
        horizon=horizon,
        max_sequences=max_sequences,
        batch_size=batch_size,
        seed=seed,
        val_fraction=val_fraction,
        context_frames=context_frames,
    )
    models = []
    for entry in tqdm(entries, desc="compare", unit="model", disable=not progress):
        name, ckpt = entry["name"], entry["ckpt"]
        model_out = out / name.replace("/", "__")
        result = _reusable(model_out / "metrics.json", settings, ckpt, entry["config"].step) if reuse else None
        if result is None:
            kwargs = {k: v for k, v in settings.items() if k != "data"}
            result = evaluate(ckpt, data, model_out, device=str(dev), progress=False, **kwargs)
        else:
            log.info("%s: reusing %s", name, model_out / "metrics.json")
        model, config = load_model(ckpt, dev)
        pre = Preprocess.from_dict(config.preprocess)
        frames, actions = _speed_context(data, pre, model.cfg.n_past, val_fraction, speed_envs)
        speed = imagined_steps_per_s(model, frames, actions, speed_steps, speed_repeats, seed)
        models.append(
            {
                "name": name,
                "model": config.model,
                "checkpoint": str(ckpt),
                "checkpoint_step": config.step,
                "params": model.parameter_counts()["total"],
                "train_frames_per_s": train_frames_per_s(ckpt),
                "imagined_steps_per_s": speed,
                "stochastic": result["stochastic"],
                "samples_per_window": result["samples_per_window"],
                "windows": result["windows"],
                "per_step": result["per_step"],
                "overall": result["overall"],
            }
        )
        del model
    copy = [
        {"step": r["step"], **{k: r.get(f"{k}_copy") for k in ("psnr", "ssim", "ball_err", "ball_found")}}
        for r in models[0]["per_step"]
    ]
    if any(m["per_step"][0].get("psnr_copy") != models[0]["per_step"][0].get("psnr_copy") for m in models):
        log.warning("copy-last figures differ between models (different windows); the table shows the first's")
    result = {
        "data": str(data),
        "device": str(dev),
        "settings": settings,
        "speed": {"envs": speed_envs, "steps": speed_steps, "repeats": speed_repeats},
        "models": models,
        "copy_last": copy,
    }
    write_report(out, result)
    return result
