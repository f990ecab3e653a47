"""SPACE-Time dataset options over an existing dataset: root background, motion, box images, i.i.d. set.

``--rootmedian`` computes the per-pixel mode and median of the frames collected so far (``mode.png``,
``median.png``). Motion (``--motion``) finds moving pixels against a background (the episode's own,
or with ``--root`` the dataset's), turns them into boxes and SPACE ``z_pres`` / ``z_where`` grid
targets, and stores them next to the frames (``motion.npz``). ``--plot_bb`` writes debug images.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dataset_tools import background as bg
from dataset_tools import motion as mo
from dataset_tools.atari import game_spec
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import load_extra, load_frames, write_extra
from dataset_tools.lock import DatasetLock

log = logging.getLogger(__name__)


@dataclass
class MotionConfig:
    """How motion targets are computed."""

    method: Literal["mode", "median", "flow"] = "mode"
    """Background model (mode / median image) or optical flow (OpenCV Farneback)."""
    root: bool = False
    """Compare against the dataset's background (mode.png / median.png) instead of each episode's own."""
    grid: int = 16
    """G of the G x G z_pres / z_where grid."""
    threshold: int | None = None
    """Pixel difference (or flow magnitude) that counts as motion; None: the method's default."""
    plot_bb: bool = False
    """Write frames with their boxes drawn to ``DIR/plot_bb/``."""
    plot_every: int = 25
    """With plot_bb: one image every this many frames ..."""
    plot_max: int = 40
    """... and at most this many per episode."""


