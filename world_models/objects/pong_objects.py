"""Find Pong's ball and paddles in (possibly blurry) predicted frames, in raw 210 x 160 pixels.

A predicted frame is read as a mixture of the field colour and one or two object colours. Per
pixel, the colour minus the field colour (the frame's median, so a model that draws the field a
little off is not penalised) is unmixed by least squares into ``a`` (fraction of ball colour) and
``b`` (fraction of the paddle colour of that half of the screen)::

    c - field = a * (ball - field) + b * (paddle - field)

Unmixing instead of plain brightness keeps the green player paddle (whose blue is 92) and the
orange enemy paddle (blue 74) from looking like a dim ball, and lets the ball be found while it
passes through a paddle's columns. Grayscale frames cannot be unmixed: there the ball is searched
outside the paddle column bands only, and the paddles by luminance inside their bands.

* ball: the 3 x 3 neighbourhood with the most ball colour ``a`` inside the play-field rows
  (summing makes zero-mean noise cancel); found if it holds at least :data:`BALL_FRACTION` of a
  whole ball; centre = ``a``-weighted centroid of a 5 x 5 window around it.
* paddles: ``b`` summed over the paddle's column band gives a row profile; of the runs of rows
  above :data:`RUN_THRESHOLD`, the one with the most paddle colour is the paddle; found if its
  maximum reaches :data:`PADDLE_THRESHOLD`; centre = ``b``-weighted centroid of that run.

A frame whose median colour is far from the field colour (:data:`FIELD_TOLERANCE`) is not read
as Pong: nothing is found in it. Centres are in raw-frame pixels (x right, y down), comparable
with :func:`ram_centres`. On real 64 x 64 RGB frames (default crop) the ball centre is within
0.3 px of RAM truth (median; max 1.5 px) and the paddles within 0.2 px (max 0.8 px); see
``tests/world_models/test_evaluate.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dataset_tools.atari.pong import FIELD as PONG_FIELD
from dataset_tools.preprocess import RAW_SHAPE, Preprocess
from dataset_tools.ram_truth import ram_objects

OBJECTS = ("player", "enemy", "ball")

FIELD = np.array([144, 72, 17]) / 255.0
BALL = np.array([236, 236, 236]) / 255.0
PLAYER = np.array([92, 186, 92]) / 255.0
ENEMY = np.array([213, 130, 74]) / 255.0
PLAYER_X = (140, 144)
"""Raw columns (half-open) of the player's (right, green) paddle."""
ENEMY_X = (16, 20)
"""Raw columns (half-open) of the enemy's (left, orange) paddle."""
FIELD_Y = PONG_FIELD[:2]
"""Raw rows (half-open) between the white walls."""
FIELD_TOLERANCE = 0.2
"""Largest distance (RGB in [0, 1], or luminance) of a frame's median colour from the field colour
for a frame to count as Pong at all; in other frames nothing is found."""
BALL_AREA = 8.0
"""Raw pixels of the 2 x 4 ball."""

BALL_FRACTION = 0.4
"""Least share of a whole ball's colour (summed over 3 x 3 model pixels) for the ball to count as
found; a sharp ball has all of it there, a blurred one less."""
PADDLE_THRESHOLD = 0.5
"""Least paddle-colour fraction summed across the band (one row) for a paddle to count as found."""
RUN_THRESHOLD = 0.25
"""Rows whose paddle-colour fraction summed across the band exceeds this form runs; the run with
the most paddle colour is the paddle (a ball crossing the band makes a shorter one)."""
_LUMA = np.array([0.299, 0.587, 0.114])


