"""Score motion boxes against ground-truth objects read from the RAM (precision / recall per class).

A ground-truth object and a motion box match when their centres are at most ``max_dist`` pixels
apart (IoU is too harsh for 2 x 4 pixel sprites). Matching is greedy by distance, one box per
object. Only frames where every object in ``require_visible`` is on screen count (for Pong: the
ball is in play), and only boxes inside the game's play field, so score digits do not count as
false positives. Each unmatched box is charged to the class of the nearest object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dataset_tools import ram_truth
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError, load_extra
from dataset_tools.preprocess import play_field


@dataclass
class ClassScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / max(p + r, 1e-9)


@dataclass
class BoxScores:
    per_class: dict[str, ClassScore] = field(default_factory=dict)
    frames: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "classes": {
                name: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "tp": s.tp, "fp": s.fp, "fn": s.fn}
                for name, s in self.per_class.items()
            },
        }


def _centres(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, :2] + boxes[:, 2:4] / 2.0  # (N, 4) [x, y, w, h] -> (N, 2) centres


def score_frame(truth: dict[str, np.ndarray], boxes: np.ndarray, max_dist: float, scores: BoxScores) -> None:
    """Update ``scores`` with one frame: ``truth`` {class: (5,) [visible, x, y, w, h]}, ``boxes`` (N, 4)."""
    names = [n for n, row in truth.items() if row[0] > 0]
    for n in truth:
        scores.per_class.setdefault(n, ClassScore())
    if not names:
        return
    gt = np.stack([truth[n][1:] for n in names]).astype(np.float64)  # (K, 4)
    if len(boxes) == 0:
        for n in names:
            scores.per_class[n].fn += 1
        return
    dist = np.linalg.norm(_centres(gt)[:, None, :] - _centres(boxes.astype(np.float64))[None, :, :], axis=-1)  # (K, N)
    matched_gt: set[int] = set()
    matched_box: set[int] = set()
    for flat in np.argsort(dist, axis=None):
        k, j = np.unravel_index(flat, dist.shape)
        if dist[k, j] > max_dist:
            break
        if k in matched_gt or j in matched_box:
            continue
        matched_gt.add(int(k))
        matched_box.add(int(j))
        scores.per_class[names[k]].tp += 1
    for k, n in enumerate(names):
        if k not in matched_gt:
            scores.per_class[n].fn += 1
    for j in range(len(boxes)):
        if j not in matched_box:
            scores.per_class[names[int(np.argmin(dist[:, j]))]].fp += 1


def score_dataset(
    ds: DatasetDir,
    max_dist: float = 5.0,
    classes: tuple[str, ...] | None = None,
    require_visible: tuple[str, ...] | None = None,
) -> BoxScores:
    """Precision / recall of the stored motion boxes against RAM truth, over every episode."""
    manifest = ds.read_manifest()
    game = manifest["game"]
    if game not in ram_truth.GAMES:
        raise DatasetError(f"no RAM ground truth for {game}; supported: {', '.join(ram_truth.GAMES)}")
    if "motion" not in manifest:
        raise DatasetError(f"{ds.root}: no motion boxes yet; run create-dataset --out {ds.root} --root (or --motion)")
    classes = classes or ram_truth.moving_classes(game)
    if require_visible is None:
        require_visible = ("ball",) if "ball" in classes else ()
    top, bottom, left, right = play_field(game)
    scores = BoxScores()
    for ep in ds.episode_dirs():
        labels, motion = load_extra(ep, "labels"), load_extra(ep, "motion")
        if labels is None or motion is None:
            raise DatasetError(f"{ep}: missing labels.npz or motion.npz; re-run create-dataset with --motion")
        boxes = motion["boxes"]  # (N, 5) [t, x, y, w, h]
        cx, cy = boxes[:, 1] + boxes[:, 3] / 2, boxes[:, 2] + boxes[:, 4] / 2
        inside = (cy >= top) & (cy < bottom) & (cx >= left) & (cx < right)
        boxes = boxes[inside]
        n_frames = len(next(iter(labels.values())))
        by_frame = np.split(boxes[:, 1:], np.searchsorted(boxes[:, 0], np.arange(1, n_frames)))
        for t in range(n_frames):
            if any(labels[c][t, 0] <= 0 for c in require_visible):
                continue
            scores.frames += 1
            score_frame({c: labels[c][t] for c in classes}, by_frame[t], max_dist, scores)
    return scores
