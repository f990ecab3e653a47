"""Evaluation of a SPACE / SPACE-Time object extractor against RAM truth (the reference's ``train.eval_on``: ``eval_every`` in training, ``learned-envs evaluate``).

Conventions (the same as :func:`dataset_tools.motion.grid_targets`, whose motion targets the model learns):

* ``z_pres`` (B, N) presence probabilities of the N = G * G grid cells (row-major: cell = row * G + col).
* ``z_where`` (B, N, 4) ``[w, h, cx, cy]``: ``w`` = box width / frame width and ``h`` = box height / frame
  height (a box spanning the whole frame has w = h = 1); ``cx = 2 * (x + w_px / 2) / W - 1`` and
  ``cy = 2 * (y + h_px / 2) / H - 1`` in (-1, 1), -1 the left / top edge, +1 the right / bottom edge.
* ``z_what`` (B, N, D) appearance latents.
* Pixel boxes are ``[x, y, w, h]`` floats, ``(x, y)`` the top-left corner, pixel ``i`` spanning ``[i, i + 1)``.
  The model frame is the preprocessed frame (:class:`~dataset_tools.preprocess.Preprocess`: crop, then
  resize): raw ``x`` maps to ``(x - left) * W / (right - left)``.

Truth: :func:`dataset_tools.ram_truth.ram_objects` boxes of the game's moving classes (Pong: player, enemy,
ball), clipped to the preprocessing crop (the part the model sees). :func:`evaluate_extractor` scores in raw
ALE pixels (predicted boxes mapped back through the preprocessing); IoU does not depend on that choice, centre
distances then mean the same for every model resolution.

Metrics:

* AP (:func:`average_precision`): class-agnostic, VOC all-point interpolated, at IoU thresholds 0.1 .. 0.9 and
  their mean; detections ranked by ``z_pres``; per image, in that order, a detection takes the best-overlapping
  truth not taken yet (COCO-style greedy). Pong's ball is 2 x 4 raw pixels, so a 1-pixel error already costs a
  lot of IoU: high-threshold AP is harsh on it.
* Precision / recall / F-score per class (:func:`box_scores`) of the detections with ``z_pres >= threshold``,
  matched one-to-one, greedily by pair quality, either by centre distance (``centre``, at most ``max_dist``
  pixels, as :mod:`dataset_tools.scoring`) or by IoU (``iou``). An unmatched detection is a false positive of
  the class of the nearest truth object. **The bar (F >= 0.9 for ball and both paddles) uses ``centre`` with
  ``max_dist`` = 5 raw pixels at ``z_pres >= 0.5``.**
* Counting accuracy: share of frames where the number of detections equals the number of visible truth objects.
* Few-shot z_what classifier (:func:`fit_few_shot`): detections matched to truth (centre criterion) give
  (z_what, class) pairs; a scikit-learn ``RidgeClassifier`` is fitted on n = 1, 4, 16, 64 random pairs per class
  and scored on all the other pairs; saved as ``z_what-classifier_{n}.json`` (its coefficients:
  :func:`load_few_shot` or :func:`world_models.space.classifier.load_classifier` read it); it predicts class names.
* KMeans (as many clusters as classes) AMI / ARI of z_what against the classes; a PCA plot of z_what by class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from dataset_tools import ram_truth
from dataset_tools.dataset import write_json
from dataset_tools.preprocess import RAW_SHAPE, Preprocess
from dataset_tools.scoring import ClassScore
from world_models.space.scene import zwhere_to_box

log = logging.getLogger(__name__)

Criterion = Literal["centre", "iou"]
FEW_SHOT_SIZES = (1, 4, 16, 64)
"""Samples per class the few-shot z_what classifiers are trained with."""
CLASSIFIER_FILE = "z_what-classifier_{n}.json"
AP_IOU_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------------------- boxes
class Detections(NamedTuple):
    """The objects found in one image."""

    boxes: np.ndarray  # (K, 4) [x, y, w, h] pixels
    scores: np.ndarray  # (K,) z_pres
    cells: np.ndarray  # (K,) int64 grid cell of each box (index into N)


class Truth(NamedTuple):
    """The visible truth objects of one frame."""

    boxes: np.ndarray  # (M, 4) [x, y, w, h] pixels
    labels: np.ndarray  # (M,) class names


def zwhere_to_boxes(
    z_where: Any, z_pres: Any, threshold: float = 0.5, image_hw: tuple[int, int] = (128, 128)
) -> list[Detections]:
    """(B, N, 4) ``z_where`` and (B, N) ``z_pres`` -> per image the pixel boxes of cells with z_pres >= threshold."""
    where = _np(z_where).astype(np.float64)
    pres = _np(z_pres).astype(np.float64).reshape(len(where), -1)  # (B, N) or (B, N, 1) -> (B, N)
    where = where.reshape(len(where), -1, 4)  # (B, N, 4)
    if where.shape[1] != pres.shape[1]:
        raise ValueError(f"z_where has {where.shape[1]} cells, z_pres {pres.shape[1]}")
    boxes = zwhere_to_box(where, *image_hw)  # (B, N, 4) [x, y, w, h]
    out = []
    for b in range(len(pres)):
        keep = np.nonzero(pres[b] >= threshold)[0]
        out.append(Detections(boxes[b, keep], pres[b, keep], keep))
    return out


def _crop(preprocess: Preprocess) -> tuple[int, int, int, int]:
    return preprocess.crop if preprocess.crop is not None else (0, RAW_SHAPE[0], 0, RAW_SHAPE[1])


def raw_to_model_boxes(boxes: Any, preprocess: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Raw-frame (K, 4) boxes -> (model-frame boxes (K, 4), inside (K,) bool), clipped to the crop first
    (:meth:`Preprocess.boxes`); ``inside`` is false for a box wholly outside the crop."""
    out = preprocess.boxes(boxes)
    return out, (out[:, 2] > 0) & (out[:, 3] > 0)


