from __future__ import annotations

import numpy as np
import pytest

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess, default_preprocess, to_tensor_layout

BALL = np.array([236, 236, 236], dtype=np.uint8)
FIELD = np.array([144, 72, 17], dtype=np.uint8)  # Pong's play-field colour


def test_shapes_and_layout() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (2, 5, 210, 160, 3), dtype=np.uint8)
    pre = Preprocess(crop=(34, 194, 0, 160), size=(48, 40), grayscale=True)
    out = pre(frames)
    assert out.shape == (2, 5, 48, 40, 1) and out.dtype == np.uint8
    assert to_tensor_layout(out).shape == (2, 5, 1, 48, 40)
    assert Preprocess.from_dict(pre.to_dict()) == pre


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        Preprocess()(np.zeros((210, 160), dtype=np.uint8))


@pytest.mark.parametrize("grayscale", [False, True])
def test_pong_ball_survives_default_preprocessing(pong_dataset, grayscale: bool) -> None:
    """Paint the ball over with the background colour: the preprocessed frame must change visibly
    (>= 40 of 255 at some pixel) in every frame where the ball is on the field."""
    ds = DatasetDir(pong_dataset)
    pre = default_preprocess("Pong", grayscale=grayscale)
    assert pre.size == (64, 64)
    checked = 0
    for index in ds.episode_indices():
        frames = np.asarray(ds.load(index).frames)
        for frame in frames[::3]:
            field = frame[34:194]
            ys, xs = np.nonzero(np.all(field == BALL, axis=-1))
            if len(ys) != 8:  # only whole 2 x 4 balls (part of it can hide behind the bottom wall)
                continue
            erased = frame.copy()
            erased[34 + ys, xs] = FIELD
            diff = np.abs(pre(frame).astype(int) - pre(erased).astype(int)).max()
            assert diff >= 40, f"ball at {(ys.min() + 34, xs.min())} almost vanishes (max change {diff})"
            checked += 1
    assert checked >= 20


def test_boxes_map_raw_pixels_into_the_model_frame() -> None:
    pre = Preprocess(crop=(34, 194, 0, 160), size=(128, 64))
    boxes = np.array([[0, 34, 160, 160], [80, 114, 4, 8], [10, 0, 8, 20], [150, 190, 20, 10]])
    np.testing.assert_allclose(
        pre.boxes(boxes),
        [[0, 0, 64, 128], [32, 64, 1.6, 6.4], [4, 0, 3.2, 0], [60, 124.8, 4, 3.2]],  # above the crop: h = 0
    )
    np.testing.assert_allclose(Preprocess(size=(105, 80)).boxes([[10, 20, 4, 6]]), [[5, 10, 2, 3]])
