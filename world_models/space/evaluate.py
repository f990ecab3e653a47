"""Scoring an object extractor's checkpoint: ``learned-envs evaluate`` on it, and the trainer's ``eval_every``.

Both feed :func:`world_models.space.metrics.evaluate_extractor` the dataset's held-out episodes (the last
ones, ``val_fraction`` of the training run) at the checkpoint's own preprocessing, i.e. exactly the frames
the model trained on (a dataset stored at 64 x 64 is read at the model's 128 x 128), and score the model's
:meth:`~world_models.space.SpaceTime.infer` against RAM truth. The few-shot classifiers see
:func:`~world_models.space.object_features` (``z_what`` alone by default), the features
:func:`~world_models.space.scene_description` hands them, so a saved ``z_what-classifier_{n}.json`` (read by :func:`~world_models.space.classifier.load_classifier`)
can be passed to it as ``z_classifier`` with the same ``only_z_what``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from dataset_tools.dataset import DatasetDir, write_json
from dataset_tools.preprocess import Preprocess
from world_models.base import Extractor, WorldModel, pick_device
from world_models.checkpoint import load_model, resolve_checkpoint
from world_models.space.metrics import CLASSIFIER_FILE, ExtractorEvalConfig, dataset_batches, evaluate_extractor
from world_models.space.scene import object_features

log = logging.getLogger(__name__)

EVAL_LOG = "eval_log.csv"
"""The trainer's ``eval_every`` rows (:func:`headline` per evaluation) in the run directory."""


def extractor_infer(model: WorldModel, only_z_what: bool = True) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """``infer`` for :func:`evaluate_extractor`: frames (B, 3, S, S) -> ``z_pres`` (B, N), ``z_where`` (B, N, 4)
    and as ``z_what`` the classifier features (B, N, F) of :func:`object_features` (``only_z_what``)."""
    device = next(model.parameters()).device

    def infer(frames: torch.Tensor) -> dict[str, torch.Tensor]:
        scene = model.infer(frames.to(device))  # type: ignore[operator]
        return {"z_pres": scene.z_pres, "z_where": scene.z_where, "z_what": object_features(scene, only_z_what)}

    return infer


def held_out(data: str | Path, val_fraction: float) -> tuple[list[int], int]:
    """The held-out episode indices of ``data`` and their number of frames; ValueError when there are none."""
    ds = DatasetDir(data)
    val = ds.split(val_fraction)[1]
    if not val:
        n = len(ds.episode_indices())
        raise ValueError(f"{data}: no held-out episode (val_fraction={val_fraction:g} of {n} episode(s))")
    return val, sum(int(ds.load(ep).frames.shape[0]) for ep in val)