def model_to_raw_boxes(boxes: Any, preprocess: Preprocess) -> np.ndarray:
    """Model-frame (K, 4) boxes -> raw-frame (K, 4) boxes (the inverse of :func:`raw_to_model_boxes`)."""
    top, bottom, left, right = _crop(preprocess)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = (right - left) / preprocess.size[1], (bottom - top) / preprocess.size[0]
    return np.stack([b[:, 0] * sx + left, b[:, 1] * sy + top, b[:, 2] * sx, b[:, 3] * sy], axis=-1)


def truth_boxes(
    game: str,
    ram: Any,
    preprocess: Preprocess,
    classes: Sequence[str] | None = None,
    frame: Literal["model", "raw"] = "model",
) -> list[Truth]:
    """RAM (T, 128) -> per frame the visible objects of ``classes`` (default: the game's moving classes).

    Boxes are clipped to the preprocessing crop, in model-frame or (clipped) raw pixels.
    """
    classes = tuple(classes or ram_truth.moving_classes(game))
    objects = ram_truth.ram_objects(game, _np(ram).astype(np.uint8))
    rows = np.stack([objects[c] for c in classes], axis=1)  # (T, C, 5) [visible, x, y, w, h]
    t_len = len(rows)
    model, inside = raw_to_model_boxes(rows[..., 1:].reshape(-1, 4), preprocess)  # (T * C, 4)
    boxes = model if frame == "model" else model_to_raw_boxes(model, preprocess)
    boxes = boxes.reshape(t_len, len(classes), 4)
    visible = (rows[..., 0] > 0) & inside.reshape(t_len, len(classes))  # (T, C)
    names = np.array(classes)
    return [Truth(boxes[t, visible[t]], names[visible[t]]) for t in range(t_len)]


