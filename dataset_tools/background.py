"""Static background images of a game: per-pixel mode and median over many frames.

SPACE-Time finds moving objects by comparing each frame with a background image. Two are computed:

* ``mode``: at every pixel the most frequent full RGB colour (the colour triple, not a per-channel
  mode, so the result is always a colour that was really on screen there);
* ``median``: the per-channel median (rounded to uint8), which can mix channels of different colours
  where no colour dominates.

The mode is vectorised: the three channels are packed into one int32 per pixel, each pixel's time
series is sorted, and the longest run of equal values in the sorted series is the mode (found with one
``np.maximum.reduceat`` over the runs, which are few: a pixel shows only a handful of colours). Pixels are
processed in chunks of rows so memory stays bounded (about ``N * rows * W * 20`` bytes per chunk).

``save_background`` / ``load_background`` store the two images as ``mode.png`` / ``median.png`` (RGB).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

BackgroundKind = Literal["mode", "median"]

_CHUNK_ELEMENTS = 2_000_000
"""Frames x pixels handled at once (bounds the sort / median working memory)."""


def _as_frame_list(frames: np.ndarray | Iterable[np.ndarray]) -> list[np.ndarray]:
    """Normalise the input to a list of (T_i, H, W, 3) uint8 arrays (a single (H, W, 3) frame is T_i = 1)."""
    if isinstance(frames, np.ndarray):
        parts = [frames]
    else:
        parts = [np.asarray(f) for f in frames]
    out = []
    for p in parts:
        p = np.asarray(p)
        if p.ndim == 3:
            p = p[None]  # (H, W, 3) -> (1, H, W, 3)
        if p.ndim != 4 or p.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) RGB arrays, got shape {p.shape}")
        if p.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {p.dtype}")
        if len(p):
            out.append(p)
    if not out:
        raise ValueError("background_images needs at least one frame")
    shapes = {p.shape[1:] for p in out}
    if len(shapes) != 1:
        raise ValueError(f"all frames must have the same (H, W, 3) shape, got {sorted(shapes)}")
    return out


def _select(parts: list[np.ndarray], max_frames: int, seed: int) -> np.ndarray:
    """Stack the frames into one (N, H, W, 3) array, a sorted random subset of ``max_frames`` if there are more."""
    total = sum(len(p) for p in parts)
    if total <= max_frames:
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=max_frames, replace=False))
    out = np.empty((max_frames, *parts[0].shape[1:]), dtype=np.uint8)
    starts = np.cumsum([0] + [len(p) for p in parts])
    for i, p in enumerate(parts):
        rows = np.nonzero((chosen >= starts[i]) & (chosen < starts[i + 1]))[0]
        if len(rows):
            out[rows] = p[chosen[rows] - starts[i]]
    log.debug("background: using %d of %d frames", max_frames, total)
    return out


def _pack_rgb(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 with value r << 16 | g << 8 | b."""
    f = frames.astype(np.int32)
    return (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]


def _unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """(...) int32 -> (..., 3) uint8 (inverse of :func:`_pack_rgb`)."""
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.uint8)


def _mode_rows(packed: np.ndarray) -> np.ndarray:
    """Most frequent value of every row of a (P, N) int32 array -> (P,) int32.

    Sorts each row, splits the flattened result into runs of equal values (a new run also starts at
    every row start), and keeps per row the longest run; ties go to the smallest packed colour (the
    run that starts first in sorted order).
    """
    p, n = packed.shape
    flat = np.sort(packed, axis=1).ravel()  # (P, N) -> (P*N,)
    new_run = np.empty(flat.shape, dtype=bool)
    new_run[0] = True
    np.not_equal(flat[1:], flat[:-1], out=new_run[1:])
    new_run[::n] = True
    starts = np.flatnonzero(new_run)  # (R,) flat index where each run begins
    lengths = np.diff(starts, append=flat.size)  # (R,)
    # one int64 key per run: longer runs win, then earlier starts (smaller colours); starts need < 32 bits
    assert flat.size < 2**32, "chunk too large for the run key"
    key = (lengths.astype(np.int64) << 32) | (flat.size - 1 - starts).astype(np.int64)
    first_run = np.flatnonzero(starts % n == 0)  # (P,) index of each row's first run
    best = np.maximum.reduceat(key, first_run)  # (P,)
    return flat[flat.size - 1 - (best & 0xFFFFFFFF)]


def background_images(
    frames: np.ndarray | Iterable[np.ndarray], max_frames: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mode (full RGB triple) and per-channel median of ``frames``.

    ``frames`` is an (N, H, W, 3) uint8 array or an iterable of (T_i, H, W, 3) arrays (e.g. one per
    episode). With more than ``max_frames`` frames a random subset (fixed by ``seed``) of
    ``max_frames`` is used. Returns ``(mode, median)``, each (H, W, 3) uint8.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    data = _select(_as_frame_list(frames), max_frames, seed)  # (N, H, W, 3)
    n, h, w, _ = data.shape
    mode = np.empty((h, w, 3), dtype=np.uint8)
    median = np.empty((h, w, 3), dtype=np.uint8)
    rows = max(1, _CHUNK_ELEMENTS // max(1, n * w))
    lo_k, hi_k = (n - 1) // 2, n // 2  # the two middle order statistics (equal for odd n)
    for r0 in range(0, h, rows):
        chunk = data[:, r0 : r0 + rows]  # (N, r, W, 3)
        r = chunk.shape[1]
        packed = np.ascontiguousarray(_pack_rgb(chunk).reshape(n, r * w).T)  # (N, r, W, 3) -> (r*W, N)
        mode[r0 : r0 + r] = _unpack_rgb(_mode_rows(packed)).reshape(r, w, 3)  # (r*W, 3) -> (r, W, 3)
        series = np.ascontiguousarray(chunk.transpose(1, 2, 3, 0))  # (N, r, W, 3) -> (r, W, 3, N)
        part = np.partition(series, (lo_k, hi_k), axis=-1)  # (r, W, 3, N)
        mid = (part[..., lo_k].astype(np.uint16) + part[..., hi_k] + 1) // 2  # mean of the middle two, half up
        median[r0 : r0 + r] = mid.astype(np.uint8)
    return mode, median


def save_background(mode: np.ndarray, median: np.ndarray, out_dir: str | Path) -> None:
    """Write ``mode.png`` and ``median.png`` (RGB) into ``out_dir`` (created if missing)."""
    import imageio.v3 as iio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, img in (("mode", mode), ("median", median)):
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"{name} image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
        tmp = out / f".tmp-{name}.png"
        iio.imwrite(tmp, img, extension=".png")
        tmp.replace(out / f"{name}.png")


def load_background(out_dir: str | Path, kind: BackgroundKind) -> np.ndarray:
    """Read ``mode.png`` or ``median.png`` from ``out_dir`` as an (H, W, 3) uint8 RGB array."""
    import imageio.v3 as iio

    if kind not in ("mode", "median"):
        raise ValueError(f"kind must be 'mode' or 'median', got {kind!r}")
    path = Path(out_dir) / f"{kind}.png"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: compute the dataset background first with "
            f"`create-dataset ... --rootmedian` (same dataset directory), then rerun with --root"
        )
    img = np.asarray(iio.imread(path))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)  # (H, W) -> (H, W, 3)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))
