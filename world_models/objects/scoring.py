"""Score a frames-only extractor against the RAM (the RAM is read here only to score).

An extractor's classes have no names; each is matched to the RAM object it follows most often (a slot
within :data:`MATCH_PX` raw pixels of that object's centre), one class per object. Then, per object:

* **recall**: the share of frames where the RAM shows the object (inside the field) that its class's
  slot is present within :data:`MATCH_PX` of it, overall and **near another object** (its box within
  ``near_px`` of another object's box: for Pong's ball, near a paddle, where a hit or a miss is decided);
* **error**: the median distance of the slot's centre from the RAM's where it is found;
* **precision**: the share of the class's present slots that are within :data:`MATCH_PX` of it;
* recall by band of the object's x (raw pixels), to show where an extractor loses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from dataset_tools.dataset import DatasetDir
from dataset_tools.ram_truth import object_classes, ram_objects
from world_models.objects.moves import UNITS

MATCH_PX = 5.0
"""Largest centre distance (raw pixels) at which a slot counts as the object."""


def slot_centres(slots: np.ndarray) -> np.ndarray:
    """Slots (N, C, 5) -> (N, C, 3) [present, x, y] in raw pixels."""
    out = np.zeros((*slots.shape[:2], 3), dtype=np.float64)
    out[..., 0] = slots[..., 0]
    out[..., 1] = (slots[..., 1] + 1) * UNITS[0]
    out[..., 2] = (slots[..., 2] + 1) * UNITS[1]
    return out


def _gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chebyshev gap (raw px) between boxes (N, 5) [visible, x, y, w, h]; infinite where either is hidden."""
    gx = np.maximum(np.maximum(b[:, 1] - (a[:, 1] + a[:, 3]), a[:, 1] - (b[:, 1] + b[:, 3])), 0)
    gy = np.maximum(np.maximum(b[:, 2] - (a[:, 2] + a[:, 4]), a[:, 2] - (b[:, 2] + b[:, 4])), 0)
    return np.where((a[:, 0] > 0) & (b[:, 0] > 0), np.maximum(gx, gy), np.inf)


def score_slots(
    game: str, slots: np.ndarray, ram: np.ndarray, near_px: float = 8.0, band_px: int = 10
) -> dict[str, Any]:
    """Scores of slots (N, C, 5) of N frames against their RAM (N, 128); see the module docstring."""
    truth = ram_objects(game, ram)
    names = object_classes(game)
    centres = slot_centres(slots)  # (N, C, 3)
    t_centre = {
        n: np.stack([truth[n][:, 1] + truth[n][:, 3] / 2, truth[n][:, 2] + truth[n][:, 4] / 2], -1) for n in names
    }
    hits = {}
    for n in names:
        d = np.linalg.norm(centres[..., 1:] - t_centre[n][:, None], axis=-1)  # (N, C)
        hits[n] = (d <= MATCH_PX) & (centres[..., 0] > 0) & (truth[n][:, 0:1] > 0)
    counts = np.array([[hits[n][:, c].sum() for n in names] for c in range(slots.shape[1])])  # (C, O)
    rows, cols = linear_sum_assignment(-counts)
    mapping = {names[o]: int(c) for c, o in zip(rows, cols, strict=True) if counts[c, o] > 0}
    out: dict[str, Any] = {"frames": len(slots), "classes": {}, "mapping": mapping}
    for n in names:
        visible = truth[n][:, 0] > 0
        others = [m for m in names if m != n]
        near = np.zeros(len(slots), bool)
        for m in others:
            near |= _gap(truth[n], truth[m]) <= near_px
        c = mapping.get(n)
        found = hits[n][:, c] if c is not None else np.zeros(len(slots), bool)
        d = np.linalg.norm(centres[:, c, 1:] - t_centre[n], axis=-1) if c is not None else np.full(len(slots), np.nan)
        present = centres[:, c, 0] > 0 if c is not None else np.zeros(len(slots), bool)
        x = t_centre[n][:, 0]
        bands = []
        for lo in range(0, 160, band_px):
            m = visible & (x >= lo) & (x < lo + band_px)
            if m.any():
                bands.append({"x": [lo, lo + band_px], "frames": int(m.sum()), "recall": float(found[m].mean())})
        out["classes"][n] = {
            "class": c,
            "visible": int(visible.sum()),
            "recall": float(found[visible].mean()) if visible.any() else float("nan"),
            "near_frames": int((visible & near).sum()),
            "recall_near": float(found[visible & near].mean()) if (visible & near).any() else float("nan"),
            "recall_far": float(found[visible & ~near].mean()) if (visible & ~near).any() else float("nan"),
            "precision": float(found[present].mean()) if present.any() else float("nan"),
            "median_error_px": float(np.median(d[found])) if found.any() else float("nan"),
            "by_x": bands,
        }
    return out


def format_scores(scores: dict[str, Any], near_px: float = 8.0) -> str:
    """A Markdown table of :func:`score_slots`' figures, one row per RAM object."""
    lines = [
        f"| object | class | frames | recall | within {near_px:g} px of another object (frames) | elsewhere | precision | median error px |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(value: Any, spec: str) -> str:
        return "-" if value is None or value != value else format(value, spec)

    for n, s in scores["classes"].items():
        lines.append(
            f"| {n} | {f(s['class'], 'd')} | {s['visible']} | {f(s['recall'], '.4f')} | "
            f"{f(s['recall_near'], '.4f')} ({s['near_frames']}) | {f(s['recall_far'], '.4f')} | "
            f"{f(s['precision'], '.4f')} | {f(s['median_error_px'], '.2f')} |"
        )
    return "\n".join(lines)


def score_extractor(
    extractor: Any, data: str | Path, episodes: list[int], max_frames: int | None = None
) -> dict[str, Any]:
    """:func:`score_slots` of an :class:`~world_models.objects.extractor.ObjectExtractor` run over the frames
    of ``episodes`` of ``data`` (at most ``max_frames`` of them, the first ones), against their RAM."""
    ds = DatasetDir(data)
    top, bottom, left, right = extractor.crop
    slots, ram, left_over = [], [], max_frames if max_frames is not None else np.inf
    for ep in episodes:
        episode = ds.load(ep, mmap=True)
        n = int(min(episode.frames.shape[0], left_over))
        for t in range(0, n, 64):
            chunk = np.asarray(episode.frames[t : min(t + 64, n)])[:, top:bottom, left:right]
            slots.append(extractor.slots(np.ascontiguousarray(chunk), slots[-1][-1] if t else None))
        ram.append(np.asarray(episode.ram[:n]))
        left_over -= n
        if left_over <= 0:
            break
    if not slots:
        raise ValueError(f"{data}: no frames in episodes {episodes} to score the extractor on")
    scores = score_slots(str(ds.read_manifest().get("game")), np.concatenate(slots), np.concatenate(ram))
    return {**scores, "episodes": list(episodes)}