def _geometry(pre: Preprocess, h: int, w: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Raw-pixel centres of the model's rows (H,) and columns (W,), and the crop box."""
    top, bottom, left, right = pre.crop if pre.crop is not None else (0, RAW_SHAPE[0], 0, RAW_SHAPE[1])
    ys = top + (np.arange(h) + 0.5) * (bottom - top) / h
    xs = left + (np.arange(w) + 0.5) * (right - left) / w
    return ys, xs, (top, bottom, left, right)


def _columns(x_range: tuple[int, int], box: tuple[int, int, int, int], w: int, margin: int = 1) -> np.ndarray:
    """Boolean (W,) mask of the model columns overlapping raw columns ``x_range``, plus ``margin`` columns."""
    _, _, left, right = box
    sx = (right - left) / w
    lo = np.arange(w) * sx + left
    mask = (lo < x_range[1] + margin * sx) & (lo + sx > x_range[0] - margin * sx)
    return mask


def _field_rows(box: tuple[int, int, int, int], h: int) -> np.ndarray:
    """Boolean (H,) mask of model rows that lie wholly between the walls."""
    top, bottom, _, _ = box
    sy = (bottom - top) / h
    lo = top + np.arange(h) * sy
    return (lo >= FIELD_Y[0] - 1e-6) & (lo + sy <= FIELD_Y[1] + 1e-6)


def _unmix(diff: np.ndarray, paddle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``diff`` (N, 3, H, W) colour minus field -> ball fraction ``a`` and paddle fraction ``b``, (N, H, W) each."""
    basis = np.stack([BALL - FIELD, paddle - FIELD], axis=1)  # (3, 2)
    pinv = np.linalg.pinv(basis)  # (2, 3)
    coef = np.einsum("kc,nchw->nkhw", pinv, diff)
    return coef[:, 0], coef[:, 1]


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3 x 3 neighbourhood, (N, H, W) -> (N, H, W)."""
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    h, w = a.shape[1:]
    return sum(padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))


def _ball(a: np.ndarray, ys: np.ndarray, xs: np.ndarray, full_mass: float) -> np.ndarray:
    """Ball map ``a`` (N, H, W) and the mass of a whole ball -> (N, 3) [found, x, y]."""
    n, h, w = a.shape
    score = _box3(a)  # ball colour mass near each pixel; zero-mean noise averages out
    flat = score.reshape(n, -1).argmax(axis=1)  # (N, H, W) -> (N, H*W)
    py, px = np.divmod(flat, w)
    mass = score[np.arange(n), py, px]
    r = 2
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]  # (5, 5) window offsets
    iy = np.clip(py[:, None, None] + dy, 0, h - 1)  # (N, 5, 5)
    ix = np.clip(px[:, None, None] + dx, 0, w - 1)
    win = a[np.arange(n)[:, None, None], iy, ix]  # (N, 5, 5)
    inside = (py[:, None, None] + dy == iy) & (px[:, None, None] + dx == ix)
    peak = np.where(inside, win, 0.0).max(axis=(1, 2))
    weight = np.where(inside & (win > 0.25 * peak[:, None, None]), win, 0.0)
    total = np.maximum(weight.sum(axis=(1, 2)), 1e-9)
    cy = (weight * ys[iy]).sum(axis=(1, 2)) / total
    cx = (weight * xs[ix]).sum(axis=(1, 2)) / total
    found = mass >= BALL_FRACTION * full_mass
    return np.stack([found, np.where(found, cx, 0.0), np.where(found, cy, 0.0)], axis=1).astype(np.float32)


