"""SPACE-Time motion targets: moving-pixel masks, boxes and SPACE ``z_pres`` / ``z_where`` grids.

Methods (:data:`MotionMethod`):

* ``mode`` / ``median``: a pixel moves if it differs from a background image (the dataset's
  ``mode.png`` / ``median.png``, or when none is given the episode's own, computed from its frames
  with :func:`dataset_tools.background.background_images`) by more than ``threshold`` in any channel.
  ALE frames are noise-free, so any difference is real; the default threshold of 10 only ignores
  near-identical palette shades. Every object that is not part of the background is marked, moving
  or not (Pong's paddles also when still, score digits that differ from the background's). An object
  that sits at one place for most of the frames becomes part of the background, so when it moves
  both it and its "ghost" (the uncovered background) are marked.
* ``flow``: dense OpenCV Farneback optical flow between consecutive grayscale frames; a pixel moves
  if the flow magnitude exceeds ``threshold`` (pixels per frame). The flow for frame t is computed
  backwards (frame t -> frame t-1), so it lives on frame t's pixel grid and marks objects where they
  are in frame t; frame 0 uses the forward flow frame 0 -> frame 1 (a one-frame episode has no
  motion). Only moving objects are found (a still paddle is not, unlike with mode / median).
  Farneback smooths the flow over its neighbourhood into the flat background, so blobs are larger
  than the sprite: an 8x8 square moving 2 px/frame gives an 18x18 box (centred on it), Pong's 2x4
  ball (4-8 px per ``ALE/Pong-v5`` step) a ~15x16 box whose centre is within ~1.5 px (median) of
  the ball's, a moving 4x16 paddle ~12x24. So flow boxes give usable ``z_pres`` cells and centres
  but inflated sizes, and a ball next to a paddle merges with it (~12 % of Pong frames with a ball).
  See :data:`FLOW_PARAMS`.

Each mask gets a small morphological closing so that a sprite with one-pixel gaps is one blob;
blobs become boxes ``[x, y, w, h]`` (external contours), and boxes become SPACE grid targets.
"""

from __future__ import annotations

import logging
from typing import Literal

import cv2
import numpy as np

from dataset_tools.background import background_images

log = logging.getLogger(__name__)

MotionMethod = Literal["mode", "median", "flow"]

DEFAULT_THRESHOLDS: dict[str, float] = {"mode": 10, "median": 10, "flow": 1.0}
"""Per method: max channel difference (0..255) for mode / median, flow magnitude (px/frame) for flow."""

DEFAULT_MIN_AREA = 4
"""Boxes of fewer pixels (w * h) are dropped by :func:`episode_motion`."""

FLOW_PARAMS: dict[str, float | int] = {
    "pyr_scale": 0.5,
    "levels": 1,
    "winsize": 3,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.1,
    "flags": 0,
}
"""Farneback parameters, tuned on ALE Pong: a 3 px window and a shallow pyramid (levels=1) give the tightest
blobs that still catch the fast 2x4 ball (larger windows / more levels only add blur and false blobs)."""

CLOSE_KERNEL = 3
"""Side of the square kernel of the morphological closing applied to every mask."""

_CHUNK = 256
"""Frames compared with the background at once (bounds temporary memory)."""


def _close(mask: np.ndarray, kernel: int) -> np.ndarray:
    """Morphological closing of each (H, W) slice of a (T, H, W) bool mask."""
    if kernel <= 1:
        return mask
    k = np.ones((kernel, kernel), dtype=np.uint8)
    out = np.empty_like(mask)
    for t in range(len(mask)):
        out[t] = cv2.morphologyEx(mask[t].view(np.uint8), cv2.MORPH_CLOSE, k).astype(bool)
    return out


