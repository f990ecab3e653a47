"""Frames-only object extraction: SPACE-Time's objects, pixel-exact, in classes found without labels.

A trained ``space_time`` checkpoint finds objects on a grid (one per cell) and embeds each one's
appearance (``z_what``). On its own it loses Pong's ball in 15% of the frames where the ball is
within 8 px of a paddle (both fall in one cell, and the motion hints it learned from merge them),
and its boxes are loose. The extractor here keeps SPACE-Time's embedding and adds the
**foreground components** (:mod:`dataset_tools.components`: one-colour connected pixels that
differ from a background image, exact to the pixel), so that:

* every component is an object, its box exact; SPACE-Time's glimpse encoder gives its ``z_what``
  (a glimpse cut at the box), and the nearest class centroid its class;
* a SPACE-Time detection that no component covers (an object the background hides) is an object
  too, with SPACE-Time's box;
* classes are KMeans clusters of ``z_what`` fitted on the data's own frames (their number chosen by
  the silhouette score unless given), ordered by size (largest first): no labels, no RAM.

Each class has one **slot** or (cars, bricks, fists: several objects of one class on screen at once) a
set of them, as many as the fitted data shows together (``slots`` in the class's spec). Per frame a
one-slot class's largest object fills its slot; a class with several slots holds its largest objects,
each **tracked** from frame to frame (matched to the slot that held the nearest object of that class in
the frame before, within ``track_px``), so an object keeps its slot while it lives; an object that
appears takes a free slot, one that vanishes leaves its slot empty (``present`` 0)::

    slot = [present, x, y, w, h]     centre and size in raw-frame units: x / 80 - 1, y / 105 - 1, w / 80, h / 105

Slots are laid out class by class (largest class first), a class's slots side by side.

A fitted extractor is a directory (``fit_extractor`` writes it, :func:`load_extractor` reads it)::

    extractor.json   the spec: SPACE-Time's config, crop, classes (centroids, sizes), tiers, digest
    extractor.pt     weights-only state dict: SPACE-Time's weights, the background, class sprites
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from tqdm import tqdm

from dataset_tools.background import background_images
from dataset_tools.components import DEFAULT_THRESHOLD, foreground_components, merge_specks
from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import RAW_SHAPE, Preprocess
from world_models.base import build_model
from world_models.checkpoint import CheckpointError, load_model, read_config, resolve_checkpoint
from world_models.space.scene import zwhere_to_box

log = logging.getLogger(__name__)

SLOT_FIELDS = ("present", "x", "y", "w", "h")
UNITS = (RAW_SHAPE[1] / 2, RAW_SHAPE[0] / 2)
"""Raw pixels per slot unit along x and y (the raw 160-wide, 210-high frame spans [-1, 1])."""
SPRITE = 16
"""Side of each class's sprite (RGBA, drawn scaled to the object's box)."""
GLIMPSE_PAD = 1.0
"""Pixels (of SPACE-Time's frame) added around a component's box before its glimpse is cut."""
SPACE_ONLY_PRES = 0.9
"""A SPACE-Time detection no component covers counts only above this ``z_pres``."""
MIN_SHARE = 0.02
"""A class found without a given number of classes has objects in at least this share of the sampled frames."""
SPEC_FILE, WEIGHTS_FILE = "extractor.json", "extractor.pt"


MAX_BOX_SHARE = 0.5
"""Share of the crop's width and height a component's box may span (or twice SPACE-Time's ``z_scale_max``, if
larger) and still be an object; written into every extractor fitted from now on as ``max_box`` (pixels).
Those fitted before it keep twice ``z_scale_max``, which dropped every boxer of Boxing (47 px of a 141 px
ring, over the 35 px that ``z_scale_max`` 0.125 allows)."""
MAX_SLOTS = 8
"""Most slots a class gets when fitted (its objects beyond that many, the smallest, are left out)."""
MULTI_SHARE = 0.02
"""A class gets ``n`` slots when at least this share of the sampled frames show ``n`` or more of its objects."""
TRACK_PX = 16.0
"""Largest centre distance (raw pixels) between an object and the one its slot held the frame before for it
to keep that slot; written into every extractor fitted from now on."""

SIZE_GATE = 4.0
"""Largest ratio between an object's pixel area and a class's median area for it to be of that class
(see :meth:`ObjectExtractor.classify`); written into every extractor fitted from now on."""

SPECK_PX = 2
"""Components of at most this many pixels that touch a larger one are part of it (``speck_px`` in the spec,
see :func:`dataset_tools.components.merge_specks`): Freeway's cars are an 8 x 8 body with four 2 x 1 wheels
of another colour, and without it each wheel was an object (40 a frame), clustered apart from the cars,
which took the other class together with the chicken. Written into every extractor fitted from now on;
those fitted before it merge nothing."""


class ExtractorError(ValueError):
    """An extractor that cannot be fitted or loaded; the message says why."""


def _space_spec(space_dir: Path) -> dict[str, Any]:
    config = read_config(space_dir)
    if config.model != "space_time":
        raise ExtractorError(f"{space_dir}: a {config.model} checkpoint, not a space_time one")
    return {
        "model_config": config.model_config,
        "frame_shape": list(config.frame_shape),
        "n_actions": config.n_actions,
        "preprocess": config.preprocess,
        "game": config.game,
    }


def slot_classes(spec: dict[str, Any]) -> np.ndarray:
    """The class of each slot (S,) of an extractor spec: each class's ``slots`` (extractors fitted before
    classes had sets: one each) side by side, in class order."""
    counts = [int(c.get("slots", 1)) for c in spec["classes"]]
    if min(counts, default=1) < 1:
        raise ExtractorError(f"every class needs at least one slot, got {counts}")
    return np.repeat(np.arange(len(counts)), counts)


class ObjectExtractor(nn.Module):
    """Frames (crops of the raw frame, uint8) -> per-class slots; see the module docstring.

    Built from a spec (``extractor.json``); its weights (SPACE-Time's, the background, the sprites)
    come from ``extractor.pt`` or from a checkpoint that holds this module.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        space = spec["space"]
        self.space = build_model("space_time", dict(space["model_config"]), tuple(space["frame_shape"]), 1)
        self.space.requires_grad_(False)
        self.space.eval()
        self.crop = tuple(int(v) for v in spec["crop"])  # (top, bottom, left, right) raw pixels
        top, bottom, left, right = self.crop
        self.height, self.width = bottom - top, right - left
        self.img = int(space["model_config"]["img_size"])
        classes = spec["classes"]
        dim = int(space["model_config"]["z_what_dim"])
        self.n_classes = len(classes)
        self.slot_class = slot_classes(spec)
        """The class of each slot (S,)."""
        self.class_slots = np.bincount(self.slot_class, minlength=self.n_classes).tolist()
        self.n_slots = len(self.slot_class)
        self.slot_start = np.concatenate([[0], np.cumsum(self.class_slots)[:-1]]).astype(int)
        self.tracks = self.n_slots > self.n_classes
        """Whether a class has several slots, so a frame's slots depend on the frame before."""
        self.track_px = float(spec.get("track_px", TRACK_PX))
        z_scale_max = float(space["model_config"].get("z_scale_max", 0.25))
        box = spec.get("max_box")
        self.max_box = (
            np.array(box, float) if box is not None else 2 * z_scale_max * np.array([self.width, self.height])
        )
        """The largest box (w, h) a component may have and be an object (crop pixels)."""
        self.threshold = float(spec.get("threshold", DEFAULT_THRESHOLD))
        self.size_gate = float(spec.get("size_gate", 0.0))  # extractors fitted before it have none: off
        self.speck_px = int(spec.get("speck_px", 0))  # likewise
        self.class_areas = np.array([float(c.get("area", 0.0)) for c in classes])
        self.register_buffer("background", torch.zeros(self.height, self.width, 3, dtype=torch.uint8))
        self.register_buffer("centroids", torch.tensor([c["centroid"] for c in classes], dtype=torch.float32))
        self.register_buffer("feature_mean", torch.tensor(spec["feature_mean"], dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(spec["feature_std"], dtype=torch.float32))
        self.register_buffer("sprites", torch.zeros(self.n_classes, 4, SPRITE, SPRITE))
        if self.centroids.shape != (self.n_classes, dim):
            raise ExtractorError(f"class centroids of shape {tuple(self.centroids.shape)}, z_what has {dim} numbers")

    def train(self, mode: bool = True) -> ObjectExtractor:
        super().train(mode)
        self.space.eval()  # SPACE-Time always infers (no sampling)
        return self

    # ------------------------------------------------------------------ per-frame objects
    def _resized(self, crops: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 crops -> SPACE-Time's frames (N, 3, img, img) float in [0, 1]."""
        small = np.stack([cv2.resize(c, (self.img, self.img), interpolation=cv2.INTER_AREA) for c in crops])
        device = self.centroids.device
        return torch.from_numpy(small).to(device).permute(0, 3, 1, 2).float() / 255.0  # (N, H, W, 3) -> (N, 3, H, W)

    def _z_where(self, boxes: np.ndarray, pad: float) -> np.ndarray:
        """Crop-pixel boxes (..., 4) [x, y, w, h] -> SPACE-Time's ``z_where`` (..., 4) [w, h, cx, cy]."""
        sx, sy = self.img / self.width, self.img / self.height
        w = (boxes[..., 2] * sx + 2 * pad) / self.img
        h = (boxes[..., 3] * sy + 2 * pad) / self.img
        cx = (boxes[..., 0] + boxes[..., 2] / 2) * sx / (self.img / 2) - 1
        cy = (boxes[..., 1] + boxes[..., 3] / 2) * sy / (self.img / 2) - 1
        return np.stack([w, h, cx, cy], axis=-1).astype(np.float32)

    def _components(self, crop: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The foreground components of one crop no larger than ``max_box`` (a frame flashed in other colours
        is no object), and their id image (renumbered)."""
        comp, ids = foreground_components(crop, background, self.threshold, with_ids=True)
        comp, ids = merge_specks(comp, ids, self.speck_px)
        small = (comp[:, 2] <= self.max_box[0]) & (comp[:, 3] <= self.max_box[1])
        if small.all():
            return comp, ids
        lookup = np.zeros(len(comp) + 1, dtype=np.int32)
        lookup[1:][small] = np.arange(1, small.sum() + 1)
        return comp[small], lookup[ids]

    @torch.no_grad()
    def objects(self, crops: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Every object of each frame: ``boxes`` (K, 4) [x, y, w, h] in crop pixels, ``area`` (K,),
        ``z_what`` (K, D), ``source`` (K,) 0 for a component, 1 for a SPACE-Time detection alone.

        A component's ``z_what`` is SPACE-Time's glimpse encoding of the component **alone** (the frame
        with every other pixel set to the background), so a ball drawn over a paddle looks like a ball.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.height, self.width, 3) or crops.dtype != np.uint8:
            raise ExtractorError(
                f"expected uint8 crops (N, {self.height}, {self.width}, 3), got {crops.dtype} {crops.shape}"
            )
        if len(crops) == 0:
            return []
        background = self.background.cpu().numpy()
        found = [self._components(c, background) for c in crops]
        x = self._resized(crops)
        device = x.device
        pres_logits, z_where = self.space.fg.locate(x)
        scale = np.array([self.width / self.img, self.height / self.img] * 2)
        space_boxes = zwhere_to_box(z_where, self.img, self.img).cpu().numpy() * scale  # (N, G*G, 4) crop pixels
        space_pres = torch.sigmoid(pres_logits).cpu().numpy()
        # a component's glimpse, cut from the frame, or from the component alone on the background where
        # another component's pixels come within 2 pixels of its box
        comp_what = np.zeros((0, self.space.cfg.z_what_dim), dtype=np.float32)
        rows = [(i, k) for i, (comp, _) in enumerate(found) for k in range(len(comp))]
        if rows:
            zw = np.concatenate([self._z_where(comp[:, :4].astype(np.float64), GLIMPSE_PAD) for comp, _ in found])
            frame_of = torch.tensor([i for i, _ in rows], device=device)
            images = x[frame_of]  # (M, 3, img, img)
            crowded = [m for m, (i, k) in enumerate(rows) if _crowded(found[i][1], found[i][0][k], k + 1)]
            if crowded:
                alone = [
                    np.where((found[rows[m][0]][1] == rows[m][1] + 1)[..., None], crops[rows[m][0]], background)
                    for m in crowded
                ]
                images[torch.tensor(crowded, device=device)] = self._resized(np.stack(alone))
            comp_what = self.space.fg.what(images, torch.from_numpy(zw[:, None]).to(device))[:, 0].cpu().numpy()
        extra = []  # per frame the SPACE-Time detections no component covers
        for i, (comp, _) in enumerate(found):
            keep = np.nonzero(space_pres[i] > SPACE_ONLY_PRES)[0]
            b, sb = comp[:, :4].astype(np.float64), space_boxes[i, keep]
            if len(b) and len(sb):
                ix = np.minimum(sb[:, None, 0] + sb[:, None, 2], b[None, :, 0] + b[None, :, 2]) - np.maximum(
                    sb[:, None, 0], b[None, :, 0]
                )
                iy = np.minimum(sb[:, None, 1] + sb[:, None, 3], b[None, :, 1] + b[None, :, 3]) - np.maximum(
                    sb[:, None, 1], b[None, :, 1]
                )
                keep = keep[~((ix > 0) & (iy > 0)).any(1)]
            extra.append(keep)
        space_what: dict[int, np.ndarray] = {}
        for i, keep in enumerate(extra):
            if len(keep):
                space_what[i] = (
                    self.space.fg.what(x[i : i + 1], z_where[i : i + 1, torch.from_numpy(keep)])[0].cpu().numpy()
                )
        out, first = [], 0
        for i, (comp, _) in enumerate(found):
            keep = extra[i]
            boxes = np.concatenate([comp[:, :4].astype(np.float64), space_boxes[i, keep]])
            area = boxes[:, 2] * boxes[:, 3]
            area[: len(comp)] = comp[:, 4]
            what = [comp_what[first : first + len(comp)], space_what.get(i, np.zeros((0, comp_what.shape[1])))]
            first += len(comp)
            source = np.concatenate([np.zeros(len(comp), np.int64), np.ones(len(keep), np.int64)])
            out.append(
                {"boxes": boxes, "area": area, "z_what": np.concatenate(what).astype(np.float32), "source": source}
            )
        return out

    def classify(self, z_what: np.ndarray, area: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest class centroid of each ``z_what`` (K, D) (standardised): classes (K,), distances (K,).

        With the spec's ``size_gate`` (a ratio, ``SIZE_GATE`` for extractors fitted now) and the objects'
        pixel ``area`` (K,), only classes whose median area is within that ratio of the object's are
        candidates (all of them if none is): a ball against a wall, whose glimpse is cut by the crop's
        edge, is not taken for a paddle 8x its size."""
        if len(z_what) == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        f = (z_what - self.feature_mean.cpu().numpy()) / self.feature_std.cpu().numpy()
        d = np.linalg.norm(f[:, None] - self.centroids.cpu().numpy()[None], axis=-1)  # (K, C)
        if self.size_gate > 0 and area is not None and (self.class_areas > 0).all():
            a = np.maximum(np.asarray(area, dtype=np.float64)[:, None], 1.0)  # (K, 1)
            ratio = np.maximum(a / self.class_areas[None], self.class_areas[None] / a)  # (K, C)
            far = ratio > self.size_gate
            far[far.all(1)] = False  # no class of its size: the nearest of all
            d = np.where(far, np.inf, d)
        return d.argmin(1), d.min(1)

    def slots_of(self, objects: list[dict[str, np.ndarray]], previous: np.ndarray | None = None) -> np.ndarray:
        """The slots (N, S, 5) float32 of consecutive frames' objects (absent slots all zero); ``previous``
        (S, 5): those of the frame before the first (None: the first starts afresh)."""
        out = np.zeros((len(objects), self.n_slots, len(SLOT_FIELDS)), dtype=np.float32)
        for i, obj in enumerate(objects):
            out[i] = self._frame_slots(obj, out[i - 1] if i else previous)
        return out

    def slots_after(self, objects: list[dict[str, np.ndarray]], previous: np.ndarray | None) -> np.ndarray:
        """The slots (N, S, 5) of frames of separate games, each after its own ``previous[i]`` (N, S, 5)
        (None: every frame afresh)."""
        out = np.zeros((len(objects), self.n_slots, len(SLOT_FIELDS)), dtype=np.float32)
        for i, obj in enumerate(objects):
            out[i] = self._frame_slots(obj, None if previous is None else previous[i])
        return out

    def _frame_slots(self, obj: dict[str, np.ndarray], previous: np.ndarray | None) -> np.ndarray:
        """One frame's slots (S, 5) from its objects, a multi-slot class's tracked from ``previous`` (S, 5)."""
        top, _, left, _ = self.crop
        out = np.zeros((self.n_slots, len(SLOT_FIELDS)), dtype=np.float32)
        cls, _ = self.classify(obj["z_what"], obj["area"])
        for c in range(self.n_classes):
            mine = np.nonzero(cls == c)[0]
            if len(mine) == 0:
                continue
            k, first = self.class_slots[c], int(self.slot_start[c])
            mine = mine[np.argsort(-obj["area"][mine], kind="stable")][:k]  # its largest objects
            x, y, w, h = obj["boxes"][mine].T
            boxes = np.stack(
                [np.ones(len(mine)), (left + x + w / 2) / UNITS[0] - 1, (top + y + h / 2) / UNITS[1] - 1,
                 w / UNITS[0], h / UNITS[1]], axis=1,
            )  # fmt: skip
            if k == 1:
                out[first] = boxes[0]
                continue
            where = _track(boxes, None if previous is None else previous[first : first + k], self.track_px)
            out[first + where] = boxes
        return out

    def slots(self, crops: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W, 3) uint8 crops of consecutive frames -> (N, S, 5) float32 slots ``[present, x, y, w, h]``
        (``previous``: see :meth:`slots_of`)."""
        return self.slots_of(self.objects(crops), previous)

    # ------------------------------------------------------------------ drawing
    def render(self, slots: torch.Tensor) -> torch.Tensor:
        """Draw slots (B, S, 5) as crops (B, 3, H, W) in [0, 1]: each present object its class's sprite scaled
        to its box, in class order (the smallest objects last, on top), over the background."""
        b = slots.shape[0]
        dev, dtype = slots.device, slots.dtype
        top, _, left, _ = self.crop
        image = (self.background.to(dtype).permute(2, 0, 1) / 255.0).expand(b, -1, -1, -1)  # (B, 3, H, W)
        ys = torch.arange(self.height, device=dev, dtype=dtype) + 0.5 + top  # raw pixel centres
        xs = torch.arange(self.width, device=dev, dtype=dtype) + 0.5 + left
        for j, c in enumerate(self.slot_class):
            s = slots[:, j]
            cx, cy = (s[:, 1] + 1) * UNITS[0], (s[:, 2] + 1) * UNITS[1]  # (B,) raw pixels
            w, h = (s[:, 3] * UNITS[0]).clamp(min=0.5), (s[:, 4] * UNITS[1]).clamp(min=0.5)
            u = (xs[None] - cx[:, None]) / (w[:, None] / 2)  # (B, W) in (-1, 1) inside the box
            v = (ys[None] - cy[:, None]) / (h[:, None] / 2)  # (B, H)
            grid = torch.stack([u[:, None, :].expand(b, self.height, -1), v[:, :, None].expand(b, -1, self.width)], -1)
            sprite = self.sprites[c].to(dtype).expand(b, -1, -1, -1)  # (B, 4, S, S)
            drawn = torch.nn.functional.grid_sample(
                sprite, grid, mode="nearest", padding_mode="zeros", align_corners=False
            )
            alpha = drawn[:, 3:] * s[:, 0, None, None, None]  # absent objects draw nothing
            image = alpha * drawn[:, :3] + (1 - alpha) * image
        return image


def _track(boxes: np.ndarray, previous: np.ndarray | None, max_px: float) -> np.ndarray:
    """Which of a class's ``k`` slots each of its objects ``boxes`` (n <= k, 5) takes, given the slots
    ``previous`` (k, 5) held the frame before (None: none): the nearest earlier objects keep their slots
    (one to one, centres within ``max_px`` raw pixels); the others take free slots, first those empty the
    frame before, in order of their place (top to bottom, then left to right)."""
    n, units = len(boxes), np.array(UNITS)
    k = n if previous is None else len(previous)
    where = np.full(n, -1)
    taken = np.zeros(k, bool)
    if previous is not None and (previous[:, 0] > 0).any():
        held = np.nonzero(previous[:, 0] > 0)[0]
        d = np.linalg.norm((boxes[:, None, 1:3] - previous[None, held, 1:3]) * units, axis=-1)  # (n, held)
        rows, cols = linear_sum_assignment(d)
        for r, c in zip(rows, cols, strict=True):
            if d[r, c] <= max_px:
                where[r], taken[held[c]] = held[c], True
    empty_before = np.zeros(k, bool) if previous is None else previous[:, 0] <= 0
    free = [j for j in range(k) if not taken[j] and (previous is None or empty_before[j])]
    free += [j for j in range(k) if not taken[j] and previous is not None and not empty_before[j]]
    rest = [i for i in np.lexsort((boxes[:, 1], boxes[:, 2])) if where[i] < 0]  # top to bottom, left to right
    for i, j in zip(rest, free, strict=False):
        where[i] = j
    return where


# ---------------------------------------------------------------------- fitting
def _crowded(ids: np.ndarray, box: np.ndarray, k: int, margin: int = 2) -> bool:
    """Whether pixels of components other than ``k`` lie within ``margin`` pixels of ``box`` [x, y, w, h, ...]."""
    x, y, w, h = (int(v) for v in box[:4])
    window = ids[max(y - margin, 0) : y + h + margin, max(x - margin, 0) : x + w + margin]
    return bool(((window != 0) & (window != k)).any())


def _sample_crops(
    ds: DatasetDir, episodes: list[int], n: int, crop: tuple[int, int, int, int], seed: int
) -> np.ndarray:
    """``n`` frames drawn evenly at random from ``episodes``, cropped: (n, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    lengths = np.array([int(ds.load(e).frames.shape[0]) for e in episodes])
    picks = np.sort(rng.choice(int(lengths.sum()), size=min(n, int(lengths.sum())), replace=False))
    bounds = np.cumsum(lengths)
    which = np.searchsorted(bounds, picks, side="right")
    top, bottom, left, right = crop
    out = []
    for e in np.unique(which):
        frames = ds.load(episodes[e], mmap=True).frames
        for p in picks[which == e]:
            out.append(np.asarray(frames[int(p - (bounds[e] - lengths[e]))])[top:bottom, left:right])
    return np.stack(out)


def _choose_k(features: np.ndarray, classes: int, max_classes: int, seed: int, least: int = 0) -> tuple[int, Any]:
    """KMeans of ``features``: ``classes`` clusters, or (0) the number in 2..``max_classes`` with the best
    silhouette score among those whose every cluster holds at least ``least`` objects (a few odd
    objects make a cluster of their own that scores well but is no class). Returns (k, the fitted KMeans)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    def fit(k: int) -> Any:
        return KMeans(k, n_init=10, random_state=seed).fit(features)

    if classes > 0:
        if len(features) < classes:
            raise ExtractorError(f"{len(features)} objects in the sampled frames, fewer than classes={classes}")
        return classes, fit(classes)
    best = None
    for k in range(2, min(max_classes, len(features) - 1) + 1):
        km = fit(k)
        smallest = int(np.bincount(km.labels_, minlength=k).min())
        score = silhouette_score(features, km.labels_, sample_size=min(len(features), 4000), random_state=seed)
        log.info("extractor: %d classes, silhouette %.3f, smallest class %d objects", k, score, smallest)
        if smallest >= least and (best is None or score > best[0]):
            best = (score, k, km)
    if best is None:
        raise ExtractorError(
            f"{len(features)} objects in the sampled frames: too few to find classes of {least} or more"
        )
    if best[1] == max_classes:
        log.warning(
            "extractor: the silhouette score chose the most classes allowed (%d); a game with more kinds of "
            "objects needs more (slot_dynamics max_classes=, loop extractor_max_classes=)",
            max_classes,
        )
    return best[1], best[2]


def _slot_count(counts: np.ndarray, max_slots: int) -> int:
    """Slots of a class whose objects per sampled frame are ``counts``: the most objects seen together in at
    least ``MULTI_SHARE`` of the frames (at least 1, at most ``max_slots``)."""
    n = 1
    while n < max_slots and (counts >= n + 1).mean() >= MULTI_SHARE:
        n += 1
    return n


def _tiers(areas: list[float], ratio: float = 2.0) -> list[list[int]]:
    """Classes (ordered by area, largest first) grouped into tiers of similar size: a class starts a new
    tier when its area is below the tier's first by more than ``ratio``."""
    tiers: list[list[int]] = []
    for c, a in enumerate(areas):
        if tiers and areas[tiers[-1][0]] <= a * ratio:
            tiers[-1].append(c)
        else:
            tiers.append([c])
    return tiers


def fit_extractor(
    space: str | Path,
    data: str | Path,
    out: str | Path,
    classes: int = 0,
    max_classes: int = 8,
    frames: int = 3000,
    max_slots: int = MAX_SLOTS,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    val_fraction: float = 0.1,
    progress: bool = True,
) -> Path:
    """Fit an extractor on the training episodes of ``data`` around the ``space_time`` checkpoint ``space``
    and write it to ``out`` (see the module docstring). Returns ``out``.

    The background is the per-pixel mode of up to 2,000 sampled frames; the classes are KMeans clusters
    of the ``z_what`` of every object in ``frames`` sampled frames (``classes`` of them, or chosen by the
    silhouette score up to ``max_classes``), ordered by their median area, largest first. Each class gets as
    many slots (up to ``max_slots``) as it has objects together in at least ``MULTI_SHARE`` of those frames.
    """
    space_dir = resolve_checkpoint(space)
    space_spec = _space_spec(space_dir)
    ds = DatasetDir(data)
    manifest = ds.read_manifest()
    if space_spec.get("game") != manifest.get("game"):
        raise ExtractorError(
            f"{space_dir} was trained on {space_spec.get('game')}, {data} holds {manifest.get('game')}"
        )
    crop = Preprocess.from_dict(space_spec["preprocess"]).crop or (0, RAW_SHAPE[0], 0, RAW_SHAPE[1])
    train_eps, _ = ds.split(val_fraction)
    if not train_eps:
        raise ExtractorError(f"{data}: no training episodes")
    crops = _sample_crops(ds, train_eps, frames, crop, seed)
    background, _ = background_images(crops[: min(len(crops), 2000)])
    dim = int(space_spec["model_config"]["z_what_dim"])
    spec: dict[str, Any] = {
        "format": 1,
        "space": {**space_spec, "digest": _file_digest(space_dir / "model.pt")},
        "crop": list(crop),
        "threshold": threshold,
        "size_gate": SIZE_GATE,
        "speck_px": SPECK_PX,
        "track_px": TRACK_PX,
        "max_box": (
            max(MAX_BOX_SHARE, 2 * float(space_spec["model_config"].get("z_scale_max", 0.25)))
            * np.array([crop[3] - crop[2], crop[1] - crop[0]], float)
        ).tolist(),
        "classes": [{"centroid": [0.0] * dim}],
        "feature_mean": [0.0] * dim,
        "feature_std": [1.0] * dim,
    }
    probe = ObjectExtractor(spec)
    space_model, _ = load_model(space_dir)
    probe.space.load_state_dict(space_model.state_dict())
    probe.background.copy_(torch.from_numpy(background))
    objects = []
    for i in tqdm(range(0, len(crops), 64), desc="fit extractor", unit="batch", disable=not progress):
        objects += probe.objects(crops[i : i + 64])
    what = np.concatenate([o["z_what"] for o in objects])
    if len(what) < 2:
        raise ExtractorError(f"{data}: {len(what)} objects in {len(crops)} sampled frames; nothing to extract")
    mean, std = what.mean(0), what.std(0) + 1e-6
    k, km = _choose_k((what - mean) / std, classes, max_classes, seed, least=int(np.ceil(MIN_SHARE * len(crops))))
    boxes = np.concatenate([o["boxes"] for o in objects])
    area = np.concatenate([o["area"] for o in objects])
    frame_of = np.concatenate([np.full(len(o["boxes"]), i) for i, o in enumerate(objects)])
    stats = []
    for c in range(k):
        m = km.labels_ == c
        stats.append(
            {
                "centroid": km.cluster_centers_[c].tolist(),
                "area": float(np.median(area[m])),
                "size": np.median(boxes[m, 2:], axis=0).tolist(),
                "mean_x": float(np.mean(boxes[m, 0] + boxes[m, 2] / 2)),
                "objects": int(m.sum()),
                "frames": int(len(np.unique(frame_of[m]))),
            }
        )
    per_frame = np.zeros((len(objects), k), dtype=np.int64)  # objects of each class in each sampled frame
    np.add.at(per_frame, (frame_of, km.labels_), 1)
    for c in range(k):
        stats[c]["slots"] = _slot_count(per_frame[:, c], max_slots)
    order = sorted(range(k), key=lambda c: (-stats[c]["area"], stats[c]["mean_x"]))
    spec["classes"] = [stats[c] for c in order]
    spec["feature_mean"], spec["feature_std"] = mean.tolist(), std.tolist()
    spec["tiers"] = _tiers([s["area"] for s in spec["classes"]])
    spec["fit"] = {"data": str(Path(data).resolve()), "frames": len(crops), "objects": len(what), "seed": seed}
    extractor = ObjectExtractor(spec)  # centroids and feature scales from the spec
    extractor.space.load_state_dict(probe.space.state_dict())
    extractor.background.copy_(probe.background)
    relabel = {old: new for new, old in enumerate(order)}
    labels = np.array([relabel[int(c)] for c in km.labels_])
    extractor.sprites.copy_(_sprites(crops, objects, labels, background, k))
    log.info(
        "extractor: %d classes (objects per class %s, median sizes %s px, slots %s), tiers %s",
        k,
        [s["objects"] for s in spec["classes"]],
        [[round(v, 1) for v in s["size"]] for s in spec["classes"]],
        [s["slots"] for s in spec["classes"]],
        spec["tiers"],
    )
    return save_extractor(extractor, out)


def _sprites(
    crops: np.ndarray, objects: list[dict[str, np.ndarray]], labels: np.ndarray, background: np.ndarray, k: int
) -> torch.Tensor:
    """Per class the mean look of its objects: (k, 4, S, S) RGBA, each object's box resized to S x S
    (colour where it differs from the background, alpha the share of objects that cover the pixel)."""
    sums = np.zeros((k, SPRITE, SPRITE, 4))
    counts = np.zeros(k)
    j = 0
    for crop, obj in zip(crops, objects, strict=True):
        for x, y, w, h in obj["boxes"].round().astype(int):
            c = labels[j]
            j += 1
            x0, y0 = max(x, 0), max(y, 0)
            patch, bg = crop[y0 : y + h, x0 : x + w], background[y0 : y + h, x0 : x + w]
            if patch.size == 0:
                continue
            fg = (np.abs(patch.astype(np.int16) - bg.astype(np.int16)).max(-1) > DEFAULT_THRESHOLD).astype(np.float64)
            rgba = np.concatenate([patch / 255.0 * fg[..., None], fg[..., None]], axis=-1)
            sums[c] += cv2.resize(rgba, (SPRITE, SPRITE), interpolation=cv2.INTER_NEAREST)
            counts[c] += 1
    mean = sums / np.maximum(counts, 1)[:, None, None, None]
    alpha = mean[..., 3:]
    rgb = mean[..., :3] / np.maximum(alpha, 1e-6)  # premultiplied -> colour
    out = np.concatenate([rgb.clip(0, 1), alpha], axis=-1)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float()  # (k, S, S, 4) -> (k, 4, S, S)


def _file_digest(*files: Path) -> str:
    h = hashlib.sha1()
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


def save_extractor(extractor: ObjectExtractor, out: str | Path) -> Path:
    """Write ``extractor.json`` and ``extractor.pt`` into ``out`` (each under a temporary name, then renamed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{WEIGHTS_FILE}.{os.getpid()}.tmp"
    torch.save(extractor.state_dict(), tmp)
    os.replace(tmp, out / WEIGHTS_FILE)
    spec = {**extractor.spec, "digest": _file_digest(out / WEIGHTS_FILE)}
    tmp = out / f".{SPEC_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(spec, indent=1))
    os.replace(tmp, out / SPEC_FILE)
    extractor.spec = spec
    return out


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec of a fitted extractor directory."""
    file = Path(path) / SPEC_FILE
    try:
        spec = json.loads(file.read_text())
    except FileNotFoundError:
        raise ExtractorError(f"{file}: missing (fit one with fit_extractor / learned-envs fit-extractor)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExtractorError(f"{file}: corrupted ({err})") from None
    if spec.get("format") != 1 or "classes" not in spec:
        raise ExtractorError(f"{file}: not an object extractor spec")
    return spec


def load_extractor(path: str | Path, device: str | torch.device = "cpu") -> ObjectExtractor:
    """A fitted extractor directory -> the extractor (weights loaded with ``weights_only=True``)."""
    spec = read_spec(path)
    extractor = ObjectExtractor(spec)
    file = Path(path) / WEIGHTS_FILE
    try:
        state = torch.load(file, map_location=device, weights_only=True)
        extractor.load_state_dict(state)
    except FileNotFoundError:
        raise ExtractorError(f"{file}: missing") from None
    except Exception as err:
        raise ExtractorError(f"{file}: corrupted or unreadable ({type(err).__name__}: {err})") from None
    return extractor.to(device)


def is_extractor_dir(path: str | Path) -> bool:
    return (Path(path) / SPEC_FILE).exists()


def require_space(path: str | Path) -> Path:
    """A ``space_time`` checkpoint path, or an :class:`ExtractorError` that says what is expected."""
    try:
        return resolve_checkpoint(path)
    except CheckpointError as err:
        raise ExtractorError(f"{err}; expected a fitted extractor dir ({SPEC_FILE}) or a space_time run") from None
