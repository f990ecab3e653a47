"""SPACE-Time extractor metrics (world_models.space.metrics): boxes, AP, F-score, counting, z_what, plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataset_tools.dataset import DatasetDir
from dataset_tools.motion import grid_targets
from dataset_tools.preprocess import Preprocess
from dataset_tools.ram_truth import ram_objects
from world_models.space.classifier import load_classifier
from world_models.space.metrics import (
    CLASSIFIER_FILE,
    ExtractorEvalConfig,
    Truth,
    average_precision,
    box_iou,
    box_scores,
    centre_distance,
    cluster_scores,
    counting_scores,
    dataset_batches,
    evaluate_extractor,
    fit_few_shot,
    load_few_shot,
    match_boxes,
    model_to_raw_boxes,
    pca_plot,
    raw_to_model_boxes,
    truth_boxes,
    zwhere_to_boxes,
)

# ------------------------------------------------------------------------------------ geometry


def test_zwhere_to_boxes_inverts_the_motion_grid_targets() -> None:
    """Boxes -> dataset_tools.motion.grid_targets -> zwhere_to_boxes gives the same boxes in the right cells."""
    h, w, g = 96, 128, 8
    boxes = np.array([[10.0, 20.0, 6.0, 4.0], [100.0, 70.0, 2.0, 8.0], [50.5, 3.25, 12.0, 9.5]])
    z_pres, z_where = grid_targets(boxes, h, w, g)  # (G, G), (G, G, 4)
    z_pres[z_pres > 0] = [0.9, 0.6, 0.3]  # row-major cell order: boxes 3, 1, 2 by centre row
    dets = zwhere_to_boxes(z_where.reshape(1, g * g, 4), z_pres.reshape(1, g * g), threshold=0.0, image_hw=(h, w))
    det = dets[0]
    assert len(det.boxes) == g * g  # threshold 0 keeps every cell
    found = det.boxes[z_pres.reshape(-1)[det.cells] > 0]
    order = np.lexsort((found[:, 0], found[:, 1]))
    np.testing.assert_allclose(found[order], boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))], atol=1e-4)
    cx, cy = boxes[0, 0] + 3, boxes[0, 1] + 2
    cell = int(cy / h * g) * g + int(cx / w * g)
    np.testing.assert_allclose(det.boxes[cell], boxes[0], atol=1e-4)
    kept = zwhere_to_boxes(z_where.reshape(1, -1, 4), z_pres.reshape(1, -1, 1), threshold=0.5, image_hw=(h, w))[0]
    assert sorted(kept.scores.tolist()) == pytest.approx([0.6, 0.9])
    with pytest.raises(ValueError, match="cells"):
        zwhere_to_boxes(np.zeros((1, 4, 4)), np.zeros((1, 5)))


def test_raw_model_box_mapping_roundtrips_and_clips() -> None:
    pre = Preprocess(crop=(34, 194, 0, 160), size=(64, 64))  # 160 x 160 field -> 0.4 model px per raw px
    model, inside = raw_to_model_boxes([[140, 50, 4, 16], [10, 20, 4, 20], [0, 0, 4, 4]], pre)
    np.testing.assert_allclose(model[0], [56.0, 6.4, 1.6, 6.4])
    np.testing.assert_allclose(model[1], [4.0, 0.0, 1.6, 2.4])  # rows 20..40 clipped to 34..40
    assert inside.tolist() == [True, True, False]
    np.testing.assert_allclose(model_to_raw_boxes(model[:2], pre), [[140, 50, 4, 16], [10, 34, 4, 6]])
    full = Preprocess(crop=None, size=(105, 80))
    np.testing.assert_allclose(raw_to_model_boxes([[20, 42, 8, 10]], full)[0], [[10, 21, 4, 5]])


def test_truth_boxes_on_real_pong_frames(pong_dataset: Path) -> None:
    """RAM truth mapped into the 64 x 64 model frame lands on the paddles and the ball of the real frames."""
    ds = DatasetDir(pong_dataset)
    pre = ds.preprocess()
    assert pre.crop == (34, 194, 0, 160) and pre.size == (64, 64)
    ep = ds.load(ds.episode_indices()[0])
    ram, frames = np.asarray(ep.ram), pre(np.asarray(ep.frames))  # (T, 64, 64, 3)
    truths = truth_boxes("Pong", ram, pre)
    raw = ram_objects("Pong", ram)
    assert len(truths) == len(frames)
    n_ball = 0
    for t, truth in enumerate(truths):
        names = truth.labels.tolist()
        assert set(names) <= {"player", "enemy", "ball"} and len(set(names)) == len(names)
        if "player" in names and raw["player"][t, 4] == 16:  # whole paddle on screen
            x, y, w, h = truth.boxes[names.index("player")]
            assert (x, w, h) == pytest.approx((56.0, 1.6, 6.4))
            assert y == pytest.approx((raw["player"][t, 2] - 34) * 0.4)
        if "ball" in names and tuple(raw["ball"][t, 3:]) == (2, 4):  # whole ball on screen
            x, y, w, h = truth.boxes[names.index("ball")]
            patch = frames[t, int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))].astype(int)
            assert patch[..., 2].max() > 60, f"frame {t}: no white ball pixels under {truth.boxes}"  # field blue 17
            n_ball += 1
    assert n_ball > 50
    raw_frame = truth_boxes("Pong", ram, pre, frame="raw")
    t = next(i for i, tr in enumerate(raw_frame) if "ball" in tr.labels)
    k = raw_frame[t].labels.tolist().index("ball")
    np.testing.assert_allclose(raw_frame[t].boxes[k], raw["ball"][t, 1:], atol=1e-9)


def test_iou_and_centre_distance() -> None:
    a = np.array([[0, 0, 2, 2], [10, 10, 4, 4]])
    b = np.array([[1, 1, 2, 2], [10, 10, 4, 4], [50, 50, 1, 1]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(1 / 7) and iou[1, 1] == 1.0 and iou[0, 2] == 0.0
    assert centre_distance(a, b)[0, 0] == pytest.approx(np.sqrt(2))
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_match_boxes_is_one_to_one_and_best_first() -> None:
    truth = np.array([[0, 0, 4, 4], [20, 0, 4, 4]])
    pred = np.array([[1, 0, 4, 4], [0, 0, 4, 4], [19, 0, 4, 4], [60, 60, 4, 4]])
    assert match_boxes(pred, truth, "centre", 5.0).tolist() == [-1, 0, 1, -1]
    assert match_boxes(pred, truth, "iou", 0.5).tolist() == [-1, 0, 1, -1]
    assert match_boxes(pred[:1], truth, "iou", 0.7).tolist() == [-1]  # IoU 0.6
    assert match_boxes(pred[:1], truth, "centre", 1.0).tolist() == [0]
    assert match_boxes(pred, np.zeros((0, 4))).tolist() == [-1] * 4
    paddle_and_ball = np.array([[140.0, 122, 4, 16], [141, 128, 2, 4]])  # the same centre
    assert match_boxes(paddle_and_ball[1:], paddle_and_ball, "centre", 5.0).tolist() == [1]
    with pytest.raises(ValueError, match="criterion"):
        match_boxes(pred, truth, "area", 1.0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- metrics


def _truth_frames() -> list[np.ndarray]:
    return [np.array([[0.0, 0, 4, 4], [20, 0, 4, 4]]), np.array([[8.0, 8, 4, 8]])]


def test_average_precision_known_answers() -> None:
    truth = _truth_frames()
    ones = [np.ones(2), np.ones(1)]
    perfect = average_precision(truth, ones, truth)
    assert perfect["ap"] == pytest.approx([1.0] * 9) and perfect["mean"] == pytest.approx(1.0)
    shifted = [b + [2, 0, 0, 0] for b in truth]  # 4-wide boxes moved by half their width: IoU 1/3
    res = average_precision(shifted, ones, truth)
    assert res["ap"] == pytest.approx([1.0, 1.0, 1.0] + [0.0] * 6)
    assert res["mean"] == pytest.approx(1 / 3)
    missing = average_precision([truth[0][:1], truth[1][:0]], [np.ones(1), np.ones(0)], truth)
    assert missing["mean"] == pytest.approx(1 / 3)  # recall stops at 1 / 3 with precision 1
    far = np.array([[100.0, 100, 4, 4]])
    low_fp = average_precision([np.concatenate([truth[0], far]), truth[1]], [np.array([1, 1, 0.1]), np.ones(1)], truth)
    assert low_fp["mean"] == pytest.approx(1.0)  # ranked below every true positive
    high_fp = average_precision([far, truth[0][:1]], [np.array([0.9]), np.array([0.8])], [truth[0][:1], truth[0][:1]])
    assert high_fp["mean"] == pytest.approx(0.25)  # recall 1/2 reached at precision 1/2, the rest never
    empty = average_precision([far], [np.ones(1)], [np.zeros((0, 4))])
    assert np.isnan(empty["mean"])


def test_box_scores_and_counting() -> None:
    truths = [
        Truth(np.array([[0.0, 0, 4, 4], [20, 0, 2, 4]]), np.array(["player", "ball"])),
        Truth(np.array([[40.0, 40, 4, 16]]), np.array(["enemy"])),
        Truth(np.zeros((0, 4)), np.zeros(0, dtype=str)),
    ]
    classes = ("player", "enemy", "ball")
    perfect = box_scores([t.boxes for t in truths], truths, classes)
    assert all(v["f1"] == 1.0 for v in perfect["classes"].values()) and perfect["all"]["f1"] == 1.0
    preds = [
        np.array([[1.0, 0, 4, 4], [24, 0, 2, 4]]),  # player off by 1 px; "ball" 4 px off, IoU 0
        np.array([[40.0, 40, 4, 16], [80, 80, 4, 4]]),  # enemy + an extra box
        np.array([[5.0, 5, 2, 2]]),  # a box in a frame without truth
    ]
    centre = box_scores(preds, truths, classes, "centre", 5.0)
    assert centre["all"] == pytest.approx({"precision": 3 / 5, "recall": 1.0, "f1": 0.75, "tp": 3, "fp": 2, "fn": 0})
    assert centre["classes"]["enemy"]["fp"] == 1 and centre["fp_unassigned"] == 1
    iou = box_scores(preds, truths, classes, "iou", 0.5)
    assert iou["classes"]["ball"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 1, "fn": 1}
    )
    assert iou["classes"]["player"]["tp"] == 1  # IoU 0.6
    assert iou["all"]["recall"] == pytest.approx(2 / 3)
    missing = box_scores([p[:0] for p in preds], truths, classes)
    assert missing["all"]["recall"] == 0.0 and missing["all"]["fn"] == 3
    counts = counting_scores([len(p) for p in preds], [len(t.boxes) for t in truths])
    assert counts == pytest.approx({"accuracy": 1 / 3, "mean_abs_error": 2 / 3})


# -------------------------------------------------------------------------------------- z_what


def _clusters(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(3, 8))
    labels = np.repeat(np.array(["player", "enemy", "ball"]), n_per_class)
    z = centres[np.repeat(np.arange(3), n_per_class)] + rng.normal(0, 0.5, size=(3 * n_per_class, 8))
    return z.astype(np.float32), labels


def test_few_shot_on_separable_clusters(tmp_path: Path) -> None:
    z, labels = _clusters(80)
    scores, models = fit_few_shot(z, labels, seed=0, out_dir=tmp_path)
    assert set(scores) == {1, 4, 16, 64}
    for n, s in scores.items():
        assert s["accuracy"] >= 0.95, (n, s)
        assert s["train"] == 3 * n and s["test"] == 240 - 3 * n
        loaded = load_few_shot(tmp_path, n)
        assert (tmp_path / CLASSIFIER_FILE.format(n=n)).is_file()
        np.testing.assert_array_equal(loaded.predict(z), models[n].predict(z))
    assert set(loaded.predict(z[:5])) <= {"player", "enemy", "ball"}
    few, _ = fit_few_shot(z[:30], labels[:30], n_per_class=(4,))  # only one class
    assert "skipped" in few[4]
    short, short_models = fit_few_shot(*_clusters(10), n_per_class=(4, 16))
    assert "accuracy" in short[4] and "skipped" in short[16] and set(short_models) == {4}


def test_cluster_scores_perfect_and_random() -> None:
    z, labels = _clusters(60)
    perfect = cluster_scores(z, labels)
    assert perfect["ami"] == pytest.approx(1.0) and perfect["ari"] == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    random = cluster_scores(rng.normal(size=(180, 8)), rng.permutation(labels))
    assert abs(random["ami"]) < 0.1 and abs(random["ari"]) < 0.1
    assert np.isnan(cluster_scores(z[:5], labels[:5])["ami"])


def test_pca_plot_writes_png(tmp_path: Path) -> None:
    path = pca_plot(*_clusters(20), tmp_path / "sub" / "pca.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------- evaluation

_CLASS_ID = {"player": 0, "enemy": 1, "ball": 2}


def _ram_infer(pre: Preprocess, grid: int, empty: bool = False):
    """A fake extractor that reads the objects from the RAM (passed in place of frames) into SPACE latents."""

    def infer(ram: np.ndarray) -> dict[str, np.ndarray]:
        h, w = pre.size
        n, rng = len(ram), np.random.default_rng(0)
        z_pres, z_where = np.zeros((n, grid * grid)), np.zeros((n, grid * grid, 4))
        z_what = rng.normal(0, 0.1, size=(n, grid * grid, 4))
        if empty:
            return {"z_pres": z_pres, "z_where": z_where, "z_what": z_what}
        for i, truth in enumerate(truth_boxes("Pong", ram, pre)):
            for (x, y, bw, bh), label in zip(truth.boxes, truth.labels, strict=True):
                cx, cy = x + bw / 2, y + bh / 2
                cell = min(int(cy / h * grid), grid - 1) * grid + min(int(cx / w * grid), grid - 1)
                z_pres[i, cell] = 0.99
                z_where[i, cell] = [bw / w, bh / h, 2 * cx / w - 1, 2 * cy / h - 1]
                z_what[i, cell, _CLASS_ID[label]] += 1.0
        return {"z_pres": z_pres, "z_where": z_where, "z_what": z_what}

    return infer


def test_evaluate_extractor_with_ram_truth_as_the_model(pong_dataset: Path, tmp_path: Path) -> None:
    """Plumbing test, not a model's quality: the fake infer writes the RAM truth itself into z_pres / z_where /
    z_what (class one-hot plus noise), so F-score, AP, counting and the few-shot accuracy must be ~1."""
    pre = DatasetDir(pong_dataset).preprocess()
    batches = [(ram, ram) for _, ram in dataset_batches(pong_dataset, "all", batch_size=128)]
    result = evaluate_extractor(batches, _ram_infer(pre, 16), "Pong", pre, tmp_path, ExtractorEvalConfig(kmeans_init=2))
    assert result["frames"] == sum(len(r) for r, _ in batches) > 500
    for name in ("player", "enemy", "ball"):
        assert result["boxes"]["centre"]["classes"][name]["f1"] >= 0.97, result["boxes"]["centre"]
        assert result["boxes"]["iou"]["classes"][name]["f1"] >= 0.97
    assert result["ap"]["mean"] >= 0.97 and result["counting"]["accuracy"] >= 0.97
    assert result["few_shot"]["4"]["accuracy"] >= 0.97 and result["clustering"]["ari"] >= 0.9
    for n in (1, 4, 16, 64):
        saved = load_classifier(tmp_path / f"z_what-classifier_{n}.json")  # arrays + JSON, no pickle
        assert len(saved.classes_) == 3 and saved.coef_.shape[0] == 3
    assert (tmp_path / "z_what_pca.png").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text()) == result
    capped = evaluate_extractor(
        batches, _ram_infer(pre, 16), "Pong", pre, tmp_path, ExtractorEvalConfig(max_frames=150, plot=False)
    )
    assert capped["frames"] == 150


def test_evaluate_extractor_with_an_empty_model(pong_dataset: Path, tmp_path: Path) -> None:
    """An extractor that finds nothing scores F 0, AP 0, and has no z_what to classify."""
    pre = DatasetDir(pong_dataset).preprocess()
    frames, ram = next(dataset_batches(pong_dataset, "val", batch_size=64))
    assert frames.shape == (64, 3, 64, 64) and ram.shape == (64, 128)
    result = evaluate_extractor([(ram, ram)], _ram_infer(pre, 8, empty=True), "Pong", pre, tmp_path)
    assert result["boxes"]["centre"]["all"]["f1"] == 0.0 and result["ap"]["mean"] == 0.0
    assert result["counting"]["accuracy"] == 0.0  # the paddles are always there
    assert all("skipped" in v for v in result["few_shot"].values())
    assert result["clustering"] == {"ami": None, "ari": None}
    assert not (tmp_path / "z_what_pca.png").exists()