def _background_mask(frames: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
    """(T, H, W, 3) frames vs (H, W, 3) background -> (T, H, W) bool, any channel differs by > threshold."""
    if background.shape != frames.shape[1:]:
        raise ValueError(f"background shape {background.shape} does not match frame shape {frames.shape[1:]}")
    bg = background.astype(np.uint8)[None]  # (H, W, 3) -> (1, H, W, 3)
    mask = np.empty(frames.shape[:3], dtype=bool)
    for t0 in range(0, len(frames), _CHUNK):
        f = frames[t0 : t0 + _CHUNK]
        diff = np.maximum(f, bg) - np.minimum(f, bg)  # (t, H, W, 3) uint8 |f - bg| without overflow
        mask[t0 : t0 + len(f)] = diff.max(axis=-1) > threshold
    return mask


def _flow_mask(frames: np.ndarray, threshold: float) -> np.ndarray:
    """(T, H, W, 3) frames -> (T, H, W) bool, Farneback flow magnitude > threshold (see module docstring)."""
    t_len = len(frames)
    mask = np.zeros(frames.shape[:3], dtype=bool)
    if t_len < 2:
        return mask
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    for t in range(t_len):
        other = t - 1 if t > 0 else 1
        flow = cv2.calcOpticalFlowFarneback(gray[t], gray[other], None, **FLOW_PARAMS)  # (H, W, 2)
        mag2 = flow[..., 0] ** 2 + flow[..., 1] ** 2
        mask[t] = mag2 > threshold * threshold
    return mask


def motion_masks(
    frames: np.ndarray,
    method: MotionMethod,
    background: np.ndarray | None = None,
    threshold: float | None = None,
    close_kernel: int = CLOSE_KERNEL,
) -> np.ndarray:
    """Moving-pixel masks of an episode: (T, H, W, 3) uint8 RGB frames -> (T, H, W) bool.

    ``background`` (H, W, 3) is used by ``mode`` / ``median`` (None: the frames' own background) and
    ignored by ``flow``. ``threshold`` None uses :data:`DEFAULT_THRESHOLDS`.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if method not in DEFAULT_THRESHOLDS:
        raise ValueError(f"method must be one of {sorted(DEFAULT_THRESHOLDS)}, got {method!r}")
    thr = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    if len(frames) == 0:
        return np.zeros(frames.shape[:3], dtype=bool)
    if method == "flow":
        mask = _flow_mask(frames, thr)
    else:
        if background is None:
            mode, median = background_images(frames)
            background = mode if method == "mode" else median
        mask = _background_mask(frames, np.asarray(background), thr)
    return _close(mask, close_kernel)


def boxes_from_mask(mask: np.ndarray, min_area: int = 1) -> np.ndarray:
    """(H, W) bool mask -> (N, 4) int32 boxes ``[x, y, w, h]`` of its blobs, sorted by (y, x).

    One box per external contour (8-connected blob; blobs inside another blob's hole are skipped);
    boxes with ``w * h < min_area`` are dropped.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {mask.shape}")
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = [cv2.boundingRect(c) for c in contours]
    out = np.array([b for b in boxes if b[2] * b[3] >= min_area], dtype=np.int32).reshape(-1, 4)
    return out[np.lexsort((out[:, 0], out[:, 1]))]


def grid_targets(boxes: np.ndarray, height: int, width: int, grid: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """SPACE targets from (N, 4) ``[x, y, w, h]`` pixel boxes of a ``height`` x ``width`` frame.

    Returns ``z_pres`` (G, G) float32, 1 in the cell (row, col) holding a box centre, and ``z_where``
    (G, G, 4) float32 ``[w, h, cx, cy]``: size as a fraction of the frame, centre in (-1, 1)
    (``cx = 2 * (x + w / 2) / width - 1``); zeros where ``z_pres`` is 0. Of several boxes whose
    centres share a cell the largest (w * h) wins, ties to the first.
    """
    z_pres = np.zeros((grid, grid), dtype=np.float32)
    z_where = np.zeros((grid, grid, 4), dtype=np.float32)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return z_pres, z_where
    cx_px = b[:, 0] + b[:, 2] / 2  # (N,)
    cy_px = b[:, 1] + b[:, 3] / 2
    col = np.clip(np.floor(cx_px / width * grid), 0, grid - 1).astype(np.int64)
    row = np.clip(np.floor(cy_px / height * grid), 0, grid - 1).astype(np.int64)
    order = np.argsort(-(b[:, 2] * b[:, 3]), kind="stable")  # largest first, ties keep input order
    cell = (row * grid + col)[order]
    _, first = np.unique(cell, return_index=True)  # first (largest) box of every occupied cell
    keep = order[first]
    where = np.stack(
        [b[keep, 2] / width, b[keep, 3] / height, 2 * cx_px[keep] / width - 1, 2 * cy_px[keep] / height - 1], axis=-1
    )  # (K, 4)
    z_pres[row[keep], col[keep]] = 1.0
    z_where[row[keep], col[keep]] = where
    return z_pres, z_where


def draw_boxes(
    frame: np.ndarray,
    boxes: np.ndarray,
    color: tuple[int, int, int] = (255, 0, 0),
    labels: list[str] | None = None,
    outside: bool = False,
) -> np.ndarray:
    """A copy of the (H, W, 3) RGB frame with 1-px rectangles around (N, 4) ``[x, y, w, h]`` boxes.

    ``labels`` (one per box) are written in small text above each box (below it near the top edge), kept
    inside the image. ``outside`` draws each rectangle one pixel outside the box, so that a second set
    drawn on the box itself (truth around motion) stays visible.
    """
    img = np.array(frame, dtype=np.uint8, copy=True, order="C")
    b = np.asarray(boxes).reshape(-1, 4)
    if labels is not None and len(labels) != len(b):
        raise ValueError(f"{len(labels)} labels for {len(b)} boxes")
    col = tuple(int(c) for c in color)
    pad = int(outside)
    for i, (x, y, w, h) in enumerate(np.rint(b).astype(np.int64)):
        x0, y0 = int(x) - pad, int(y) - pad
        x1, y1 = int(x + max(w, 1) - 1) + pad, int(y + max(h, 1) - 1) + pad
        cv2.rectangle(img, (x0, y0), (x1, y1), col, 1)
        if labels is not None:
            (tw, th), _ = cv2.getTextSize(str(labels[i]), cv2.FONT_HERSHEY_PLAIN, 0.6, 1)
            tx = max(0, min(x0, img.shape[1] - tw - 1))  # the whole label inside the image
            ty = y0 - 2 if y0 - 2 >= th else min(img.shape[0] - 1, y1 + th + 2)
            cv2.putText(img, str(labels[i]), (tx, ty), cv2.FONT_HERSHEY_PLAIN, 0.6, col, 1, cv2.LINE_AA)
    return img


def episode_motion(
    frames: np.ndarray,
    method: MotionMethod,
    background: np.ndarray | None = None,
    grid: int = 16,
    threshold: float | None = None,
    min_area: int = DEFAULT_MIN_AREA,
    field: tuple[int, int, int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Masks, boxes and grid targets of one episode's (T, H, W, 3) frames.

    ``field`` (top, bottom, left, right), the game's play field: motion outside it (Pong's score digits)
    is dropped. Returns ``{"mask": (T, H, W) bool, "boxes": (K, 5) int32 rows [t, x, y, w, h] sorted by t,
    "z_pres": (T, G, G) float32, "z_where": (T, G, G, 4) float32}``.
    """
    frames = np.asarray(frames)
    mask = motion_masks(frames, method, background=background, threshold=threshold)
    if field is not None:
        top, bottom, left, right = field
        inside = np.zeros(mask.shape[1:], dtype=bool)
        inside[top:bottom, left:right] = True
        mask &= inside
    t_len, h, w = mask.shape
    z_pres = np.zeros((t_len, grid, grid), dtype=np.float32)
    z_where = np.zeros((t_len, grid, grid, 4), dtype=np.float32)
    rows = []
    for t in range(t_len):
        bx = boxes_from_mask(mask[t], min_area=min_area)  # (N, 4)
        z_pres[t], z_where[t] = grid_targets(bx, h, w, grid)
        if len(bx):
            rows.append(np.concatenate([np.full((len(bx), 1), t, dtype=np.int32), bx], axis=1))  # (N, 5)
    boxes = np.concatenate(rows, axis=0) if rows else np.zeros((0, 5), dtype=np.int32)
    log.debug("episode_motion(%s): %d frames, %d boxes", method, t_len, len(boxes))
    return {"mask": mask, "boxes": boxes.astype(np.int32), "z_pres": z_pres, "z_where": z_where}