def box_iou(a: Any, b: Any) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) ``[x, y, w, h]`` boxes -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    iw = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def centre_distance(a: Any, b: Any) -> np.ndarray:
    """Distance between the centres of (N, 4) and (M, 4) boxes -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ca, cb = a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2  # (N, 2), (M, 2)
    return np.linalg.norm(ca[:, None] - cb[None], axis=-1)


def match_boxes(pred: Any, truth: Any, criterion: Criterion = "centre", threshold: float = 5.0) -> np.ndarray:
    """One-to-one greedy matching, best pair first -> (K,) index of each prediction's truth box, -1 if none.

    ``centre``: centre distance <= ``threshold`` (pixels), equal distances broken by the higher IoU (a ball
    centred on a paddle goes to the ball); ``iou``: IoU >= ``threshold`` (and > 0).
    """
    pred, truth = np.asarray(pred).reshape(-1, 4), np.asarray(truth).reshape(-1, 4)
    out = np.full(len(pred), -1, dtype=np.int64)
    if len(pred) == 0 or len(truth) == 0:
        return out
    if criterion == "iou":
        q = box_iou(pred, truth)
        ok, order = (q >= threshold) & (q > 0), np.argsort(-q, axis=None, kind="stable")
    elif criterion == "centre":
        q = centre_distance(pred, truth)
        ok, order = q <= threshold, np.lexsort((-box_iou(pred, truth).ravel(), q.ravel()))  # ties: higher IoU
    else:
        raise ValueError(f"criterion must be 'centre' or 'iou', got {criterion!r}")
    taken = np.zeros(len(truth), dtype=bool)
    for flat in order:
        j, k = np.unravel_index(flat, q.shape)
        if not ok[j, k]:
            break
        if out[j] < 0 and not taken[k]:
            out[j], taken[k] = k, True
    return out


# -------------------------------------------------------------------------------------- metrics
def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone (right-to-left maximum) precision envelope of a PR curve."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    step = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[step + 1] - r[step]) * p[step + 1]))


def average_precision(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    truth_boxes: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = AP_IOU_THRESHOLDS,
) -> dict[str, Any]:
    """Class-agnostic AP over images: per image (K, 4) boxes, (K,) scores and (M, 4) truth boxes.

    Returns ``{"iou_thresholds": [...], "ap": [...], "mean": float}``; NaN when there is no truth box.
    """
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    scores = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in pred_scores] + [np.zeros(0)])
    tp = np.zeros((len(thr), len(scores)), dtype=bool)
    n_truth, offset = 0, 0
    for boxes, sc, gt in zip(pred_boxes, pred_scores, truth_boxes, strict=True):
        sc, gt = np.asarray(sc).reshape(-1), np.asarray(gt).reshape(-1, 4)
        n_truth += len(gt)
        if len(sc) and len(gt):
            iou = box_iou(boxes, gt)  # (K, M)
            order = np.argsort(-sc, kind="stable")
            order = order[iou[order].max(axis=1) > 0]  # only overlapping detections can be true positives
            for i, t in enumerate(thr):
                free = np.ones(len(gt), dtype=bool)
                for j in order:
                    row = np.where(free, iou[j], -1.0)
                    k = int(np.argmax(row))
                    if row[k] >= t and row[k] > 0:
                        free[k], tp[i, offset + j] = False, True
        offset += len(sc)
    if n_truth == 0:
        return {"iou_thresholds": thr.tolist(), "ap": [math.nan] * len(thr), "mean": math.nan}
    tp = tp[:, np.argsort(-scores, kind="stable")]  # (T, K) in global score order
    ctp = np.cumsum(tp, axis=1)
    precision = ctp / np.arange(1, len(scores) + 1)
    ap = [_voc_ap(ctp[i] / n_truth, precision[i]) for i in range(len(thr))]
    return {"iou_thresholds": thr.tolist(), "ap": ap, "mean": float(np.mean(ap))}


def _score_dict(s: ClassScore) -> dict[str, Any]:
    return {"precision": s.precision, "recall": s.recall, "f1": s.f1, "tp": s.tp, "fp": s.fp, "fn": s.fn}


def box_scores(
    pred_boxes: Sequence[np.ndarray],
    truths: Sequence[Truth],
    classes: Sequence[str],
    criterion: Criterion = "centre",
    threshold: float = 5.0,
) -> dict[str, Any]:
    """Precision / recall / F-score per class and over all classes, detections matched by :func:`match_boxes`.

    An unmatched detection is a false positive of the nearest truth object's class (``fp_unassigned`` when
    its frame has none); it always counts in ``all``.
    """
    per = {c: ClassScore() for c in classes}
    total, unassigned = ClassScore(), 0
    for pred, truth in zip(pred_boxes, truths, strict=True):
        m = match_boxes(pred, truth.boxes, criterion, threshold)
        hit = np.zeros(len(truth.boxes), dtype=bool)
        hit[m[m >= 0]] = True
        for label, h in zip(truth.labels, hit, strict=True):
            per[str(label)].tp += int(h)
            per[str(label)].fn += int(not h)
        extra = np.nonzero(m < 0)[0]
        if len(extra) and len(truth.boxes):
            nearest = np.argmin(centre_distance(np.asarray(pred)[extra], truth.boxes), axis=1)
            for k in nearest:
                per[str(truth.labels[k])].fp += 1
        else:
            unassigned += len(extra)
        total.tp, total.fn, total.fp = total.tp + int(hit.sum()), total.fn + int((~hit).sum()), total.fp + len(extra)
    return {
        "criterion": criterion,
        "threshold": threshold,
        "classes": {c: _score_dict(s) for c, s in per.items()},
        "all": _score_dict(total),
        "fp_unassigned": unassigned,
    }


def counting_scores(n_pred: Sequence[int], n_truth: Sequence[int]) -> dict[str, float]:
    """Share of frames whose detection count equals the truth count, and the mean absolute count error."""
    p, t = np.asarray(n_pred, dtype=np.int64), np.asarray(n_truth, dtype=np.int64)
    if len(t) == 0:
        return {"accuracy": math.nan, "mean_abs_error": math.nan}
    return {"accuracy": float(np.mean(p == t)), "mean_abs_error": float(np.mean(np.abs(p - t)))}


# ------------------------------------------------------------------------------------- z_what
def fit_few_shot(
    z_what: Any,
    labels: Any,
    n_per_class: Sequence[int] = FEW_SHOT_SIZES,
    seed: int = 0,
    out_dir: str | Path | None = None,
    alpha: float = 1.0,
) -> tuple[dict[int, dict[str, Any]], dict[int, Any]]:
    """Ridge classifiers of (S, D) z_what -> (S,) labels, trained on n random samples per class, tested on the rest.

    The n samples of a class are the first n of one random permutation per class, so smaller training sets are
    subsets of larger ones. An n for which some class has no sample left to test on is skipped (its entry says
    why). Returns ``({n: {"accuracy", "train", "test"}}, {n: classifier})``; with ``out_dir`` each classifier is
    also saved there as :data:`CLASSIFIER_FILE`.
    """
    from sklearn.linear_model import RidgeClassifier

    from world_models.space.classifier import LinearClassifier

    y = np.asarray(labels)
    x = _np(z_what).reshape(len(y), -1).astype(np.float64) if len(y) else np.zeros((0, 1))
    rng = np.random.default_rng(seed)
    perms = {c: rng.permutation(np.nonzero(y == c)[0]) for c in np.unique(y)}
    scores: dict[int, dict[str, Any]] = {}
    models: dict[int, Any] = {}
    for n in n_per_class:
        short = [f"{c} has {len(p)}" for c, p in perms.items() if len(p) <= n]
        if len(perms) < 2 or short:
            scores[n] = {"skipped": f"need > {n} samples in each of >= 2 classes; " + ", ".join(short)}
            continue
        train = np.zeros(len(y), dtype=bool)
        train[np.concatenate([p[:n] for p in perms.values()])] = True
        clf = LinearClassifier.from_sklearn(RidgeClassifier(alpha=alpha).fit(x[train], y[train]))
        acc = float(np.mean(clf.predict(x[~train]) == y[~train]))
        scores[n] = {"accuracy": acc, "train": int(train.sum()), "test": int((~train).sum())}
        models[n] = clf
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            clf.save(Path(out_dir) / CLASSIFIER_FILE.format(n=n))
    return scores, models


def load_few_shot(folder: str | Path, n: int) -> Any:
    """The classifier :func:`fit_few_shot` saved for ``n`` samples per class (``.predict(z_what) -> names``)."""
    from world_models.space.classifier import load_classifier

    return load_classifier(Path(folder) / CLASSIFIER_FILE.format(n=n))


def cluster_scores(z_what: Any, labels: Any, seed: int = 0, n_init: int = 10) -> dict[str, float]:
    """KMeans with one cluster per class: adjusted mutual information and adjusted Rand index vs ``labels``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    y = np.asarray(labels)
    k = len(np.unique(y))
    if k < 2 or len(y) <= k:
        return {"ami": math.nan, "ari": math.nan}
    x = _np(z_what).reshape(len(y), -1).astype(np.float64)
    pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return {"ami": float(adjusted_mutual_info_score(y, pred)), "ari": float(adjusted_rand_score(y, pred))}


