"""Pictures of training runs and evaluations (matplotlib with the Agg backend, imageio for GIFs).

* :func:`plot_runs`: recon and KL losses against step, one line per run, from every
  ``train_log.csv`` under a directory (as the SVG reference's ``plot_svg.py`` does).
* :func:`plot_per_step`: PSNR, SSIM and ball error per predicted step, model against copy-last.
* :func:`write_prediction_gif`: truth | prediction | |difference| per window, one GIF frame per step.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

LOG_NAME = "train_log.csv"
PLOTTED = ("recon", "kl")
"""Columns of ``train_log.csv`` drawn by :func:`plot_runs` (``loss`` when neither exists)."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_train_log(path: Path) -> dict[str, np.ndarray]:
    """A ``train_log.csv`` -> ``{column: (rows,) float array}``; empty cells are NaN."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out = {}
    for key in rows[0]:
        values = []
        for row in rows:
            try:
                values.append(float(row.get(key) or "nan"))
            except ValueError:
                values.append(math.nan)
        out[key] = np.asarray(values)
    return out


def plot_runs(runs_dir: str | Path, out_png: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Plot recon and kl (when logged) against step for every run under ``runs_dir``.

    Each ``train_log.csv`` found (at any depth) is one run, labelled by its directory relative to
    ``runs_dir``. Returns ``{label: {column: values}}``. Raises FileNotFoundError if there is none.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    logs = sorted(root.rglob(LOG_NAME))
    if not logs:
        raise FileNotFoundError(f"{root}: no {LOG_NAME} found in it or below it")
    runs = {}
    for path in logs:
        label = str(path.parent.relative_to(root)) if path.parent != root else root.name
        data = read_train_log(path)
        if "step" not in data:
            log.warning("%s: no 'step' column; skipped", path)
            continue
        runs[label] = data
    keys = [k for k in PLOTTED if any(k in d for d in runs.values())] or ["loss"]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for label, data in runs.items():
            if key in data:
                ok = ~np.isnan(data[key])
                ax.plot(data["step"][ok], data[key][ok], label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        if key in ("recon", "kl", "loss") and all(np.nanmin(d[key]) > 0 for d in runs.values() if key in d):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    log.info("plotted %d run(s) to %s", len(runs), out_png)
    return runs


def plot_per_step(per_step: list[dict[str, Any]], out_png: str | Path, title: str = "") -> None:
    """PSNR and SSIM (best / avg / worst band and copy-last) and ball error against predicted step."""
    plt = _pyplot()
    col = {k: np.array([np.nan if r.get(k) is None else r[k] for r in per_step], dtype=float) for k in per_step[0]}
    step = col["step"]
    has_ball = any(k in col and not np.all(np.isnan(col[k])) for k in ("ball_err", "ball_err_copy"))
    fig, axes = plt.subplots(1, 3 if has_ball else 2, figsize=(15 if has_ball else 10, 4))
    for ax, name in zip(axes, ("psnr", "ssim"), strict=False):
        ax.fill_between(step, col[f"{name}_worst"], col[f"{name}_best"], alpha=0.25, label="model best-worst")
        ax.plot(step, col[f"{name}_avg"], marker="o", label="model avg")
        ax.plot(step, col[f"{name}_copy"], marker="s", linestyle="--", label="copy last frame")
        ax.set_xlabel("predicted step")
        ax.set_ylabel(name.upper())
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if has_ball:
        ax = axes[2]
        ax.plot(step, col["ball_err"], marker="o", label="model")
        ax.plot(step, col["ball_err_copy"], marker="s", linestyle="--", label="copy last frame")
        ax.set_xlabel("predicted step")
        ax.set_ylabel("ball centre error (raw px)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def _rgb(frames: np.ndarray) -> np.ndarray:
    """(..., C, H, W) float [0, 1] -> (..., H, W, 3) uint8."""
    img = np.moveaxis(np.clip(frames, 0, 1), -3, -1)  # (..., C, H, W) -> (..., H, W, C)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return (img * 255).round().astype(np.uint8)


def write_prediction_gif(truth: np.ndarray, pred: np.ndarray, path: str | Path, scale: int = 3, fps: float = 4) -> None:
    """Truth (G, P+K, C, H, W) and predictions (G, K, C, H, W) -> GIF of rows truth | prediction | |diff|.

    The context frames (the first P) are shown as they are in all three panels' places (the
    prediction panel shows the truth, the difference is black); a yellow bar under the prediction
    marks predicted frames, as in SAVP's GIFs.
    """
    import imageio.v2 as imageio

    g, length = truth.shape[:2]
    k = pred.shape[1]
    p = length - k
    full = np.concatenate([truth[:, :p], pred], axis=1)  # (G, P+K, C, H, W)
    t_img, p_img = _rgb(truth), _rgb(full)
    d_img = _rgb(np.abs(truth - full))
    h, w = t_img.shape[2:4]
    sep = 2
    frames = []
    for t in range(length):
        canvas = np.full((g * (h + 2 * sep), 3 * (w + sep), 3), 255, dtype=np.uint8)
        for i in range(g):
            y = i * (h + 2 * sep)
            for j, img in enumerate((t_img, p_img, d_img)):
                canvas[y : y + h, j * (w + sep) : j * (w + sep) + w] = img[i, t]
            if t >= p:
                canvas[y + h : y + h + sep, w + sep : 2 * w + sep] = (255, 200, 0)
        frames.append(np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1))  # upscale x scale
    imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)  # milliseconds per frame (Pillow plugin)
