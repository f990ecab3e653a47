"""Foreground components of a frame: the pixels that differ from a background image, grouped into boxes.

The motion hints of SPACE-Time (:mod:`dataset_tools.motion`) close small gaps and merge what
touches, which is right for a training hint but loses a ball that touches a paddle. Here a
component is a connected set of foreground pixels **of one colour** (8-connectivity, no closing):
Atari sprites are drawn in one or a few palette colours, so a ball drawn over a paddle (Pong's ball
is white, the paddles green and orange) stays its own component, and the box is exact to the pixel.

    boxes = foreground_components(frame, background)     # (K, 5) int [x, y, w, h, area]

A sprite drawn in several colours falls apart into components of each; :func:`merge_specks` folds the
specks of a few pixels (Freeway's 2 x 1 car wheels) into the larger component they touch.

ALE frames are noise-free, so any difference larger than ``threshold`` (in any channel) is real.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_THRESHOLD = 10
"""Largest channel difference (0..255) from the background that still counts as background."""


def pack_rgb(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) int32, one integer per colour."""
    f = np.asarray(frames).astype(np.int32)
    return (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]


def foreground_mask(frame: np.ndarray, background: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """(H, W, 3) uint8 frame and background -> (H, W) bool, True where any channel differs by > ``threshold``."""
    if frame.shape != background.shape:
        raise ValueError(f"frame {frame.shape} and background {background.shape} differ in shape")
    if frame.dtype == background.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3:
        diff = cv2.absdiff(frame, background)  # saturating |frame - background|
        return np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]) > threshold  # 20x numpy's max(-1)
    diff = np.maximum(frame, background) - np.minimum(frame, background)  # |frame - background| without overflow
    return diff.max(axis=-1) > threshold


def foreground_components(
    frame: np.ndarray,
    background: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    min_area: int = 1,
    with_ids: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One frame's foreground components: (K, 5) int64 rows ``[x, y, w, h, area]`` (pixels of ``frame``).

    ``frame`` and ``background`` are (H, W, 3) uint8 RGB of the same shape. Each component is a connected
    set (8-connectivity) of foreground pixels that share one colour; components of fewer than
    ``min_area`` pixels are dropped. Rows are sorted by area, largest first. With ``with_ids`` also an
    (H, W) int32 image holding ``k + 1`` on the pixels of component ``k`` (0 elsewhere).
    """
    mask = foreground_mask(frame, background, threshold)
    h, w = mask.shape
    ids = np.zeros((h, w), dtype=np.int32)
    if not mask.any():
        empty = np.zeros((0, 5), dtype=np.int64)
        return (empty, ids) if with_ids else empty
    packed = pack_rgb(frame)
    rows, labels = [], []
    for colour in np.unique(packed[mask]):
        one = (mask & (packed == colour)).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(one, connectivity=8)
        rows.append(stats[1:n])  # row 0 is the rest of the frame; stats rows [x, y, w, h, area]
        labels += [(lab, i) for i in range(1, n)]
    out = np.concatenate(rows).astype(np.int64)
    keep = np.nonzero(out[:, 4] >= min_area)[0]
    keep = keep[np.argsort(-out[keep, 4], kind="stable")]
    if with_ids:
        for k, j in enumerate(keep):
            lab, i = labels[j]
            ids[lab == i] = k + 1
        return out[keep], ids
    return out[keep]


def merge_specks(components: np.ndarray, ids: np.ndarray, max_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold each speck (a component of at most ``max_px`` pixels) into the largest larger component it
    touches (8-connectivity): a sprite drawn in several colours (Freeway's cars: an 8 x 8 body and four
    2 x 1 wheels of another colour) is one object. ``components`` and ``ids`` are
    :func:`foreground_components`' rows and id image; returns them merged (rows still sorted by area,
    largest first; ids renumbered). A speck that touches no larger component stays its own."""
    if max_px <= 0 or len(components) == 0 or components[:, 4].min() > max_px:
        return components, ids
    comp, ids = components.copy(), ids.copy()
    h, w = ids.shape
    into = np.arange(len(comp))  # the row each component ends up in
    for k in np.nonzero(comp[:, 4] <= max_px)[0]:
        x, y, cw, ch = (int(v) for v in components[k, :4])
        window = ids[max(y - 1, 0) : min(y + ch + 1, h), max(x - 1, 0) : min(x + cw + 1, w)]
        near = [j - 1 for j in np.unique(window) if j > 0 and components[j - 1, 4] > max_px]
        if not near:
            continue
        j = int(into[min(near)])  # rows are sorted by area: the first is the largest
        x0, y0 = min(comp[j, 0], x), min(comp[j, 1], y)
        x1, y1 = max(comp[j, 0] + comp[j, 2], x + cw), max(comp[j, 1] + comp[j, 3], y + ch)
        comp[j] = [x0, y0, x1 - x0, y1 - y0, comp[j, 4] + components[k, 4]]
        into[k] = j
    kept = np.nonzero(into == np.arange(len(comp)))[0]
    kept = kept[np.argsort(-comp[kept, 4], kind="stable")]
    lookup = np.zeros(len(comp) + 1, dtype=np.int32)
    new_row = np.empty(len(comp), dtype=np.int64)
    new_row[kept] = np.arange(len(kept))
    lookup[1:] = new_row[into] + 1
    return comp[kept], lookup[ids]