def evaluate_space(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    max_frames: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    val_fraction: float | None = None,
    only_z_what: bool = True,
) -> dict[str, Any]:
    """Score an extractor checkpoint on ``data``'s held-out episodes (up to ``max_frames`` frames, in order).

    Writes to ``out`` ``metrics.json`` (every metric of :mod:`world_models.space.metrics` plus the model,
    step and split), the few-shot classifiers :data:`CLASSIFIER_FILE` and ``z_what_pca.png``, and returns
    the metrics. ``val_fraction`` None takes the training run's.
    """
    from world_models.evaluation.evaluate import EvaluationDataError, check_dataset

    model, config = load_model(checkpoint, pick_device(device))
    if not isinstance(model, Extractor):
        raise EvaluationDataError(f"{checkpoint}: {config.model} is no object extractor (use evaluate)")
    check_dataset(config, DatasetDir(data).read_manifest())
    preprocess = Preprocess.from_dict(config.preprocess)
    if val_fraction is None:
        val_fraction = float((config.train_config or {}).get("val_fraction", 0.1))
    try:
        episodes, frames = held_out(data, val_fraction)
    except ValueError as err:
        raise EvaluationDataError(str(err)) from None
    log.info("%s at step %s on %d held-out frames of episodes %s", config.model, config.step, frames, episodes)
    batches = dataset_batches(data, "val", batch_size, preprocess, val_fraction)
    cfg = ExtractorEvalConfig(max_frames=max_frames, seed=seed)
    result = evaluate_extractor(batches, extractor_infer(model, only_z_what), config.game, preprocess, out, cfg)
    result = {
        "model": config.model,
        "step": config.step,
        "checkpoint": str(resolve_checkpoint(checkpoint)),
        "data": str(data),
        "preprocess": preprocess.to_dict(),
        "val_fraction": val_fraction,
        "held_out": {"episodes": episodes, "frames": frames},
        "only_z_what": only_z_what,
        **result,
    }
    write_json(Path(out) / "metrics.json", result)
    return result


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The numbers the bar and the logs watch: centre F-score per class, AP, counting, 4-shot accuracy, AMI."""

    def num(x: Any) -> float:
        return math.nan if x is None else float(x)

    row = {f"f1_{c}": num(s["f1"]) for c, s in result["boxes"]["centre"]["classes"].items()}
    row["f1_all"] = num(result["boxes"]["centre"]["all"]["f1"])
    row["ap_mean"] = num(result["ap"]["mean"])
    row["count_acc"] = num(result["counting"]["accuracy"])
    for n, score in result["few_shot"].items():
        row[f"few_shot_{n}"] = num(score.get("accuracy"))
    row["ami"] = num(result["clustering"]["ami"])
    return row


def format_table(result: dict[str, Any]) -> str:
    """A short text table of :func:`evaluate_space`'s result."""

    def f(x: Any) -> str:
        return "   -" if x is None else f"{x:.3f}"

    centre, iou = result["boxes"]["centre"], result["boxes"]["iou"]
    head = f"{'class':<8} {'P':>6} {'R':>6} {'F':>6} {'F(IoU)':>7} {'truth':>6} {'pairs':>6}"
    lines = [f"centre <= {centre['threshold']:g} raw px at z_pres >= {result['config']['threshold']:g}", head]
    for c in result["classes"]:
        s = centre["classes"][c]
        pairs = result["z_what_pairs"].get(c, 0)
        truth = s["tp"] + s["fn"]
        lines.append(
            f"{c:<8} {f(s['precision']):>6} {f(s['recall']):>6} {f(s['f1']):>6} {f(iou['classes'][c]['f1']):>7}"
            f" {truth:>6} {pairs:>6}"
        )
    a = centre["all"]
    lines.append(
        f"{'all':<8} {f(a['precision']):>6} {f(a['recall']):>6} {f(a['f1']):>6} {f(iou['all']['f1']):>7}"
        f" {a['tp'] + a['fn']:>6} {sum(result['z_what_pairs'].values()):>6}"
    )
    lines.append("(truth: visible RAM objects; pairs: matched detections whose z_what the classifiers see)")
    shots = ", ".join(f"{n}: {f(s.get('accuracy'))}" for n, s in result["few_shot"].items())
    lines.append(
        f"AP mean {f(result['ap']['mean'])} (IoU 0.1..0.9), counting accuracy {f(result['counting']['accuracy'])}"
    )
    lines.append(f"few-shot z_what accuracy {shots}")
    lines.append(f"KMeans AMI {f(result['clustering']['ami'])}, ARI {f(result['clustering']['ari'])}")
    return "\n".join(lines)


class TrainEvaluator:
    """The trainer's ``eval_every`` (rank 0): :func:`evaluate_extractor` of the model being trained on the
    first ``frames`` held-out frames (read once), artifacts in ``out/eval/``, :func:`headline` to TensorBoard
    (``eval/*``) and :data:`EVAL_LOG`. Rows past ``start_step`` (a resumed run trains them again) are dropped."""

    def __init__(
        self,
        model: WorldModel,
        data: Path,
        out: Path,
        preprocess: Preprocess,
        game: str,
        val_fraction: float,
        frames: int,
        start_step: int = 0,
    ) -> None:
        held_out(data, val_fraction)  # ValueError when there is nothing to score
        self.model, self.out, self.preprocess, self.game = model, out, preprocess, game
        batches = dataset_batches(data, "val", min(frames, 64), preprocess, val_fraction)
        self.batches = list(islice(batches, math.ceil(frames / min(frames, 64))))
        self.cfg = ExtractorEvalConfig(max_frames=frames, kmeans_init=3)
        self.csv = out / EVAL_LOG
        if self.csv.exists():
            with self.csv.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
            self._write(rows, "w")

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        if not rows:
            if mode == "w":
                self.csv.unlink()
            return
        with self.csv.open(mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def __call__(self, step: int, writer: Any) -> dict[str, float]:
        """Evaluate now; ``writer`` is a TensorBoard ``SummaryWriter``. Returns the logged row."""
        infer = extractor_infer(self.model)
        result = evaluate_extractor(self.batches, infer, self.game, self.preprocess, self.out / "eval", self.cfg)
        row = headline(result)
        for key, value in row.items():
            writer.add_scalar(f"eval/{key}", value, step)
        self._write([{"step": step, "frames": result["frames"], **row}], "a" if self.csv.exists() else "w")
        log.info("step %d eval: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
        return row


__all__ = [
    "CLASSIFIER_FILE",
    "EVAL_LOG",
    "TrainEvaluator",
    "evaluate_space",
    "extractor_infer",
    "format_table",
    "headline",
    "held_out",
]