def sample_frames(ds: DatasetDir, max_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_frames`` frames drawn uniformly at random across all episodes.

    Returns (frames (N, 210, 160, 3) uint8, source (N, 2) int64 rows [episode, t]).
    """
    index = [(i, len(load_frames(ds.episodes_dir / f"ep_{i:06d}"))) for i in ds.episode_indices()]
    pairs = np.array([(i, t) for i, n in index for t in range(n)], dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        raise ValueError(f"{ds.root}: no episodes yet; collect some first (--frames N or --episodes N)")
    rng = np.random.default_rng(seed)
    chosen = pairs[np.sort(rng.choice(len(pairs), size=min(max_frames, len(pairs)), replace=False))]
    frames = np.empty((len(chosen), 210, 160, 3), dtype=np.uint8)
    for ep in np.unique(chosen[:, 0]):
        rows = np.nonzero(chosen[:, 0] == ep)[0]
        arr = load_frames(ds.episodes_dir / f"ep_{ep:06d}")
        frames[rows] = arr[chosen[rows, 1]]
    return frames, chosen


def compute_root(ds: DatasetDir, max_frames: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``--rootmedian``: write ``mode.png`` and ``median.png`` from frames collected so far."""
    with DatasetLock(ds.root):
        return _compute_root(ds, max_frames, seed)


def _compute_root(ds: DatasetDir, max_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    frames, _ = sample_frames(ds, max_frames, seed)
    mode, median = bg.background_images(frames, max_frames=max_frames, seed=seed)
    bg.save_background(mode, median, ds.root)
    manifest = ds.read_manifest()
    manifest["root_background"] = {"frames_used": len(frames), "files": ["mode.png", "median.png"]}
    ds.write_manifest(manifest)
    log.info("wrote %s and %s from %d frames", ds.root / "mode.png", ds.root / "median.png", len(frames))
    return mode, median


def _motion_one(args: tuple[Path, MotionConfig, np.ndarray | None, Path | None, tuple[int, ...] | None]) -> int:
    ep_dir, cfg, background, plot_dir, field = args
    frames = np.asarray(load_frames(ep_dir))
    out = mo.episode_motion(
        frames, cfg.method, background=background, grid=cfg.grid, threshold=cfg.threshold, field=field
    )
    write_extra(
        ep_dir,
        "motion",
        {
            "mask_bits": np.packbits(out["mask"], axis=-1),  # (T, H, W) bool -> (T, H, ceil(W/8)) uint8
            "boxes": out["boxes"],
            "z_pres": out["z_pres"],
            "z_where": out["z_where"],
        },
    )
    if plot_dir is not None:
        _plot_episode(ep_dir, frames, out, cfg, plot_dir)
    return int(len(out["boxes"]))


def _plot_episode(
    ep_dir: Path, frames: np.ndarray, out: dict[str, np.ndarray], cfg: MotionConfig, plot_dir: Path
) -> None:
    import imageio.v3 as iio

    labels = load_extra(ep_dir, "labels") or {}
    plot_dir.mkdir(parents=True, exist_ok=True)
    boxes = out["boxes"]
    for t in list(range(0, len(frames), cfg.plot_every))[: cfg.plot_max]:
        drawn = mo.draw_boxes(frames[t], boxes[boxes[:, 0] == t][:, 1:], color=(255, 0, 0))
        truth = [(name, arr[t]) for name, arr in labels.items() if arr[t, 0] > 0]
        if truth:
            truth_boxes = np.array([row[1:] for _, row in truth]).round().astype(np.int32)
            labels_ = [n for n, _ in truth]
            drawn = mo.draw_boxes(drawn, truth_boxes, color=(0, 255, 0), labels=labels_, outside=True)
        mask = np.repeat(out["mask"][t][..., None] * np.uint8(255), 3, axis=-1)  # (H, W) -> (H, W, 3)
        iio.imwrite(plot_dir / f"{ep_dir.name}_t{t:05d}.png", np.concatenate([drawn, mask], axis=1))


def compute_motion(ds: DatasetDir, cfg: MotionConfig, workers: int = 1, progress: bool = True) -> int:
    """Motion masks, boxes and grid targets for every episode; returns the number of boxes."""
    with DatasetLock(ds.root):
        return _compute_motion(ds, cfg, workers, progress)


def _compute_motion(ds: DatasetDir, cfg: MotionConfig, workers: int, progress: bool) -> int:
    from tqdm import tqdm

    background = None
    if cfg.root and cfg.method != "flow":
        background = bg.load_background(ds.root, cfg.method)
    plot_dir = ds.root / "plot_bb" if cfg.plot_bb else None
    field = game_spec(ds.read_manifest().get("game")).field  # motion outside it (a score) is not an object
    jobs = [(ep, cfg, background, plot_dir, field) for ep in ds.episode_dirs()]
    if not jobs:
        raise ValueError(f"{ds.root}: no episodes yet; collect some first (--frames N or --episodes N)")
    total = 0
    bar = tqdm(total=len(jobs), unit="episode", desc=f"motion ({cfg.method})", disable=not progress)
    if workers > 1:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for n in pool.imap_unordered(_motion_one, jobs):
                total += n
                bar.update()
    else:
        for job in jobs:
            total += _motion_one(job)
            bar.update()
    bar.close()
    manifest = ds.read_manifest()
    manifest["motion"] = {
        "method": cfg.method,
        "root": cfg.root,
        "grid": cfg.grid,
        "threshold": cfg.threshold,
        "z_where": "[w, h, cx, cy]: w, h as fractions of the frame, cx, cy in (-1, 1)",
        "boxes": total,
    }
    ds.write_manifest(manifest)
    return total


def write_iid(ds: DatasetDir, n_frames: int, seed: int = 0) -> Path:
    """``--random``: an i.i.d. frame set sampled across all episodes, in ``DIR/iid/``."""
    with DatasetLock(ds.root):
        return _write_iid(ds, n_frames, seed)


def _write_iid(ds: DatasetDir, n_frames: int, seed: int) -> Path:
    frames, source = sample_frames(ds, n_frames, seed)
    out = ds.root / "iid"
    out.mkdir(exist_ok=True)
    tmp = out / ".tmp-frames.npy"
    np.save(tmp, frames)
    tmp.replace(out / "frames.npy")
    np.save(out / "source.npy", source)  # (N, 2) [episode, t]
    manifest = ds.read_manifest()
    manifest["iid"] = {"frames": len(frames), "seed": seed, "files": ["iid/frames.npy", "iid/source.npy"]}
    ds.write_manifest(manifest)
    return out