def _paddle(b: np.ndarray, band: np.ndarray, rows: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Paddle map ``b`` (N, H, W), its column band (W,) and valid rows (H,) -> (N, 3) [found, x, y]."""
    n = b.shape[0]
    sub = np.clip(b[:, :, band], 0.0, 1.0) * rows[None, :, None]  # (N, H, Wband)
    profile = sub.sum(axis=2)  # (N, H)
    out = np.zeros((n, 3), dtype=np.float32)
    for i in range(n):
        p = profile[i]
        keep = np.concatenate([[False], p > RUN_THRESHOLD, [False]])
        edges = np.flatnonzero(np.diff(keep.astype(np.int8)))  # run starts and ends (exclusive)
        if len(edges) == 0:
            continue
        starts, ends = edges[0::2], edges[1::2]
        best = int(np.argmax([p[a:e].sum() for a, e in zip(starts, ends, strict=True)]))
        lo, hi = int(starts[best]), int(ends[best]) - 1
        if p[lo : hi + 1].max() < PADDLE_THRESHOLD:
            continue
        run = sub[i, lo : hi + 1]  # (rows, Wband)
        total = run.sum()
        cy = float((run.sum(axis=1) * ys[lo : hi + 1]).sum() / total)
        cx = float((run.sum(axis=0) * xs[band]).sum() / total)
        out[i] = (1.0, cx, cy)
    return out


def _maps(frames: np.ndarray | torch.Tensor, preprocess: Preprocess) -> dict[str, Any]:
    """What :func:`find_objects` and :func:`scene_check` read in ``frames`` (N, C, H, W): the ball-colour map
    ``a`` (N, H, W, zero outside the field rows), the paddle maps ``b``, the paddles' column bands, the field
    rows, the rows' and columns' raw centres, whether each frame reads as Pong, a whole ball's mass."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"expected frames (N, C, H, W) with C in (1, 3), got {frames.shape}")
    n, c, h, w = frames.shape
    ys, xs, box = _geometry(preprocess, h, w)
    rows = _field_rows(box, h)
    bands = {"player": _columns(PLAYER_X, box, w), "enemy": _columns(ENEMY_X, box, w)}
    colours = {"player": PLAYER, "enemy": ENEMY}
    right = xs >= RAW_SHAPE[1] / 2  # (W,) the player's half of the screen
    if c == 1:
        luma = frames[:, 0]  # (N, 1, H, W) -> (N, H, W)
        field = np.median(luma[:, rows], axis=(1, 2))[:, None, None]
        pong = np.abs(field[:, 0, 0] - FIELD @ _LUMA) <= FIELD_TOLERANCE
        a = (luma - field) / (BALL @ _LUMA - FIELD @ _LUMA)
        a[:, :, bands["player"] | bands["enemy"]] = 0.0
        b = {k: (luma - field) / (colours[k] @ _LUMA - FIELD @ _LUMA) for k in bands}
        b = {k: np.where(v > 1.6, 0.0, v) for k, v in b.items()}  # far brighter than a paddle: the ball
    else:
        field = np.median(frames[:, :, rows], axis=(2, 3))[:, :, None, None]  # (N, 3, 1, 1)
        pong = np.linalg.norm(field[:, :, 0, 0] - FIELD, axis=1) <= FIELD_TOLERANCE
        diff = frames - field
        a_p, b_p = _unmix(diff, PLAYER)
        a_e, b_e = _unmix(diff, ENEMY)
        a = np.where(right[None, None, :], a_p, a_e)
        b = {"player": b_p, "enemy": b_e}
    sy, sx = (box[1] - box[0]) / h, (box[3] - box[2]) / w
    return {
        "a": a * rows[None, :, None],
        "b": b,
        "bands": bands,
        "rows": rows,
        "ys": ys,
        "xs": xs,
        "pong": pong,
        "ball_mass": min(BALL_AREA / (sx * sy), 9.0),
        "pixel_area": sx * sy,
    }


def find_objects(frames: np.ndarray | torch.Tensor, preprocess: Preprocess) -> dict[str, np.ndarray]:
    """Ball and paddle centres in preprocessed Pong frames.

    ``frames`` (N, C, H, W) float in [0, 1], RGB or grayscale, made with ``preprocess``. Returns
    ``{"player" | "enemy" | "ball": (N, 3) float32 [found, x, y]}`` with ``(x, y)`` the centre in
    raw 210 x 160 pixels (0 where not found).
    """
    m = _maps(frames, preprocess)
    out = {name: _paddle(m["b"][name], m["bands"][name], m["rows"], m["ys"], m["xs"]) for name in m["bands"]}
    out["ball"] = _ball(m["a"], m["ys"], m["xs"], full_mass=m["ball_mass"])
    for found in out.values():
        found[~m["pong"]] = 0.0
    return out


PADDLE_AREA = 64.0
"""Raw pixels of a 4 x 16 paddle."""
EXTRA_MASS = 0.6
"""A valid scene (:func:`scene_check`) holds at most ``1 + EXTRA_MASS`` times a whole paddle's colour in each
paddle band and a whole ball's colour in the field: room for blur, not for a second ball or a stripe."""
FAINT = 0.1
"""Colour fractions below this are left out of :func:`scene_check`'s sums (a faint haze is not an object)."""


def scene_check(frames: np.ndarray | torch.Tensor, preprocess: Preprocess) -> dict[str, np.ndarray]:
    """Is each preprocessed frame (N, C, H, W) in [0, 1] a valid Pong scene? It reads as Pong (the field's
    colour), the player's paddle is found in its columns (:func:`find_objects`), the enemy's is found there or
    wholly hidden (the real game hides it above or below the field in about 5% of frames, never the
    player's), neither is larger than one paddle (its band's paddle colour, summed, at most ``1 + EXTRA_MASS``
    paddles: a full-height stripe is about ten), and there is at most one ball (the field's ball colour,
    summed, at most ``1 + EXTRA_MASS`` balls: two balls or an X are not one). Returns ``{"valid", "pong",
    "player", "enemy", "one_ball", "ball": (N,) bool, "balls": (N,) float}``, ``ball`` whether
    :func:`find_objects` finds a ball (a valid scene may have none), ``balls`` the field's ball colour in whole
    balls."""
    m = _maps(frames, preprocess)
    out = {"pong": m["pong"].copy()}
    paddle_mass = PADDLE_AREA / m["pixel_area"]
    for name, band in m["bands"].items():
        found = _paddle(m["b"][name], band, m["rows"], m["ys"], m["xs"])[:, 0] > 0
        b = np.clip(m["b"][name][:, :, band], 0.0, 1.0) * m["rows"][None, :, None]
        mass = np.where(b >= FAINT, b, 0.0).sum(axis=(1, 2)) / paddle_mass
        there = found | (name == "enemy") & (mass < FAINT)
        out[name] = there & (mass <= 1.0 + EXTRA_MASS)
    a = np.clip(m["a"], 0.0, 1.0)
    balls = np.where(a >= FAINT, a, 0.0).sum(axis=(1, 2)) / m["ball_mass"]
    out["balls"] = balls
    out["ball"] = m["pong"] & (_ball(m["a"], m["ys"], m["xs"], full_mass=m["ball_mass"])[:, 0] > 0)
    out["one_ball"] = balls <= 1.0 + EXTRA_MASS
    out["valid"] = out["pong"] & out["player"] & out["enemy"] & out["one_ball"]
    return out


def ram_centres(ram: np.ndarray) -> dict[str, np.ndarray]:
    """RAM ground truth (T, 128) -> ``{name: (T, 3) float32 [visible, x, y]}`` box centres, raw pixels."""
    boxes = ram_objects("Pong", ram)
    out = {}
    for name in OBJECTS:
        box = boxes[name]  # (T, 5) [visible, x, y, w, h]
        out[name] = np.stack([box[:, 0], box[:, 1] + box[:, 3] / 2, box[:, 2] + box[:, 4] / 2], axis=1)
    return out


def centre_errors(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, 3) found and (N, 3) truth [flag, x, y] -> (N,) Euclidean distance, NaN unless both are set."""
    both = (found[:, 0] > 0) & (truth[:, 0] > 0)
    dist = np.hypot(found[:, 1] - truth[:, 1], found[:, 2] - truth[:, 2])
    return np.where(both, dist, np.nan)


# ---------------------------------------------------------------------- object vectors and drawing
SIZES = {"player": (4.0, 16.0), "enemy": (4.0, 16.0), "ball": (2.0, 4.0)}
"""Raw (width, height) in pixels of each object as drawn by :func:`render`."""
COLOURS = {"player": PLAYER, "enemy": ENEMY, "ball": BALL}
_SCALE = np.array([RAW_SHAPE[1] / 2, RAW_SHAPE[0] / 2], dtype=np.float32)
"""Raw pixels per normalised unit along (x, y): x in [0, 160] and y in [0, 210] map to [-1, 1]."""


def to_vectors(centres: dict[str, np.ndarray]) -> np.ndarray:
    """``{name: (N, 3) [flag, x, y]}`` in raw pixels -> (N, 3 objects, 3) ``[present, x, y]``, x and y
    in [-1, 1] (0 where absent), objects in :data:`OBJECTS` order."""
    out = np.stack([centres[name] for name in OBJECTS], axis=1).astype(np.float32)  # (N, 3, 3)
    present = out[..., :1] > 0
    out[..., 1:] = np.where(present, out[..., 1:] / _SCALE - 1.0, 0.0)
    out[..., 0] = present[..., 0]
    return out


def frame_vectors(frames: np.ndarray | torch.Tensor, preprocess: Preprocess) -> np.ndarray:
    """Object vectors (N, 3, 3) read from preprocessed frames (N, C, H, W) by :func:`find_objects`."""
    return to_vectors(find_objects(frames, preprocess))


def ram_vectors(ram: np.ndarray) -> np.ndarray:
    """Object vectors (..., 3, 3) from RAM (..., 128): the training targets of object models."""
    ram = np.asarray(ram)
    flat = ram.reshape(-1, ram.shape[-1])  # (..., 128) -> (N, 128)
    return to_vectors(ram_centres(flat)).reshape(*ram.shape[:-1], len(OBJECTS), 3)


def _coverage(lo: torch.Tensor, hi: torch.Tensor, start: float, stop: float, n: int) -> torch.Tensor:
    """Fraction of each of ``n`` equal cells of [start, stop] covered by [lo, hi]; (B, K) -> (B, K, n)."""
    step = (stop - start) / n
    edges = start + step * torch.arange(n + 1, device=lo.device, dtype=lo.dtype)
    left, right = edges[:-1], edges[1:]  # (n,)
    overlap = torch.minimum(hi[..., None], right) - torch.maximum(lo[..., None], left)  # (B, K, n)
    return overlap.clamp(min=0.0) / step


def render(vectors: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """Draw object vectors (B, 3, 3) as preprocessed frames (B, C, H, W) in [0, 1].

    Each present object is a rectangle of its :data:`SIZES` and :data:`COLOURS` on the field colour,
    area-averaged into the model's pixels as ``cv2.INTER_AREA`` does (the ball is a fraction of one pixel).
    """
    top, bottom, left, right = preprocess.crop if preprocess.crop is not None else (0, RAW_SHAPE[0], 0, RAW_SHAPE[1])
    h, w = preprocess.size
    dev, dtype = vectors.device, vectors.dtype
    sizes = torch.tensor([SIZES[n] for n in OBJECTS], device=dev, dtype=dtype)  # (3, 2) raw (w, h)
    scale = torch.as_tensor(_SCALE, device=dev, dtype=dtype)
    centre = (vectors[..., 1:] + 1.0) * scale  # (B, 3, 2) raw pixels
    lo, hi = centre - sizes / 2, centre + sizes / 2
    cover_x = _coverage(lo[..., 0], hi[..., 0], left, right, w)  # (B, 3, W)
    # objects are hidden behind the walls: clip them to the field rows
    cover_y = _coverage(lo[..., 1].clamp(min=FIELD_Y[0]), hi[..., 1].clamp(max=FIELD_Y[1]), top, bottom, h)  # (B, 3, H)
    alpha = vectors[..., 0, None, None] * cover_y[..., :, None] * cover_x[..., None, :]  # (B, 3, H, W)
    colours = np.stack([COLOURS[n] for n in OBJECTS])  # (3, 3) RGB
    field = FIELD
    if preprocess.grayscale:
        colours, field = (colours @ _LUMA)[:, None], np.array([FIELD @ _LUMA])
    col = torch.as_tensor(colours, device=dev, dtype=dtype)  # (3, C)
    bg = torch.as_tensor(field, device=dev, dtype=dtype).view(1, -1, 1, 1)  # (1, C, 1, 1)
    ink = torch.einsum("bkhw,kc->bchw", alpha, col - bg[0, :, 0, 0])  # (B, C, H, W)
    return (bg + ink).clamp(0.0, 1.0)