def pca_plot(z_what: Any, labels: Any, path: str | Path, title: str = "z_what PCA") -> Path:
    """A PNG scatter of the first two principal components of (S, D) z_what, coloured by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    y = np.asarray(labels)
    x = _np(z_what).reshape(len(y), -1).astype(np.float64)
    n_comp = min(2, x.shape[1], len(x) - 1)  # PCA of one sample has no variance to explain
    pcs = PCA(n_components=n_comp).fit(x) if n_comp > 0 else None
    xy = np.zeros((len(x), 2))
    if pcs is not None:
        xy[:, :n_comp] = pcs.transform(x)  # (S, D) -> (S, n_comp)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for c in np.unique(y):
        ax.scatter(xy[y == c, 0], xy[y == c, 1], s=6, alpha=0.6, label=str(c))
    if pcs is not None:
        var = pcs.explained_variance_ratio_
        ax.set_xlabel(f"PC1 ({var[0]:.0%})")
        ax.set_ylabel(f"PC2 ({var[1]:.0%})" if n_comp > 1 else "PC2")
    ax.set_title(title)
    if len(y):
        ax.legend(markerscale=3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------------- evaluation
@dataclass
class ExtractorEvalConfig:
    """How :func:`evaluate_extractor` scores an object extractor."""

    threshold: float = 0.5
    """z_pres probability from which a cell counts as a detected object (F-score, counting, z_what pairs)."""
    max_dist: float = 5.0
    """Largest centre distance, raw ALE pixels, of a matching detection and truth object (the bar's F-score)."""
    iou_threshold: float = 0.5
    """IoU of the second, IoU-matched F-score."""
    iou_thresholds: tuple[float, ...] = AP_IOU_THRESHOLDS
    """AP is computed at each of these IoU thresholds and averaged."""
    ap_min_pres: float = 0.05
    """Cells with a lower z_pres are left out of the AP ranking (keeps it small; they add almost nothing)."""
    few_shot: tuple[int, ...] = FEW_SHOT_SIZES
    """Samples per class of the few-shot z_what classifiers."""
    max_frames: int | None = None
    """Stop after this many frames (None: every batch given)."""
    max_z_what: int = 20000
    """At most this many (z_what, class) pairs, drawn at random, go to the classifiers, KMeans and the plot."""
    kmeans_init: int = 10
    """KMeans restarts (the best clustering of them is scored)."""
    seed: int = 0
    """Seed of the few-shot samples, the pair subsample and KMeans."""
    plot: bool = True
    """Write ``z_what_pca.png``."""


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | np.floating):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def evaluate_extractor(
    batches: Iterable[tuple[Any, Any]],
    infer: Callable[[Any], dict[str, Any]],
    game: str,
    preprocess: Preprocess,
    out_dir: str | Path,
    cfg: ExtractorEvalConfig | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring over ``(frames, ram)`` batches; artifacts and ``metrics.json`` in out_dir.

    ``infer(frames)`` must return ``z_pres`` (B, N), ``z_where`` (B, N, 4) and ``z_what`` (B, N, D) (torch or
    numpy), one image per RAM row ``ram`` (B, 128) (leading dims are flattened: (B, T, ...) works too); the
    frames are passed to it untouched (it runs under ``torch.no_grad``; putting the model in eval mode, so that
    ``z_pres`` are probabilities rather than relaxed samples, is its job). Returns the JSON-able metrics (NaN
    written as null). The trainer (``eval_every``) and ``learned-envs evaluate`` call it with :func:`dataset_batches` of the validation episodes.
    """
    cfg = cfg or ExtractorEvalConfig()
    classes = tuple(classes or ram_truth.moving_classes(game))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    low = min(cfg.ap_min_pres, cfg.threshold)
    ap_boxes, ap_scores, preds, truths, n_pred, z_list, l_list = [], [], [], [], [], [], []
    for frames, ram in batches:
        ram = _np(ram).reshape(-1, 128)
        with torch.no_grad():
            res = infer(frames)
        n = len(ram)
        pres = _np(res["z_pres"]).reshape(n, -1)  # (B, N)
        what = _np(res["z_what"]).reshape(n, pres.shape[1], -1)  # (B, N, D)
        if cfg.max_frames is not None:
            n = min(n, cfg.max_frames - len(truths))
        dets = zwhere_to_boxes(_np(res["z_where"]).reshape(len(ram), -1, 4)[:n], pres[:n], low, preprocess.size)
        for i, (det, truth) in enumerate(
            zip(dets, truth_boxes(game, ram[:n], preprocess, classes, "raw"), strict=True)
        ):
            raw = model_to_raw_boxes(det.boxes, preprocess)
            keep = det.scores >= cfg.threshold
            ap_boxes.append(raw)
            ap_scores.append(det.scores)
            preds.append(raw[keep])
            truths.append(truth)
            n_pred.append(int(keep.sum()))
            m = match_boxes(raw[keep], truth.boxes, "centre", cfg.max_dist)
            z_list.append(what[i, det.cells[keep][m >= 0]])  # (matched, D)
            l_list.append(truth.labels[m[m >= 0]])
        if cfg.max_frames is not None and len(truths) >= cfg.max_frames:
            break
    result: dict[str, Any] = {
        "game": game,
        "frames": len(truths),
        "classes": list(classes),
        "config": asdict(cfg),
        "ap": average_precision(ap_boxes, ap_scores, [t.boxes for t in truths], cfg.iou_thresholds),
        "boxes": {
            "centre": box_scores(preds, truths, classes, "centre", cfg.max_dist),
            "iou": box_scores(preds, truths, classes, "iou", cfg.iou_threshold),
        },
        "counting": counting_scores(n_pred, [len(t.boxes) for t in truths]),
    }
    z = np.concatenate(z_list) if z_list else np.zeros((0, 0))
    labels = np.concatenate(l_list) if l_list else np.zeros(0, dtype=str)
    if len(labels) > cfg.max_z_what:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(len(labels), cfg.max_z_what, replace=False))
        z, labels = z[pick], labels[pick]
    result["z_what_pairs"] = {str(c): int(np.sum(labels == c)) for c in classes}
    result["few_shot"], _ = fit_few_shot(z, labels, cfg.few_shot, cfg.seed, out)
    result["clustering"] = cluster_scores(z, labels, cfg.seed, cfg.kmeans_init)
    if cfg.plot and len(labels):
        pca_plot(z, labels, out / "z_what_pca.png", title=f"{game} z_what PCA ({len(labels)} objects)")
    result = _jsonable(result)
    write_json(out / "metrics.json", result)
    f1 = {c: round(v["f1"], 3) for c, v in result["boxes"]["centre"]["classes"].items()}
    log.info("extractor eval on %d frames: centre F1 %s, AP %s", len(truths), f1, result["ap"]["mean"])
    return result


def dataset_batches(
    root: str | Path,
    split: Literal["train", "val", "all"] = "val",
    batch_size: int = 64,
    preprocess: Preprocess | None = None,
    val_fraction: float = 0.1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(frames (B, C, H, W) float in [0, 1], ram (B, 128) uint8) batches of a dataset split, in order.

    ``preprocess`` must be the model's (a checkpoint's ``config["preprocess"]``: a model may train at
    another size than the dataset records, which is the default); ``val_fraction`` the training run's.
    """
    from dataset_tools.sequences import SequenceDataset

    data = SequenceDataset(root, seq_len=1, split=split, preprocess=preprocess, val_fraction=val_fraction)
    for batch in data.loader(batch_size, shuffle=False):
        yield batch.frames[:, 0], batch.ram[:, 0]  # (B, 1, C, H, W) -> (B, C, H, W)
