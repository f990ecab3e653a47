"""Rank 0's record of a run: ``run.json``, ``train_log.csv``, TensorBoard, rollout pictures."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from dataset_tools.dataset import write_json
from dataset_tools.sequences import SequenceBatch
from world_models.base import Model, WorldModel
from world_models.checkpoint import CheckpointConfig


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
    def rollout(self, step: int, model: Model, batch: SequenceBatch) -> None:
        """Ground truth (top row) vs open-loop prediction from the first n_past frames (bottom row), or
        the model's own :meth:`~Model.summary_images` (``val/summary``, ``samples/step_XXXXXXXX.png``);
        nothing for a model that neither draws a summary nor imagines (an extractor without pictures)."""
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
        if not isinstance(model, WorldModel):
            model.train(was_training)
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


def write_run_json(out: Path, info: CheckpointConfig, command: str, resumed: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    run = {
        "model": info.model,
        "model_config": info.model_config,
        "train_config": info.train_config,
        "dataset": info.dataset,
        "command": command,
        "resumed_by": [],
    }
    if resumed and path.exists():
        run = json.loads(path.read_text()) | {"train_config": info.train_config}
        run["resumed_by"] = [*run.get("resumed_by", []), command]
    write_json(path, run)
